"""The web service: what every route shares, and the ASGI app built from it.

`WebService` holds the delivery log, the current campaign and dispatcher (from an
`EngineSource`), the console's accounts, sessions, signed links and the record of what
people did. `create_app()` builds the FastAPI app: machine routes (health, metrics,
plugin routes; in the OpenAPI document), the console pages (server-rendered, not in
it), the vendored static files, and the guard every request passes first.

Later features add to it in three places: a plugin declares routes (`routes()` in the
channel contract, mounted by `hooks.py`); a console page registers itself with
`broadcaster.web.console.page`; a signed link is made and checked with `service.links`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from broadcaster import __version__
from broadcaster.engine.app import App
from broadcaster.engine.clock import Clock
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.web.accounts import Accounts, LoginThrottle
from broadcaster.web.coverage import SendCache
from broadcaster.web.guard import Guard, error_json, is_machine_path
from broadcaster.web.hooks import HookTable
from broadcaster.web.links import SignedLinks
from broadcaster.web.metrics import Metrics
from broadcaster.web.sessions import Sessions
from broadcaster.web.settings import WebOptions
from broadcaster.web.source import EngineSource
from broadcaster.web.store import ConsoleStore

__all__ = ["ErrorBody", "Health", "WebService", "create_app"]

log = logging.getLogger("broadcaster.web")
STATIC = Path(__file__).resolve().with_name("static")


class ErrorBody(BaseModel):
    """An error of a machine route."""

    error: str = Field(description="English")
    错误: str = Field(description="中文")


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    """What /healthz found."""

    status: str = Field(description="ok, or degraded when a check failed")
    log: Check
    scheduler: Check
    calendar: Check
    config: Check


class WebService:
    """Everything the routes share. Close it after the server stopped."""

    def __init__(
        self,
        source: EngineSource,
        log_store: DeliveryLog,
        log_url: str,
        *,
        secret: bytes,
        clock: Clock,
        options: WebOptions | None = None,
    ):
        self.source = source
        self.log = log_store
        self.clock = clock
        self.options = options or WebOptions()
        self.store = ConsoleStore(log_store, log_url, clock)
        self.accounts = Accounts(self.store, secret)
        self.throttle = LoginThrottle(self.store, per_name=self.options.login_failures)
        self.sessions = Sessions(secret, clock, hours=self.options.session_hours)
        self.links = SignedLinks(secret, self.store, clock)
        self.hooks = HookTable(self)
        self.led: Any = None  # the LED playlist route (create_app sets it)
        self.coverage = SendCache()
        self.metrics = Metrics(self)
        self.started = clock.now()
        self._planner: tuple[App, Planner] | None = None
        self._planner_lock = threading.Lock()

    @property
    def app(self) -> App:
        return self.source.current()[0]

    def planner(self) -> Planner:
        """A planner of the current campaign (kept while the config stays the same)."""
        app = self.app
        with self._planner_lock:
            if self._planner is None or self._planner[0] is not app:
                self._planner = (app, Planner(app.campaign))
            return self._planner[1]

    def error_page(self, status: int, chinese: str, english: str) -> bytes:
        from broadcaster.web.console.base import render_error

        return render_error(status, chinese, english)

    def health(self) -> Health:
        now = self.clock.now()
        app = self.app
        try:
            self.log.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
            log_check = Check(
                ok=self.log.alive,
                detail="可用 reachable"
                if self.log.alive
                else ("写入线程已停止 the log writer stopped"),
            )
        except Exception as exc:
            log_check = Check(ok=False, detail=f"无法读取 unreachable: {type(exc).__name__}")
        try:
            lease = self.log.lease(f"scheduler:{app.campaign.id}")
        except Exception:
            lease = None
        if lease is not None and lease.until > now:
            scheduler = Check(
                ok=True, detail=f"运行中 running until {lease.until.isoformat(timespec='seconds')}"
            )
        elif lease is not None:
            scheduler = Check(
                ok=False,
                detail=f"已停止 stopped: lease expired {lease.until.isoformat(timespec='seconds')}",
            )
        else:
            scheduler = Check(ok=False, detail="未运行 no scheduler has run on this log")
        today = now.astimezone(app.campaign.tz).date()
        serious = [m for m, bad in app.campaign.calendar.freshness_warnings(today) if bad]
        calendar = Check(
            ok=not serious, detail=serious[0] if serious else "节假日数据齐全 holiday files present"
        )
        refused = self.source.config_error
        config = Check(
            ok=refused is None,
            detail="配置有效 valid"
            if refused is None
            else "配置修改无效，仍用原配置 an edit was refused",
        )
        ok = all(c.ok for c in (log_check, scheduler, calendar, config))
        return Health(
            status="ok" if ok else "degraded",
            log=log_check,
            scheduler=scheduler,
            calendar=calendar,
            config=config,
        )

    def close(self) -> None:
        if self.led is not None:
            try:
                self.led.feed.flush_seen()  # screens seen since the last batch
            except Exception:  # the log may be gone already: staleness is a hint, not a record
                log.warning("could not write the last LED fetch times")
        self.store.close()


def create_app(service: WebService) -> Any:
    """The ASGI app (the guard around FastAPI)."""
    api = FastAPI(
        title="broadcaster",
        version=__version__,
        description="反电诈宣传推送的机器接口 machine routes of broadcaster: health, metrics,"
        " and the routes channel plugins declare (provider callbacks, screen feeds,"
        " confirmation links).",
        docs_url=None,  # the docs pages load assets from the internet
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.state.service = service

    @api.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "degraded"}},
        tags=["service"],
        summary="健康检查 health: log reachable, scheduler alive, calendar up to date",
    )
    def healthz() -> Response:
        health = service.health()
        return JSONResponse(health.model_dump(), status_code=200 if health.status == "ok" else 503)

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["service"],
        summary="Prometheus 指标 metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        return Response(
            service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    from broadcaster.web.led import LedRoute

    service.led = LedRoute(service)
    for path in ("/led/{screen}/playlist",):
        api.add_route(path, service.led.handle, methods=["GET", "HEAD"], include_in_schema=False)
    for scope in ("hooks", "led", "confirm"):
        for path in (f"/{scope}/{{channel}}/{{rest:path}}", f"/{scope}/{{channel}}"):
            api.add_route(  # a plain Starlette route: no dependency solving on the hot path
                path,
                service.hooks.handle,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                include_in_schema=False,
            )

    from broadcaster.web.console import register

    register(api, service)
    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, *_http_text(exc.status_code))

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 400, "请求参数无效 invalid request", "invalid request")

    def openapi() -> dict[str, Any]:
        schema = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = (
            ErrorBody.model_json_schema()
        )
        schema["paths"].update(service.hooks.openapi_paths())
        if service.app.campaign.screens:
            from broadcaster.web.led import openapi_path

            schema["paths"].update(openapi_path())
        return schema

    api.openapi = openapi  # type: ignore[method-assign]  # rebuilt each time: routes follow the config
    return Guard(
        api,
        max_body=service.options.max_body,
        max_form=service.options.max_form,
        page=service.error_page,
    )


def _http_text(status: int) -> tuple[str, str]:
    return {
        404: ("页面不存在 not found", "not found"),
        405: ("不允许此方法 method not allowed", "method not allowed"),
        400: ("请求无效 bad request", "bad request"),
        403: ("没有权限 forbidden", "forbidden"),
    }.get(status, ("请求无法处理 the request cannot be handled", "error"))


def _error(request: Request, status: int, chinese: str, english: str) -> Response:
    if is_machine_path(request.url.path):
        code, body = error_json(status, chinese, english)
        return Response(body, status_code=code, media_type="application/json")
    return Response(
        request.app.state.service.error_page(status, chinese, english),
        status_code=status,
        media_type="text/html; charset=utf-8",
    )
