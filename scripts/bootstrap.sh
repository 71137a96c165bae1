#!/usr/bin/env bash
# Create .venv and install broadcaster. Needs only Python 3.11 or newer; installs Debian's
# venv support first when this Python lacks it (needs root or sudo). A .venv left by an
# earlier attempt with the wrong Python, or whose Python no longer runs, is rebuilt.
#   scripts/bootstrap.sh        the tool itself (make run)
#   scripts/bootstrap.sh dev    plus test, lint and benchmark tools (make test)
#   PYTHON=/path/to/python3.12 scripts/bootstrap.sh   choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

# python_ok PATH: PATH runs, and is Python 3.11 or newer
python_ok() {
  [ -n "$1" ] && [ -x "$1" ] \
    && "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

if [ -n "${PYTHON:-}" ]; then
  if ! python_ok "$PYTHON"; then
    echo "需要 Python 3.11 或更高版本 Python 3.11 or newer is required; PYTHON=$PYTHON is not" >&2
    exit 1
  fi
else
  for candidate in python3.13 python3.12 python3.11 python3; do
    found="$(command -v "$candidate" || true)"
    if python_ok "$found"; then
      PYTHON="$found"
      break
    fi
  done
  if [ -z "${PYTHON:-}" ]; then
    echo "需要 Python 3.11 或更高版本 Python 3.11 or newer is required (set PYTHON=...)" >&2
    exit 1
  fi
fi

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "安装 Debian 软件包 installing Debian packages: $*" >&2
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
  else
    echo "请安装 please install: $*" >&2
    return 1
  fi
}

if { [ -e .venv ] || [ -L .venv ]; } && ! python_ok .venv/bin/python; then
  echo "虚拟环境不可用，重建 .venv has no working Python 3.11+: rebuilding it …" >&2
  rm -rf .venv
fi
if [ ! -e .venv ] && [ ! -L .venv ]; then
  echo "创建虚拟环境 creating .venv with $PYTHON …" >&2
  if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi
# pip's output is kept in .venv/pip.log and shown only when it fails
pip() {
  if ! .venv/bin/python -m pip -q --disable-pip-version-check "$@" > .venv/pip.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip.log >&2
    echo "安装失败 install failed: pip $*" >&2
    exit 1
  fi
}
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "安装依赖 installing dependencies …" >&2
  pip install --upgrade pip "setuptools>=70.1" wheel
  pip install -e .
  .venv/bin/python -c "import broadcaster.cli"  # fail loudly when the install did not work
  touch .venv/.installed
fi
if [ "$extras" = "dev" ] && { [ ! -f .venv/.installed-dev ] || [ pyproject.toml -nt .venv/.installed-dev ]; }; then
  echo "安装测试工具 installing test tools …" >&2
  pip install -e '.[dev]'
  .venv/bin/python -c "import pytest, psycopg, apprise, mypy"
  touch .venv/.installed-dev
fi
# The console's browser tests drive Debian's Chromium through Playwright (no browser download).
if [ "$extras" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || echo "浏览器测试需要 browser tests need Debian's chromium: apt-get install chromium" >&2
fi
# Report charts (PNG, HTML) draw Chinese with the Noto CJK font: Debian's fonts-noto-cjk.
if [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
  apt_install fonts-noto-cjk || echo "报表图表需要中文字体 report charts need a CJK font: apt-get install fonts-noto-cjk" >&2
fi
