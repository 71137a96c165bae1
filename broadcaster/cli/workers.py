"""`broadcaster worker` runs queued send jobs; `broadcaster workers` shows them and the queue."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import open_log, state_dir_for

__all__ = ["worker", "workers"]


@cli.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="同时处理的任务数 queued jobs run at once (each runs its sends in the channel's lane).",
)
@click.option(
    "--name", help="工作进程名 worker name shown by `broadcaster workers` (default host:pid)."
)
@click.option(
    "--once",
    is_flag=True,
    help="处理完队列即退出 stop when the queue is empty (default: run until SIGTERM).",
)
@DB_OPTION
@STATE_OPTION
@pass_state
def worker(
    state: State,
    concurrency: int,
    name: str | None,
    once: bool,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """工作进程 a worker: sends what `run --workers external` queued (PostgreSQL log).

    Start as many as needed, on as many hosts as reach the database; each loads the same
    config and the log key from the environment. SIGTERM stops it after its jobs finish.
    """
    from broadcaster.engine import worker as engine_worker

    folder = state_dir_for(state.config, state_dir)
    state.out.print(
        f"工作进程启动 worker starting: concurrency {concurrency}, config {state.config}",
        markup=False,
    )
    engine_worker.serve(
        str(state.config),
        db,
        str(folder),
        os.environ,
        concurrency=concurrency,
        name=name,
        wait=not once,
    )
    state.out.print("工作进程已停止 worker stopped.", markup=False)


@cli.command("workers")
@DB_OPTION
@STATE_OPTION
@pass_state
def workers(state: State, db: str | None, state_dir: Path | None) -> None:
    """工作进程与队列 the workers, their throughput and the send queue."""
    from broadcaster.engine.queue import queue_stats

    folder = state_dir_for(state.config, state_dir)
    store, _ = open_log(db, folder, os.environ)
    try:
        stats = queue_stats(store.connect_url())
    finally:
        store.close()
    state.out.print(
        f"队列 queue: 待处理 {stats.todo} todo · 处理中 {stats.doing} doing · "
        f"失败 {stats.failed} failed · 最早等待 oldest waiting {stats.oldest_seconds:.0f} s",
        markup=False,
    )
    if not stats.workers:
        state.out.print("没有工作进程 no worker is running.", markup=False)
        return
    table = Table(
        "工作进程 worker",
        "心跳 heartbeat",
        "处理中 doing",
        "近5分钟任务 jobs (5 min)",
        "投递速率 deliveries/s",
        box=None,
    )
    for w in stats.workers:
        table.add_row(
            str(w.id),
            f"{w.heartbeat_seconds:.0f} s",
            str(w.doing),
            str(w.jobs_recent),
            f"{w.deliveries_recent / stats.window_seconds:.1f}",
        )
    state.out.print(fit_table(table, state.out.width))
