"""`broadcaster serve`: the web service and office console; `serve users`: console accounts.

Also the options and start/stop of `run --serve` (the service beside the scheduler).
FastAPI and uvicorn are imported inside the commands: they come with the `web` extra.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import load_app, pass_state, print_warnings
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.engine.app import log_url, open_log, state_dir_for
from broadcaster.errors import BroadcasterError

if TYPE_CHECKING:
    from broadcaster.engine.runner import Runner
    from broadcaster.log import DeliveryLog
    from broadcaster.web.server import Server
    from broadcaster.web.service import WebService
    from broadcaster.web.settings import WebOptions

__all__ = ["serve", "serve_options", "start_serving", "stop_serving"]

HOST_OPTION = click.option(
    "--host", default="127.0.0.1", show_default=True, help="监听地址 address to listen on."
)
PORT_OPTION = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="端口 port (0: any free port).",
)


def _web_missing() -> BroadcasterError:
    return BroadcasterError(
        "网页服务需要 web 组件 the web service needs the web extra: pip install 'broadcaster[web]'"
    )


def _options(
    host: str, port: int, secure_cookies: bool = False, proxy: str | None = None
) -> WebOptions:
    try:
        from broadcaster.web.settings import WebOptions
    except ImportError:
        raise _web_missing() from None
    return WebOptions(
        host=host, port=port, secure_cookies=secure_cookies, forwarded_allow_ips=proxy
    )


@cli.group("serve", invoke_without_command=True)
@DB_OPTION
@STATE_OPTION
@HOST_OPTION
@PORT_OPTION
@click.option(
    "--secure-cookies",
    is_flag=True,
    help="仅经 HTTPS 发送登录 cookie send session cookies over https only (behind nginx with TLS).",
)
@click.option(
    "--proxy",
    metavar="IPS",
    help="可信反向代理地址 trust X-Forwarded-For/-Proto from these addresses (e.g. 127.0.0.1).",
)
@pass_state
@click.pass_context
def serve(
    ctx: click.Context,
    state: State,
    db: str | None,
    state_dir: Path | None,
    host: str,
    port: int,
    secure_cookies: bool,
    proxy: str | None,
) -> None:
    """网页服务和办公控制台 the web service (provider callbacks, screen feeds, links) and the
    office console, on the same config and delivery log as `run`.

    \b
    Accounts:  broadcaster serve users add NAME --role operator   (the password is asked for)
    """
    ctx.meta["serve.db"] = db
    ctx.meta["serve.state_dir"] = state_dir
    if ctx.invoked_subcommand is not None:
        return
    options = _options(host, port, secure_cookies, proxy)
    try:
        from broadcaster.web.server import Server, bind, standalone
        from broadcaster.web.service import create_app
    except ImportError:
        raise _web_missing() from None
    app, _ = load_app(state, None, state_dir)
    print_warnings(state, app.campaign)
    store, key = app.open_log(db)
    service = source = None
    try:
        service, source = standalone(app, store, key, db, options)
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise BroadcasterError(
                f"无法监听 cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        server = Server(create_app(service), sock, options)
        state.out.print(
            f"网页服务 listening on {server.url} · 日志 log {store.url_display}", markup=False
        )
        if not service.store.users():
            state.out.print(
                "还没有控制台账号 no console account yet: broadcaster serve users add NAME --role operator",
                markup=False,
            )
        state.out.print("运行中 running; Ctrl-C 停止 stop", markup=False)
        server.run()
    finally:
        if source is not None:
            source.close()
        if service is not None:
            service.close()
        store.close()
    state.out.print("已停止 stopped cleanly.")


# --- run --serve -----------------------------------------------------------------------------


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"serve.{param.name}"] = value
    return value


def serve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--serve` and the service's options for `run` (kept in the context, not parameters)."""
    options = [
        click.option(
            "--serve",
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="同时运行网页服务 also run the web service and console.",
        ),
        click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            expose_value=False,
            callback=_remember,
            help="网页服务监听地址 the web service's address.",
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=8080,
            show_default=True,
            expose_value=False,
            callback=_remember,
            help="网页服务端口 its port.",
        ),
        click.option(
            "--secure-cookies",
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="仅经 HTTPS 发送登录 cookie (behind TLS).",
        ),
        click.option(
            "--proxy",
            metavar="IPS",
            expose_value=False,
            callback=_remember,
            help="可信反向代理地址 trust X-Forwarded-* from these addresses.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def start_serving(
    state: State, runner: Runner, store: DeliveryLog, db: str | None
) -> tuple[Server, WebService] | None:
    """Start the web service beside the scheduler when `run --serve` was given."""
    meta = click.get_current_context().meta
    if not meta.get("serve.serve"):
        return None
    host, port = meta["serve.host"], meta["serve.port"]
    options = _options(host, port, meta.get("serve.secure_cookies", False), meta.get("serve.proxy"))
    try:
        from broadcaster.web.server import start_beside_runner
    except ImportError:
        raise _web_missing() from None
    try:
        server, service = start_beside_runner(runner, store, db, options)
    except OSError as exc:
        raise BroadcasterError(
            f"无法监听 cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    state.out.print(f"网页服务 listening on {server.url}", markup=False)
    return server, service


def stop_serving(web: tuple[Server, WebService] | None) -> None:
    if web is not None:
        server, service = web
        server.stop()
        service.close()


# --- accounts --------------------------------------------------------------------------------


def _accounts(ctx: click.Context, state: State) -> tuple[Any, DeliveryLog]:
    try:
        from broadcaster.engine.clock import SystemClock
        from broadcaster.web.accounts import Accounts
        from broadcaster.web.settings import web_secret
        from broadcaster.web.store import ConsoleStore
    except ImportError:
        raise _web_missing() from None
    db = ctx.meta.get("serve.db")
    folder = state_dir_for(state.config, ctx.meta.get("serve.state_dir"))
    store, _ = open_log(db, folder)
    console = ConsoleStore(store, log_url(db, folder, os.environ), SystemClock())
    return Accounts(console, web_secret(folder)), store


def _read_password(confirm: bool = True) -> str:
    """From a prompt (hidden, asked twice) at a terminal, else one line of stdin; never a flag."""
    if sys.stdin.isatty():
        return str(click.prompt("密码 password", hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@serve.group("users")
def users() -> None:
    """控制台账号 console accounts: add, list, password, role, disable, enable."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "auditor"]),
    required=True,
    help="角色 viewer (sees pages), operator (also sends now), auditor (also looks people up).",
)
@pass_state
@click.pass_context
def users_add(ctx: click.Context, state: State, name: str, role: str) -> None:
    """添加账号 add an account; the password is read from a prompt or one line of stdin."""
    accounts, store = _accounts(ctx, state)
    try:
        accounts.add(name, role, _read_password())
        accounts.store.record(_actor(), "cli", "user_add", name, {"role": role})
    finally:
        accounts.store.close()
        store.close()
    state.out.print(f"已添加 added {name} ({role})", markup=False)


@users.command("passwd")
@click.argument("name")
@pass_state
@click.pass_context
def users_passwd(ctx: click.Context, state: State, name: str) -> None:
    """修改密码 set a new password (ends the account's sessions)."""
    accounts, store = _accounts(ctx, state)
    try:
        accounts.set_password(name, _read_password())
        accounts.store.record(_actor(), "cli", "user_password", name)
    finally:
        accounts.store.close()
        store.close()
    state.out.print(f"已修改 password changed for {name}", markup=False)


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["viewer", "operator", "auditor"]))
@pass_state
@click.pass_context
def users_role(ctx: click.Context, state: State, name: str, role: str) -> None:
    """修改角色 change an account's role (ends its sessions)."""
    accounts, store = _accounts(ctx, state)
    try:
        accounts.set_role(name, role)
        accounts.store.record(_actor(), "cli", "user_role", name, {"role": role})
    finally:
        accounts.store.close()
        store.close()
    state.out.print(f"已修改 {name} is now {role}", markup=False)


@users.command("disable")
@click.argument("name")
@pass_state
@click.pass_context
def users_disable(ctx: click.Context, state: State, name: str) -> None:
    """停用账号 disable an account (ends its sessions); its history stays."""
    accounts, store = _accounts(ctx, state)
    try:
        accounts.disable(name)
        accounts.store.record(_actor(), "cli", "user_disable", name)
    finally:
        accounts.store.close()
        store.close()
    state.out.print(f"已停用 disabled {name}", markup=False)


@users.command("enable")
@click.argument("name")
@pass_state
@click.pass_context
def users_enable(ctx: click.Context, state: State, name: str) -> None:
    """恢复账号 enable a disabled account."""
    accounts, store = _accounts(ctx, state)
    try:
        accounts.enable(name)
        accounts.store.record(_actor(), "cli", "user_enable", name)
    finally:
        accounts.store.close()
        store.close()
    state.out.print(f"已恢复 enabled {name}", markup=False)


@users.command("list")
@pass_state
@click.pass_context
def users_list(ctx: click.Context, state: State) -> None:
    """列出账号 list the accounts."""
    accounts, store = _accounts(ctx, state)
    try:
        rows = accounts.store.users()
    finally:
        accounts.store.close()
        store.close()
    table = Table(title="控制台账号 console accounts", title_justify="left")
    for column in ("用户 user", "角色 role", "创建 created", "修改 changed", "状态 state"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.name,
            r.role,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.changed_at:%Y-%m-%d %H:%M}",
            "停用 disabled" if r.disabled_at else "可用 active",
        )
    state.out.print(table)


@serve.command("actions")
@click.option("--user", "actor", help="只看此人 only this person's.")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_state
@click.pass_context
def actions(ctx: click.Context, state: State, actor: str | None, limit: int) -> None:
    """操作记录 what people did in the console and with these commands (who, when, what)."""
    accounts, store = _accounts(ctx, state)
    try:
        rows = accounts.store.actions(actor=actor, limit=limit)
    finally:
        accounts.store.close()
        store.close()
    table = Table(title="操作记录 actions", title_justify="left")
    for column in (
        "时间 at (UTC)",
        "人 who",
        "角色 role",
        "操作 action",
        "对象 subject",
        "详情 detail",
    ):
        table.add_column(column)
    for a in rows:
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.actor, a.role, a.action, a.subject, a.detail)
    state.out.print(table)
