-- GET scenarios (findById, filtered list): the URL comes from the command line.
local dir = os.getenv("BENCH_LUA_DIR") or "bench/lua"
dofile(dir .. "/report.lua")
