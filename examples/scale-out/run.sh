#!/usr/bin/env bash
# Two oxbow instances of this app on one PostgreSQL database: A on :3001, B on :3002.
# Put a load balancer in front (or talk to each port); a write through either reaches
# change-stream subscribers on both. Ctrl-C stops both.
#
#   examples/scale-out/run.sh            # from the repository root
#   NODE_ENV=production examples/scale-out/run.sh   # with server/datasources.production.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
APP="$ROOT/examples/scale-out"
cargo build --release -q -p oxbow-cli --manifest-path "$ROOT/Cargo.toml"
OXBOW="$ROOT/target/release/oxbow"
PORT=3001 "$OXBOW" serve "$APP" &
A=$!
PORT=3002 "$OXBOW" serve "$APP" &
B=$!
trap 'kill $A $B 2>/dev/null; wait' INT TERM EXIT
wait
