#!/usr/bin/env bash
# Seed 10 Customers with 10 Orders each into the shop app (the include scenario's data):
#   bench/seed-orders.sh http://127.0.0.1:PORT
set -euo pipefail
BASE="${1:?usage: seed-orders.sh BASE_URL}"
case "$BASE" in
  http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
  *) echo "seed-orders.sh: refusing non-loopback URL $BASE" >&2; exit 2 ;;
esac
body="$(python3 - <<'PY'
import json
print(json.dumps([{"name": f"Customer-{i}", "email": f"c{i}@x.io"} for i in range(1, 11)]))
PY
)"
code="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data-binary "$body" "$BASE/api/Customers")"
[ "$code" = 200 ] || { echo "seed-orders.sh: POST $BASE/api/Customers answered $code" >&2; exit 1; }
body="$(python3 - <<'PY'
import json
print(json.dumps([{"code": f"O-{c}-{j}", "total": j * 10 + c, "customerId": c}
                  for c in range(1, 11) for j in range(1, 11)]))
PY
)"
code="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' --data-binary "$body" "$BASE/api/Orders")"
[ "$code" = 200 ] || { echo "seed-orders.sh: POST $BASE/api/Orders answered $code" >&2; exit 1; }
echo "seeded 10 customers, 100 orders at $BASE"
