"""Exceptions of the web service (all `BroadcasterError`, exit code 1 on the command line).

BroadcasterError
└── WebError                 the web service refused something
    ├── AccountError         a console account cannot be made or changed as asked
    ├── LinkError            a signed link is forged, expired, reused, or someone else's
    └── CSRFError            a form came without its CSRF token, or with another one
"""

from __future__ import annotations

from broadcaster.errors import BroadcasterError

__all__ = ["AccountError", "CSRFError", "LinkError", "WebError"]


class WebError(BroadcasterError):
    """The web service refused something; the message is shown to the person."""


class AccountError(WebError):
    """A console account cannot be made or changed as asked."""


class LinkError(WebError):
    """A signed link that must be refused; `reason` is forged, expired, used or person."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CSRFError(WebError):
    """A form without its CSRF token, or with one that is not this browser's."""
