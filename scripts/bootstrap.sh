# Sourced by ./run and ./test: a venv with Python >= 3.12 and agentlog installed.
# Usage: BOOTSTRAP_EXTRAS=test . scripts/bootstrap.sh   (a sourced script sees its
# caller's arguments as $1..., so the extras come in a variable, never as an argument)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
  local candidates=(python3.13 python3.12 python3)
  local py
  for py in "${candidates[@]}" "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9]; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  PY="$(find_python)" || { echo "agentlog: error: no Python >= 3.12 found (install python3.12 or newer)" >&2; exit 2; }
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

EXTRAS="${BOOTSTRAP_EXTRAS:-}"
STAMP="$VENV/.installed${EXTRAS:+-$EXTRAS}"
installed() {  # an install with the test extras also serves plain ./run
  local stamp
  for stamp in "$STAMP" "$VENV/.installed-test"; do
    if [ -f "$stamp" ] && [ ! "$ROOT/pyproject.toml" -nt "$stamp" ]; then return 0; fi
  done
  return 1
}
if ! installed; then
  echo "agentlog: installing into $VENV (once)" >&2
  if ! out="$("$VENV/bin/python" -m pip install -q --disable-pip-version-check \
                --no-warn-script-location -e "$ROOT${EXTRAS:+[$EXTRAS]}" 2>&1)"; then
    echo "$out" >&2
    echo "agentlog: error: pip install failed" >&2
    exit 2
  fi
  touch "$STAMP"
fi
