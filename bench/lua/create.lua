-- create scenario: POST a JSON object to the URL given on the command line
-- (http://127.0.0.1:PORT/api/catalog). The request is static, so wrk pre-builds it once.
wrk.method = "POST"
wrk.body = '{"name":"bench-item","price":42.5,"category":"bench","inStock":true}'
wrk.headers["Content-Type"] = "application/json"
local dir = os.getenv("BENCH_LUA_DIR") or "bench/lua"
dofile(dir .. "/report.lua")
