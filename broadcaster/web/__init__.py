"""The web service: provider callbacks, screen feeds, confirmation links, and the office
console.

May import the engine (`broadcaster.engine`), the log (`broadcaster.log`), the model
and the contract; nothing imports it but the command line (`broadcaster serve`,
`run --serve`). Needs the `web` extra (FastAPI, uvicorn, argon2-cffi, itsdangerous,
prometheus-client, python-multipart).

    service.py   WebService (what routes share) and create_app()
    hooks.py     plugin routes mounted at /hooks, /led, /confirm; their OpenAPI entries
    guard.py     size limits, path checks and security headers for every request
    accounts.py  roles, argon2 hashes, login throttling    sessions.py  cookies, CSRF
    links.py     signed, expiring, single-use links        store.py     the console tables
    metrics.py   /metrics                                  queries.py   the console's reads
    console/     the pages (one module each; `console.page` registers a new one)
    server.py    uvicorn on a bound socket                 source.py    config and dispatcher
"""

from __future__ import annotations

__all__: list[str] = []
