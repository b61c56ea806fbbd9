#!/usr/bin/env bash
# Seed N Products (default 100) into the shop app through its REST API, in one request:
#   bench/seed.sh http://127.0.0.1:PORT [N]
# POST /api/catalog with a JSON array; names Product-1..N, prices 1..N, categories cycling over
# four values, inStock alternating. Fails unless the server answers 200 and /count reports N.
set -euo pipefail
BASE="${1:?usage: seed.sh BASE_URL [N]}"
N="${2:-100}"
case "$BASE" in
  http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
  *) echo "seed.sh: refusing non-loopback URL $BASE" >&2; exit 2 ;;
esac
body="$(python3 - "$N" <<'PY'
import json, sys
n = int(sys.argv[1])
cats = ["tools", "garden", "toys", "books"]
print(json.dumps([{"name": f"Product-{i}", "price": i, "category": cats[i % len(cats)],
                   "inStock": i % 2 == 0} for i in range(1, n + 1)]))
PY
)"
code="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data-binary "$body" "$BASE/api/catalog")"
if [ "$code" != 200 ]; then
  echo "seed.sh: POST $BASE/api/catalog answered $code" >&2
  exit 1
fi
count="$(curl -sS --max-time 5 "$BASE/api/catalog/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
if [ "$count" != "$N" ]; then
  echo "seed.sh: expected $N products, /api/catalog/count says $count" >&2
  exit 1
fi
echo "seeded $count products at $BASE"
