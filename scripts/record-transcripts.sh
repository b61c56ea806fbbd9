#!/usr/bin/env bash
# Re-record tests/conformance/transcripts/*.json (or only the names given) against the real
# LoopBack 3. See scripts/record-transcripts.js and tests/conformance/README.md.
#   scripts/record-transcripts.sh [name ...]
set -euo pipefail
exec node "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/record-transcripts.js" "$@"
