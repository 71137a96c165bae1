"""Real `broadcaster` processes for tests: started, read line by line, signalled, reaped.

The process runs the installed command (or `main()` through the interpreter when the
script is missing), with stdin closed. Its output is read line by line in a thread; a
test waits for a line with a deadline, never with a fixed sleep.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("broadcaster")
STARTED = "运行中 running; Ctrl-C 停止 stop"
STOPPED = "已停止 stopped cleanly."


def command(config: Path, *args: str) -> list[str]:
    base = (
        [str(SCRIPT)]
        if SCRIPT.exists()
        else [sys.executable, "-c", "from broadcaster.cli import main; main()"]
    )
    return [*base, "-c", str(config), *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our variables are already cleared (conftest); plain, unbuffered UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    env.update(extra or {})
    return env


class Running:
    """A `broadcaster` process (by default `run --no-live`) whose merged output is collected
    line by line."""

    def __init__(
        self,
        config: Path,
        *args: str,
        subcommand: tuple[str, ...] = ("run", "--no-live"),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            command(config, *subcommand, *args),
            cwd=config.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(env),
            text=True,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def output(self) -> str:
        return "".join(self._seen)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Read output until `text` appears in it; fail after `timeout` seconds or at exit."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not printed within {timeout}s:\n{self.output}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"exited with {self.proc.wait()} before printing {text!r}:\n{self.output}"
                )
            self._seen.append(line)
        return self.output

    def stop(self, signum: int, timeout: float = 20.0) -> int:
        """Send `signum`; return the exit code once the process ended and its output is read."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        self._drain()
        return code

    def _drain(self) -> None:
        self._reader.join(timeout=10)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self._seen.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._drain()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
