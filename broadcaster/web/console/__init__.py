"""The office console: server-rendered pages, Chinese first with English beside.

Pages register themselves with `page()` (see `base.py`); importing this package
imports every page module. `register()` mounts them on the FastAPI app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broadcaster.web.console.base import PAGES, ConsoleRequest, Page, endpoint, page

if TYPE_CHECKING:
    from fastapi import FastAPI

    from broadcaster.web.service import WebService

__all__ = ["PAGES", "ConsoleRequest", "Page", "page", "register"]


def register(api: FastAPI, service: WebService) -> None:
    from broadcaster.web.console import (  # noqa: F401  (each module registers its pages)
        approvals,
        auth,
        calendar,
        channels,
        duties,
        listen,
        logpage,
        lookup,
        reports,
        screens,
        sendnow,
        today,
        waiting,
    )

    for p in PAGES:
        api.add_route(
            p.path, endpoint(service, p), methods=list(p.methods), include_in_schema=False
        )
