"""Run every benchmark: python -m bench [plan] [dispatch] [--quick]."""

from __future__ import annotations

import sys

from . import dispatch_bench, plan_bench


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or ["plan", "dispatch"]
    for name in names:
        {"plan": plan_bench.main, "dispatch": dispatch_bench.main}[name](quick=quick)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
