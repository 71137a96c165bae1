#!/usr/bin/env bash
# Create .venv and install broadcaster with its test tools. Needs only Python 3.11;
# installs Debian's venv support first when this Python lacks it (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
if [ -z "$PYTHON" ]; then
  echo "需要 Python 3.11 / Python 3.11 is required" >&2
  exit 1
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

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import broadcaster.cli" # fail loudly when the install did not work
touch .venv/.installed
