"""How a console page is written: register it, read what the request carries, render.

    @page("/channels", "渠道", "Channels", order=40)
    def channels(req: ConsoleRequest) -> Response:
        return req.render("channels.html", rows=...)

A page is a plain function run in a worker thread (it reads the log synchronously).
Before it runs, the wrapper checks the session (else: to the login page), the
permission the page needs (else: 403 page), and on POST the form's CSRF token (else:
403 page); every page gets a fresh CSRF token for its forms. A `WebError` raised by a
page is shown as a readable page with status 400.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from broadcaster.errors import LogStoreError
from broadcaster.log.chain import shown_display
from broadcaster.vocab import ErrorClass, Status
from broadcaster.web.accounts import Permission, User
from broadcaster.web.errors import CSRFError, WebError
from broadcaster.web.sessions import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Session

if TYPE_CHECKING:
    from broadcaster.web.service import WebService

__all__ = ["PAGES", "ConsoleRequest", "Page", "page", "render_error", "templates"]

log = logging.getLogger("broadcaster.web")

templates = Environment(
    loader=PackageLoader("broadcaster.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _status_label(value: str) -> str:
    try:
        return Status(value).label
    except ValueError:
        return value


def _error_label(value: str | None) -> str:
    if not value:
        return ""
    try:
        return ErrorClass(value).label
    except ValueError:
        return value


templates.filters["status_label"] = _status_label
templates.filters["error_label"] = _error_label
templates.filters["shown_display"] = shown_display  # a pruned masked number says so


@dataclass(frozen=True)
class Page:
    """A console route and, when `nav`, its entry in the navigation."""

    path: str
    zh: str
    en: str
    handler: Callable[[ConsoleRequest], Response]
    permission: Permission = Permission.VIEW
    methods: tuple[str, ...] = ("GET",)
    nav: bool = True
    order: int = 100
    public: bool = False  # the login page


PAGES: list[Page] = []


def page(
    path: str,
    zh: str,
    en: str,
    *,
    permission: Permission = Permission.VIEW,
    methods: tuple[str, ...] = ("GET",),
    nav: bool = True,
    order: int = 100,
    public: bool = False,
) -> Callable[[Callable[[ConsoleRequest], Response]], Callable[[ConsoleRequest], Response]]:
    """Register a console page (see the module docstring)."""

    def register(fn: Callable[[ConsoleRequest], Response]) -> Callable[[ConsoleRequest], Response]:
        PAGES.append(Page(path, zh, en, fn, permission, methods, nav, order, public))
        return fn

    return register


@dataclass
class ConsoleRequest:
    """What a page sees: the request, the signed-in person, the form, the service."""

    request: Request
    service: WebService
    user: User | None
    session: Session | None
    csrf: str
    form: Mapping[str, str] = field(default_factory=dict)
    form_lists: Mapping[str, list[str]] = field(default_factory=dict)
    set_cookies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    clear_cookies: list[str] = field(default_factory=list)

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query_params

    def arg(self, name: str, default: str = "") -> str:
        """A query or form value, stripped ('' when missing)."""
        value = self.form.get(name) if name in self.form else self.request.query_params.get(name)
        return (value or default).strip()

    def values(self, name: str) -> list[str]:
        if name in self.form_lists:
            return [v.strip() for v in self.form_lists[name] if v.strip()]
        return [v.strip() for v in self.request.query_params.getlist(name) if v.strip()]

    @property
    def remote(self) -> str:
        return self.request.client.host if self.request.client else ""

    def record(self, action: str, subject: str = "", detail: Any = "") -> None:
        """Write what this person did to the log (who, when, what)."""
        assert self.user is not None
        self.service.store.record(
            self.user.name, self.user.role.value, action, subject, detail, self.remote
        )

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        app = self.service.app
        tz = app.campaign.tz
        now = self.service.clock.now().astimezone(tz)
        nav = [
            p
            for p in sorted(PAGES, key=lambda p: p.order)
            if p.nav and (self.user is not None and self.user.can(p.permission))
        ]
        body = templates.get_template(template).render(
            req=self,
            user=self.user,
            csrf=self.csrf,
            csrf_field=CSRF_FIELD,
            nav=nav,
            path=self.request.url.path,
            campaign=app.campaign,
            now=now,
            tz=tz,
            local=lambda value, fmt="%Y-%m-%d %H:%M": _local(value, tz, fmt),
            status=status,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)


def _local(value: dt.datetime | None, tz: dt.tzinfo, fmt: str) -> str:
    if value is None:
        return "—"
    return value.astimezone(tz).strftime(fmt)


def render_error(status: int, chinese: str, english: str) -> bytes:
    return (
        templates.get_template("error.html")
        .render(status=status, chinese=chinese, english=english, user=None, nav=[])
        .encode("utf-8")
    )


def _cookie_options(service: WebService) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": service.options.secure_cookies,
        "path": "/",
    }


def endpoint(service: WebService, p: Page) -> Callable[[Request], Any]:
    """The ASGI endpoint of a page: session, permission, CSRF, then the page in a thread."""

    async def run(request: Request) -> Response:
        sessions = service.sessions
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        user: User | None = None
        try:
            if session is not None:
                user = await run_in_threadpool(
                    service.accounts.current, session.name, session.version
                )
        except LogStoreError:
            return _page_error(
                503, "日志库暂不可用 the delivery log is unavailable", "log unavailable"
            )
        if user is None:
            session = None
        if not p.public and user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if user is not None and not user.can(p.permission):
            return _page_error(
                403,
                f"没有权限 your role ({user.role.label}) may not open {p.zh}",
                f"forbidden: {p.en} needs the {p.permission.value} permission",
            )
        nonce = session.nonce if session else ""
        cookie = request.cookies.get(CSRF_COOKIE)
        fresh = (
            cookie
            if cookie is not None and sessions.csrf_valid(cookie, nonce)
            else sessions.csrf_token(nonce)
        )
        ctx = ConsoleRequest(request, service, user, session, fresh)
        if request.method == "POST":
            try:
                form = await request.form(max_files=0, max_fields=200)
            except Exception:
                return _page_error(400, "表单无效 the form could not be read", "bad form")
            ctx.form = {k: str(v) for k, v in form.items()}
            ctx.form_lists = {k: [str(v) for v in form.getlist(k)] for k in form}
            try:
                sessions.check_csrf(cookie, ctx.form.get(CSRF_FIELD), nonce)
            except CSRFError as exc:
                refused = _page_error(403, str(exc), "CSRF token missing or wrong")
                refused.set_cookie(CSRF_COOKIE, fresh, **_cookie_options(service))
                return refused
        handler: Callable[[ConsoleRequest], Response] = p.handler
        response: Response
        try:
            response = await run_in_threadpool(handler, ctx)
        except WebError as exc:
            response = ctx.render("error.html", status=400, chinese=str(exc), english="")
        except LogStoreError:
            log.warning("console page %s: the log is unavailable", p.path, exc_info=True)
            response = _page_error(
                503, "日志库暂不可用 the delivery log is unavailable", "log unavailable"
            )
        if cookie != ctx.csrf:
            response.set_cookie(CSRF_COOKIE, ctx.csrf, **_cookie_options(service))
        for name, value, extra in ctx.set_cookies:
            response.set_cookie(name, value, **{**_cookie_options(service), **extra})
        for name in ctx.clear_cookies:
            response.delete_cookie(name, path="/")
        return response

    return run


def _page_error(status: int, chinese: str, english: str) -> HTMLResponse:
    return HTMLResponse(render_error(status, chinese, english), status_code=status)
