"""Run the benchmarks: python -m bench [plan] [dispatch] [log] [config] [web] [sms] [bots] ... [--quick]."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "plan": "bench.plan_bench",
    "dispatch": "bench.dispatch_bench",
    "log": "bench.log_bench",
    "config": "bench.config_bench",
    "web": "bench.web_bench",
    "recipients": "bench.recipients_bench",
    "sms": "bench.sms_bench",
    "bots": "bench.bots_bench",
    "led": "bench.led_bench",
    "audio": "bench.audio_bench",
    "audit": "bench.audit_bench",
    "reports": "bench.reports_bench",
    "workers": "bench.workers_bench",
}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"未知的基准 unknown benchmark {', '.join(unknown)}; expected {', '.join(BENCHES)}")
        return 2
    for name in names:
        importlib.import_module(BENCHES[name]).main(quick=quick)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
