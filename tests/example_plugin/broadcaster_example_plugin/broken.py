"""A deliberately broken plugin module: it needs a dependency that is not installed.

The registry must list `broken` as unusable, with the import error, and keep working.
"""

from __future__ import annotations

import broadcaster_example_missing_dependency  # noqa: F401  (deliberately absent)


class BrokenChannel:
    name = "broken"
