#!/usr/bin/env bash
# Set everything up (first run: a few minutes) and open nemo-chat on http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh app
exec .venv/bin/nemo-chat "$@"
