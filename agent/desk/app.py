"""The desk's web application (Starlette): the pages, the live feed, the approval, the PDF.

================================  ===================================================================
route                             what
================================  ===================================================================
``GET /``                         today's vehicles, newest first; kept live by ``/events``
``GET /events``                   Server-Sent Events: the queue's rows and the link state, at once on
                                  every change and every few seconds (the browser reconnects itself)
``GET /vehicle/{vin}``            the vehicle: services, check control, faults, vehicle test,
                                  reminders, earlier visits, the proposal with ticks (``?line=``)
``GET /vehicle/{vin}/totals``     JSON: totals and express verdict of the ticked ``line`` values
``POST /vehicle/{vin}/approve``   record the customer's approval (CSRF token; ``readout_id`` of the
                                  page, so a newer read is never approved unseen)
``GET /vehicle/{vin}/proposal.pdf``  the printable proposal of the ticked lines
``GET|POST /login``, ``POST /logout``  only when a login is required (not on loopback)
``/static/...``                   the stylesheet and script shipped in the package
================================  ===================================================================

Every page takes ``?lang=en|de|zh`` (``zh-Hans``, ``zh-CN`` too); the choice is kept in the
session. Everything from a payload reaches the page through Jinja2's autoescaping, and the
script is a file (the Content Security Policy allows no inline script).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.desk import views
from agent.desk.feed import DeskFeed
from agent.desk.locale import LANGUAGE_NAMES, Words, language_of
from agent.desk.security import (
    SECURITY_HEADERS,
    LoginLimiter,
    csrf_ok,
    csrf_token,
    verify_password,
)
from agent.domain.approval import Approval
from agent.domain.catalogue import FaultFinding, default_catalogue
from agent.domain.i18n import LANGUAGES, Language
from agent.domain.models import to_json
from agent.errors import OutboxError

log = logging.getLogger(__name__)

__all__ = ["ApprovalSink", "DeskConfig", "create_app"]

HERE = Path(__file__).resolve().parent
EVENT_POLL_S = 0.1  # how often a live page's stream looks for news (well inside a second)
EVENT_REFRESH_S = 5.0  # and re-sends the link state anyway (an agent falls silent)
MAX_FORM_BYTES = 64 * 1024


class ApprovalSink(Protocol):
    """Where a confirmed approval goes (the durable outbox); raises OutboxError."""

    def record(self, approval: Approval) -> str: ...


@dataclass(frozen=True)
class DeskConfig:
    site: str
    prefix: str
    desk_name: str
    language: Language
    secret: str
    require_login: bool = False
    password_hash: str | None = None
    window_days: int = 30
    # Fault-finding minutes per control unit, from the catalogue the desk is configured with
    # (``[catalogue]``, as the agent's); None prices fault lines on request.
    fault_finding: FaultFinding | None = field(
        default_factory=lambda: default_catalogue().fault_finding)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` (and ``no-store`` to pages) to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                for name, value in SECURITY_HEADERS.items():
                    headers.append((name.lower().encode(), value.encode()))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(config: DeskConfig, feed: DeskFeed, sink: ApprovalSink, *,
               clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
               limiter: LoginLimiter | None = None) -> Starlette:
    """The desk as an ASGI application; ``feed`` supplies the state, ``sink`` takes approvals."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    limiter = limiter or LoginLimiter()

    def language(request: Request) -> Language:
        session = request.session
        asked = request.query_params.get("lang")
        if asked:
            session["lang"] = language_of(asked, config.language)
        lang = session.get("lang")
        return language_of(lang if isinstance(lang, str) else None, config.language)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        lang = language(request)
        w = Words(lang)
        here = request.url.path
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        switch = [{"code": code, "name": LANGUAGE_NAMES[code], "current": code == lang,
                   "href": here + "?" + urlencode([*query, ("lang", code)])}
                  for code in LANGUAGES]
        if signed_in(request):
            with feed.locked() as state:
                link = views.link_state(state, clock(), w)
        else:  # nothing about the site before the login
            link = {"ok": True, "problems": [], "broker": None, "text": ""}
        html = env.get_template(name).render(
            w=w, site=config.site, switch=switch, link=link,
            csrf=csrf_token(request.session), login=config.require_login,
            signed_in=bool(request.session.get("user")), **context)
        return HTMLResponse(html, status_code=status_code)

    def signed_in(request: Request) -> bool:
        return not config.require_login or bool(request.session.get("user"))

    def guarded(handler: Callable[[Request], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if not signed_in(request):
                if request.url.path in ("/events",) or request.url.path.endswith("/totals"):
                    return PlainTextResponse("sign in first", status_code=401)
                return RedirectResponse("/login", status_code=303)
            return await handler(request)
        return wrapper

    def _first(fields: dict[str, list[str]], name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    async def form(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        fields: dict[str, list[str]] = {}
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(key, []).append(value)
        return fields

    def ticked(request: Request) -> list[str] | None:
        lines = request.query_params.getlist("line")
        if lines or request.query_params.get("ticked") == "1":
            return [line for line in lines if line]
        return None

    async def queue(request: Request) -> Response:
        w = Words(language(request))
        with feed.locked() as state:
            rows = views.queue_rows(state, clock(), w)
        return page(request, "queue.html", rows=rows, live=True)

    async def events(request: Request) -> Response:
        w = Words(language(request))
        vin = request.query_params.get("vin")

        async def stream() -> Any:
            yield "retry: 2000\n\n"
            sent_generation = -1
            sent_at = 0.0
            while True:
                with feed.locked() as state:
                    generation = state.generation
                    fresh = generation != sent_generation
                    if fresh or time.monotonic() - sent_at >= EVENT_REFRESH_S:
                        now = clock()
                        rows = views.queue_rows(state, now, w)
                        link = views.link_state(state, now, w)
                        record = state.vehicles.get(vin) if vin else None
                        token = views.vehicle_token(record) if record is not None else ""
                    else:
                        rows = None
                if rows is not None:
                    data = {"rows": env.get_template("_queue_rows.html").render(rows=rows, w=w),
                            "count": len(rows), "link": link, "generation": generation,
                            "vehicle": token}
                    sent_generation, sent_at = generation, time.monotonic()
                    yield f"event: queue\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    def vehicle_context(request: Request, vin: str, lines: list[str] | None
                        ) -> dict[str, Any] | None:
        w = Words(language(request))
        with feed.locked() as state:
            record = state.vehicles.get(vin)
            if record is None:
                return None
            return views.vehicle_view(state, record, w, ticked=lines, now=clock(),
                                      window_days=config.window_days,
                                      fault_finding=config.fault_finding)

    async def vehicle(request: Request) -> Response:
        vin = request.path_params["vin"]
        view = vehicle_context(request, vin, ticked(request))
        if view is None:
            return page(request, "unknown.html", status_code=404, vin=vin)
        return page(request, "vehicle.html", v=view, approved=request.query_params.get("approved"),
                    notice=request.query_params.get("notice"))

    async def totals(request: Request) -> Response:
        vin = request.path_params["vin"]
        view = vehicle_context(request, vin, ticked(request) or [])
        if view is None or view["proposal"] is None:
            return JSONResponse({"error": "no proposal"}, status_code=404)
        return JSONResponse(view["proposal"]["totals"])

    async def proposal_pdf(request: Request) -> Response:
        from agent.desk.pdf import proposal_pdf as render_pdf

        vin = request.path_params["vin"]
        view = vehicle_context(request, vin, ticked(request))
        if view is None:
            return PlainTextResponse("unknown vehicle", status_code=404)
        body = await asyncio.to_thread(render_pdf, view, Words(language(request)),
                                       site=config.site)
        return Response(body, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="proposal-{vin}.pdf"'})

    async def approve(request: Request) -> Response:
        vin = request.path_params["vin"]
        fields = await form(request)
        if not csrf_ok(request.session, _first(fields, "csrf")):
            return PlainTextResponse("the form has expired: reload the page", status_code=403)
        lang = language(request)
        lines = [line for line in fields.get("line", []) if line]
        if _first(fields, "do") == "recalculate":  # the page without script
            query = urlencode([*[("line", x) for x in lines], ("ticked", "1")])
            return RedirectResponse(f"/vehicle/{vin}?{query}#proposal", status_code=303)
        with feed.locked() as state:
            record = state.vehicles.get(vin)
            if record is None:
                return PlainTextResponse("unknown vehicle", status_code=404)
            if record.latest.get("readout_id") != _first(fields, "readout_id"):
                back = f"/vehicle/{vin}?" + urlencode({"notice": "newer"})
                return RedirectResponse(back, status_code=303)
            selection = views.selection_of(record, lines, config.fault_finding)
            if selection is None:
                return PlainTextResponse("no proposal to approve", status_code=409)
            approval = views.build_approval(record, selection, lang=lang,
                                            desk=config.desk_name, now=clock())
        try:
            topic = sink.record(approval)
        except OutboxError as exc:
            log.error("desk: approval %s not stored: %s", approval.approval_id, exc)
            return PlainTextResponse(f"the approval could not be stored: {exc}", status_code=503)
        with feed.locked() as state:  # shown at once, before the broker echoes it
            state.apply(topic, to_json(approval).encode())
        query = urlencode([("approved", approval.approval_id), *[("line", x) for x in lines],
                           ("ticked", "1")])
        return RedirectResponse(f"/vehicle/{vin}?{query}", status_code=303)

    async def login(request: Request) -> Response:
        if not config.require_login:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return page(request, "login.html", error=None)
        client = request.client.host if request.client else "?"
        if not limiter.allowed(client):
            return page(request, "login.html", status_code=429, error="login_limited")
        fields = await form(request)
        if not csrf_ok(request.session, _first(fields, "csrf")):
            return page(request, "login.html", status_code=403, error="login_failed")
        password = _first(fields, "password") or ""
        if config.password_hash is None or not verify_password(password, config.password_hash):
            limiter.failed(client)
            log.warning("desk: failed sign-in from %s", client)
            return page(request, "login.html", status_code=401, error="login_failed")
        session: MutableMapping[str, Any] = request.session
        lang = session.get("lang")
        session.clear()  # a new session on sign-in: no fixation
        session["user"] = "advisor"
        if isinstance(lang, str):
            session["lang"] = lang
        log.info("desk: signed in from %s", client)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        fields = await form(request)
        if csrf_ok(request.session, _first(fields, "csrf")):
            request.session.clear()
        return RedirectResponse("/login" if config.require_login else "/", status_code=303)

    routes = [
        Route("/", guarded(queue)),
        Route("/events", guarded(events)),
        Route("/vehicle/{vin:str}", guarded(vehicle)),
        Route("/vehicle/{vin:str}/totals", guarded(totals)),
        Route("/vehicle/{vin:str}/proposal.pdf", guarded(proposal_pdf)),
        Route("/vehicle/{vin:str}/approve", guarded(approve), methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=config.secret, session_cookie="cbs_desk",
                   same_site="strict", max_age=12 * 3600),
    ]
    return Starlette(routes=routes, middleware=middleware)
