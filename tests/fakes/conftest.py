"""Fixtures for the fakes' own tests."""

from tests.fakes.fixtures import http_server, http_session, webhook_server  # noqa: F401
