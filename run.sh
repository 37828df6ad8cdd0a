#!/usr/bin/env bash
# Set everything up (first run: a few minutes) and open nemo-chat on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh app
# The first interactive run on a Linux desktop offers a menu entry, once.
if [ $# -eq 0 ] && [ -t 0 ] && [ -t 1 ] && [ "$(uname -s)" = Linux ] && [ ! -e .venv/.desktop-offered ]; then
  touch .venv/.desktop-offered
  read -r -p "Add nemo-chat to your applications menu? [y/N] " answer || answer=""
  case "$answer" in [yY]*) .venv/bin/nemo-chat desktop install || true ;; esac
fi
exec .venv/bin/nemo-chat "$@"
