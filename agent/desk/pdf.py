"""The printable proposal (``/vehicle/{vin}/proposal.pdf``): what the customer signs or takes home.

Why reportlab: it lays out tables with wrapping cells and page breaks (platypus), and it has
the Adobe CJK fonts built in as CID fonts (``STSong-Light`` for Simplified Chinese), so a
Chinese proposal needs no font file of several megabytes in the package: the PDF names the
font and every reader supplies it. English and German use the standard Helvetica, whose
encoding has the euro sign and the umlauts.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from agent.desk.locale import Words

__all__ = ["proposal_pdf"]

_CJK_FONT = "STSong-Light"
_registered = False


def _font(lang: str) -> tuple[str, str]:
    global _registered
    if lang == "zh":
        if not _registered:
            pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
            _registered = True
        return _CJK_FONT, _CJK_FONT
    return "Helvetica", "Helvetica-Bold"


def proposal_pdf(view: dict[str, Any], w: Words, *, site: str) -> bytes:
    """One A4 document: the vehicle (with the vehicle test's warning lamp and VIN mismatch),
    the ticked lines with their amounts, the totals, the express verdict and a signature
    line. ``view`` is :func:`agent.desk.views.vehicle_view`."""
    regular, bold = _font(w.lang)
    body = ParagraphStyle("body", fontName=regular, fontSize=10, leading=13)
    strong = ParagraphStyle("strong", parent=body, fontName=bold)
    title = ParagraphStyle("title", parent=body, fontName=bold, fontSize=16, leading=20)
    alert = ParagraphStyle("alert", parent=strong, fontSize=12, leading=15,
                           textColor=colors.HexColor("#b3261e"))

    def p(text: object, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(str(text)), style)

    story: list[Any] = [p(f"{w.t('proposal')} · {site}", title), Spacer(1, 4 * mm)]
    facts = [[p(w.t("vin"), strong), p(view["vin"]), p(w.t("mileage"), strong), p(view["mileage"])],
             [p(w.t("model_year"), strong), p(view["model_year"]), p(w.t("read_at"), strong),
              p(view["read_at"])]]
    story.append(Table(facts, colWidths=[30 * mm, 55 * mm, 30 * mm, 55 * mm]))
    # Words only: the PDF's standard fonts have no warning sign (docstring above).
    diagnosis = view.get("diagnosis")
    if diagnosis and diagnosis["warning_lamp"]:
        story += [Spacer(1, 3 * mm), p(w.t("warning_lamp_on"), alert)]
    if diagnosis and diagnosis["vin_mismatch"]:
        story += [Spacer(1, 3 * mm), p(w.t("vin_mismatch", ecus=diagnosis["mismatched"]),
                                        alert)]
    story.append(Spacer(1, 6 * mm))
    proposal = view.get("proposal")
    if proposal is None:
        story.append(p(w.t("no_proposal")))
    else:
        rows = [[p(w.t("service"), strong), p(w.t("labour_minutes"), strong),
                 p(w.t("labour"), strong), p(w.t("parts"), strong), p(w.t("net"), strong)]]
        for line in proposal["lines"]:
            if line["ticked"]:
                name = line["name"] + (f" ({w.t('recurring_short')})" if line["recurring"]
                                       else "")
                rows.append([p(name), p("" if line["minutes"] is None else
                                                 f"{line['minutes']} {w.t('unit_minutes')}"),
                             p(line["labour"]), p(line["parts"]), p(line["net"])])
        totals = proposal["totals"]
        for key, name in (("net", "net"), ("tax", "tax"), ("gross", "gross")):
            rows.append([p(w.t(name), strong), "", "", "",
                         p(totals[key]["text"], strong if key == "gross" else body)])
        table = Table(rows, colWidths=[70 * mm, 25 * mm, 25 * mm, 25 * mm, 25 * mm],
                      repeatRows=1)
        table.setStyle(TableStyle([
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEABOVE", (0, -3), (-1, -3), 0.8, colors.black),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        story.append(table)
        if totals["incomplete_text"]:
            story += [Spacer(1, 2 * mm), p(totals["incomplete_text"])]
        express = totals["express"]
        story += [Spacer(1, 4 * mm), p(express["text"], strong)]
        if express["reasons"]:
            story.append(p(" · ".join(express["reasons"])))
    story += [Spacer(1, 20 * mm),
              Table([[p(w.t("date")), p(w.t("signature"))]], colWidths=[60 * mm, 110 * mm],
                    style=TableStyle([("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black)]))]
    out = BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm,
                            topMargin=18 * mm, bottomMargin=18 * mm,
                            title=f"{w.t('proposal')} {view['vin']}")
    doc.build(story)
    return out.getvalue()
