// The reception desk's only script (the Content Security Policy allows no inline script).
// Live queue: Server-Sent Events from /events; the browser's EventSource reconnects by itself.
// Vehicle page: ticking a line asks the desk for the exact totals (decimal arithmetic stays
// on the server) and updates them in place.
"use strict";
(function () {
  const body = document.body;
  const lang = body.dataset.lang || "en";
  const link = document.getElementById("link");

  function showLink(state) {
    if (!link) return;
    link.textContent = "";
    link.className = "link " + (state.ok ? "link-ok" : "link-bad");
    if (state.ok) {
      const dot = document.createElement("span");
      dot.className = "dot"; dot.setAttribute("aria-hidden", "true"); dot.textContent = "● ";
      link.appendChild(dot);
      link.appendChild(document.createTextNode(state.text));
      return;
    }
    for (const problem of state.problems) {
      const p = document.createElement("p");
      p.textContent = "⚠ " + problem;
      link.appendChild(p);
    }
  }

  if (body.dataset.live && window.EventSource) {
    const vin = body.dataset.vin;
    const source = new EventSource("/events?lang=" + encodeURIComponent(lang) +
                                   (vin ? "&vin=" + encodeURIComponent(vin) : ""));
    source.addEventListener("queue", function (event) {
      const data = JSON.parse(event.data);
      showLink(data.link);
      const rows = document.getElementById("queue-rows");
      if (rows) {
        rows.innerHTML = data.rows;  // rendered and escaped by the desk's templates
        const empty = document.getElementById("queue-empty");
        if (empty) empty.hidden = data.count > 0;
        body.dataset.generation = String(data.generation);
      }
      const news = document.getElementById("news");
      if (news && data.vehicle && data.vehicle !== body.dataset.token) {
        // Something new for this vehicle: offer it, keeping the ticks (no reload by itself).
        const link = document.getElementById("news-link");
        const form = document.getElementById("proposal-form");
        const params = new URLSearchParams();
        if (form) {
          for (const box of form.querySelectorAll("input[name=line]:checked")) {
            params.append("line", box.value);
          }
          params.append("ticked", "1");
        }
        link.href = "/vehicle/" + encodeURIComponent(vin) + "?" + params.toString();
        news.hidden = false;
      }
    });
    source.addEventListener("error", function () {
      showLink({ok: false, problems: [body.dataset.deskLost]});
    });
  }

  const form = document.getElementById("proposal-form");
  if (form) {
    const pdf = document.getElementById("pdf-link");
    function ticked() {
      const params = new URLSearchParams();
      for (const box of form.querySelectorAll("input[name=line]")) {
        if (box.checked) params.append("line", box.value);
        box.closest("tr").classList.toggle("unticked", !box.checked);
      }
      params.append("ticked", "1");
      params.append("lang", lang);
      return params;
    }
    function update() {
      const params = ticked();
      if (pdf) pdf.href = pdf.pathname + "?" + params.toString();
      fetch(form.dataset.totals + "?" + params.toString(), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (totals) {
          for (const key of ["net", "tax", "gross"]) {
            const cell = document.getElementById("total-" + key);
            cell.textContent = totals[key].text;
            cell.dataset.value = totals[key].value;
          }
          document.getElementById("totals-incomplete").textContent = totals.incomplete_text;
          const verdict = document.getElementById("verdict");
          verdict.className = "verdict verdict-" + (totals.express.eligible ? "yes" : "no");
          document.getElementById("verdict-text").textContent =
            (totals.express.eligible ? "⚡ " : "") + totals.express.text;
          document.getElementById("verdict-minutes").textContent = totals.express.minutes;
          document.getElementById("verdict-reasons").textContent = totals.express.reasons.join(" · ");
          form.dataset.updated = String(Date.now());
        })
        .catch(function () { /* the server-side "Update totals" button still works */ });
    }
    form.addEventListener("change", update);
    const params = ticked();
    if (pdf) pdf.href = pdf.pathname + "?" + params.toString();
  }
})();
