"""登录 Log in and 退出 log out: throttled, recorded, sessions in signed cookies."""

from __future__ import annotations

import math

from starlette.responses import Response

from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.sessions import SESSION_COOKIE


def _next(target: str) -> str:
    """Only a path of this site (never //host or a scheme: no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@page("/login", "登录", "Log in", methods=("GET", "POST"), nav=False, public=True)
def login(req: ConsoleRequest) -> Response:
    nxt = _next(req.arg("next", "/"))
    if req.request.method == "GET":
        if req.user is not None:
            return req.redirect(nxt)
        return req.render("login.html", title="登录 Log in", next=nxt)
    name = req.arg("name")[:64]
    password = req.form.get("password", "")
    wait = req.service.throttle.wait(name, req.remote)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        return req.render(
            "login.html",
            status=429,
            title="登录 Log in",
            next=nxt,
            name=name,
            error=f"登录失败次数过多，请 {minutes} 分钟后再试 too many failed logins: try again in {minutes} min",
        )
    user = req.service.accounts.verify(name, password) if name and password else None
    req.service.throttle.record(name, req.remote, user is not None)
    if user is None:
        return req.render(
            "login.html",
            status=401,
            title="登录 Log in",
            next=nxt,
            name=name,
            error="用户名或密码错误 wrong user name or password",
        )
    value, session = req.service.sessions.issue(user)
    req.user = user
    req.set_cookies.append(
        (SESSION_COOKIE, value, {"max_age": int(req.service.sessions.lifetime.total_seconds())})
    )
    req.csrf = req.service.sessions.csrf_token(session.nonce)  # a new token for the new session
    req.record("login")
    return req.redirect(nxt)


@page("/logout", "退出", "Log out", methods=("POST",), nav=False)
def logout(req: ConsoleRequest) -> Response:
    req.record("logout")
    req.clear_cookies.append(SESSION_COOKIE)
    req.csrf = req.service.sessions.csrf_token("")
    return req.redirect("/login")
