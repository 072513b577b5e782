#!/usr/bin/env bash
# The whole test suite, with its own set-up: the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
