#!/usr/bin/env bash
# AI Factory on one machine: installs into ./.venv on first use, then runs.
#   bash deploy/local.sh demo   # the reference agent on its samples, embedded dev server
#   bash deploy/local.sh test   # the test suite (and the real local model, where it is installed;
#                               # installs promtool from Debian's prometheus package where missing)
#   bash deploy/local.sh <any aifactory command>   e.g. dev, check, agents list
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "AI Factory needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1 || echo missing)." >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv and installing AI Factory (first run only) ..." >&2
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# Where the local model is installed on this machine, its marked test runs it for real:
# bring this venv's model server up to date first (pip reuses its built wheel).
prepare_local_model() {
    local model="${AIFACTORY_MODEL_CACHE:-$HOME/.cache/aifactory/models}/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if [ -f "$model" ]; then
        .venv/bin/aifactory model install || echo "local model unusable: its marked test will be skipped" >&2
    fi
}

cmd="${1:-demo}"
shift || true
case "$cmd" in
    test) prepare_local_model; bash deploy/ensure-promtool.sh; exec .venv/bin/python -m pytest "$@" ;;
    *) exec .venv/bin/aifactory "$cmd" "$@" ;;
esac
