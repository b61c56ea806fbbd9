#!/usr/bin/env python3
"""Render bench/run.sh's results.env (key=value lines) as the markdown report."""
import statistics
import sys

SCENARIOS = [
    ("findById", "findById `GET /api/catalog/42`", 50.0),
    ("filtered", "filtered list `GET /api/catalog?filter[where][price][gt]=50&filter[limit]=10`", 50.0),
    ("include", "list with a one-level include `GET /api/Customers?filter[include]=orders&filter[limit]=5` (10 orders each)", 30.0),
    ("create", "create `POST /api/catalog`", 30.0),
]
P99_TARGET_MS = 5.0
RSS_TARGET_MB = 15.0
BOOT_TARGET_MS = 50.0


def load(path):
    """key=value lines; a key measured in several rounds ("roundN:key") becomes the median of
    its rounds, and PER_ROUND keeps every round's value in round order."""
    r, rounds = {}, {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k.startswith("round") and ":" in k:
                n, key = k[len("round"):].split(":", 1)
                rounds.setdefault(key, []).append((int(n), v))
            else:
                r[k] = v
    per_round = {}
    for key, vals in rounds.items():
        vals = [v for _, v in sorted(vals)]
        per_round[key] = vals
        try:
            r[key] = f"{statistics.median(float(v) for v in vals):g}"
        except ValueError:
            r[key] = vals[0]
    return r, per_round


R, PER_ROUND = load(sys.argv[1])


def num(key):
    v = R.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_rps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_ms(us):
    if us is None:
        return "n/a"
    ms = us / 1000.0
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def fmt_ratio(a, b):
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.1f}×"


def errors(tag, sc):
    parts = []
    n = num(f"{tag}.{sc}.non2xx")
    if n:
        parts.append(f"{n:.0f} non-2xx")
    sock = [(k, num(f"{tag}.{sc}.err_{k}")) for k in ("connect", "read", "write", "timeout")]
    sock = [f"{k} {v:.0f}" for k, v in sock if v]
    if sock:
        parts.append("socket " + ", ".join(sock))
    if num(f"{tag}.{sc}.requests") is None:
        return "not run"
    return "; ".join(parts) if parts else "0"


def status(ok):
    return "n/a" if ok is None else ("PASS" if ok else "**FAIL**")


out = []
w = out.append
ts = R.get("timestamp", "?")
w(f"# oxbow vs LoopBack 3 benchmark ({ts})")
w("")
w(f"Command (run from the repository root): `{R.get('cmd', 'bench/run.sh').strip()}`")
w("")
w(f"App: `examples/shop` (memory connector), the same directory for both servers (plus LoopBack's "
  f"standard `server/server.js` for LB3), {R.get('seed_rows', '100')} Products seeded through "
  f"`POST /api/catalog`. Each server is started fresh, LB3 first, then oxbow.")
w(f"Load: `taskset -c {R.get('wrk_cpu')} wrk -t{R.get('threads')} -c{R.get('connections')} "
  f"-d{R.get('duration')}s --latency` after a {R.get('warmup')} s warm-up per scenario; server "
  f"pinned with `taskset -c {R.get('server_cpu')}`; oxbow with `--workers 1`.")
w("")
w("## Throughput and latency (server on core %s, wrk on core %s)" % (R.get("server_cpu"), R.get("wrk_cpu")))
w("")
w("| Scenario | LB3 req/s | oxbow req/s | ratio | target | oxbow p50 | oxbow p99 | LB3 p50 | LB3 p99 | errors LB3 / oxbow |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for sc, label, target in SCENARIOS:
    lb, ox = num(f"lb3.{sc}.rps"), num(f"oxbow.{sc}.rps")
    w(f"| {label} | {fmt_rps(lb)} | {fmt_rps(ox)} | {fmt_ratio(ox, lb)} | ≥ {target:.0f}× | "
      f"{fmt_ms(num(f'oxbow.{sc}.p50_us'))} | {fmt_ms(num(f'oxbow.{sc}.p99_us'))} | "
      f"{fmt_ms(num(f'lb3.{sc}.p50_us'))} | {fmt_ms(num(f'lb3.{sc}.p99_us'))} | "
      f"{errors('lb3', sc)} / {errors('oxbow', sc)} |")
w("")
if len(PER_ROUND.get("lb3.findById.rps", [])) > 1:
    n = len(PER_ROUND["lb3.findById.rps"])
    w(f"Every figure above is the median of {n} rounds; each round started every server afresh "
      f"and ran LB3, oxbow{', bare actix-web' if 'bare.findById.rps' in R else ''} in turn. "
      "Per round:")
    w("")
    w("| Scenario | LB3 req/s | oxbow req/s | ratio | median of the rounds' ratios |")
    w("|---|---|---|---|---:|")
    for sc, _, _ in SCENARIOS:
        lbs = [float(v) for v in PER_ROUND.get(f"lb3.{sc}.rps", [])]
        oxs = [float(v) for v in PER_ROUND.get(f"oxbow.{sc}.rps", [])]
        ratios = [o / l for o, l in zip(oxs, lbs) if l]
        med = f"{statistics.median(ratios):.1f}×" if ratios else "n/a"
        w(f"| {sc} | {' · '.join(fmt_rps(v) for v in lbs)} | {' · '.join(fmt_rps(v) for v in oxs)} | "
          f"{' · '.join(f'{r:.1f}×' for r in ratios)} | {med} |")
    w("")
w("CPU during the measurement (100 % = one core fully used). A pinned server well below ~95 % "
  "was starved by other processes or waiting on wrk; wrk near 100 % of its one core means the "
  "load generator, not the server, set the req/s ceiling:")
w("")
w("| Scenario | LB3 server CPU | oxbow server CPU | wrk CPU (LB3 / oxbow run) | rustc processes running (LB3 / oxbow run) | 1-min loadavg (LB3 / oxbow) |")
w("|---|---:|---:|---:|---:|---:|")
for sc, label, _ in SCENARIOS:
    w(f"| {sc} | {R.get(f'lb3.{sc}.server_cpu_pct', 'n/a')} % | {R.get(f'oxbow.{sc}.server_cpu_pct', 'n/a')} % | "
      f"{R.get(f'lb3.{sc}.wrk_cpu_pct', 'n/a')} % / {R.get(f'oxbow.{sc}.wrk_cpu_pct', 'n/a')} % | "
      f"{R.get(f'lb3.{sc}.rustc_procs', '?')} / {R.get(f'oxbow.{sc}.rustc_procs', '?')} | "
      f"{R.get(f'lb3.{sc}.loadavg', '?')} / {R.get(f'oxbow.{sc}.loadavg', '?')} |")
w("")

if "bare.findById.rps" in R:
    w("## Calibration: a bare actix-web handler answering oxbow's exact bytes")
    w("")
    w("`crates/oxbow/examples/bare_actix.rs`, pinned like oxbow (one worker, core %s), same wrk "
      "load: no registry, no filter, no store, no middleware headers, no ETag; the create "
      "handler parses the JSON body and answers a canned body. Its req/s is what actix-web, the "
      "kernel's loopback TCP path and wrk leave on this machine, so `bare / LB3` is the highest "
      "ratio any actix-web server could show here." % R.get("server_cpu"))
    w("")
    w("| Scenario | bare req/s | bare / LB3 (ceiling ratio) | target | oxbow / bare | bare p99 | wrk CPU (bare run) |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for sc, label, target in SCENARIOS:
        b, lb, ox = num(f"bare.{sc}.rps"), num(f"lb3.{sc}.rps"), num(f"oxbow.{sc}.rps")
        pct = "n/a" if b in (None, 0) or ox is None else f"{ox / b * 100:.0f} %"
        w(f"| {sc} | {fmt_rps(b)} | {fmt_ratio(b, lb)} | ≥ {target:.0f}× | {pct} | "
          f"{fmt_ms(num(f'bare.{sc}.p99_us'))} | {R.get(f'bare.{sc}.wrk_cpu_pct', 'n/a')} % |")
    w("")

if "oxbow_unpinned.findById.rps" in R:
    w("## For information: oxbow unpinned (default workers, wrk unpinned, both cores shared)")
    w("")
    w("Not the comparison basis: LB3 is single-threaded, and here wrk and oxbow compete for both cores.")
    w("")
    w("| Scenario | oxbow req/s | vs LB3 (pinned) | p50 | p99 | server CPU | wrk CPU | errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---|")
    for sc, label, _ in SCENARIOS:
        v = num(f"oxbow_unpinned.{sc}.rps")
        w(f"| {sc} | {fmt_rps(v)} | {fmt_ratio(v, num(f'lb3.{sc}.rps'))} | "
          f"{fmt_ms(num(f'oxbow_unpinned.{sc}.p50_us'))} | {fmt_ms(num(f'oxbow_unpinned.{sc}.p99_us'))} | "
          f"{R.get(f'oxbow_unpinned.{sc}.server_cpu_pct', 'n/a')} % | {R.get(f'oxbow_unpinned.{sc}.wrk_cpu_pct', 'n/a')} % | "
          f"{errors('oxbow_unpinned', sc)} |")
    w("")

w("## Memory (VmRSS from /proc/PID/status, MiB)")
w("")
tags = [("lb3", "LB3"), ("oxbow", "oxbow `--workers 1`")]
if "oxbow_unpinned.rss_boot" in R:
    tags.append(("oxbow_unpinned", "oxbow default workers"))
w("| When | " + " | ".join(t[1] for t in tags) + " |")
w("|---|" + "---:|" * len(tags))
for key, label in [("rss_boot", "idle after boot (empty tables, 1 s after the listening line)"),
                   ("rss_seeded", f"idle after seeding {R.get('seed_rows', '100')} rows"),
                   ("rss_after_reads", "after the findById + filtered-list load"),
                   ("rss_after_create", "after the create load")]:
    w(f"| {label} | " + " | ".join(R.get(f"{t}.{key}", "n/a") for t, _ in tags) + " |")
w("| rows in the table after the create load | " + " | ".join(R.get(f"{t}.rows_after_create", "n/a") for t, _ in tags) + " |")
w("| threads after boot | " + " | ".join(R.get(f"{t}.threads", "n/a") for t, _ in tags) + " |")
w("")
w("The create rows differ because each server inserts as many rows as it serves requests; the "
  "after-create figures are therefore not comparable between servers.")
w("")

w("## Boot time (spawn → `Web server listening at:` on stdout; median of %s, [min–max]; unpinned)" % R.get("boot.oxbow_seed.runs", "?"))
w("")
w("| App | LB3 | oxbow | ratio (LB3 / oxbow) |")
w("|---|---:|---:|---:|")


def boot(tag):
    m = num(f"boot.{tag}.median_ms")
    if m is None:
        return "n/a"
    return f"{m:.1f} ms [{num(f'boot.{tag}.min_ms'):.1f}–{num(f'boot.{tag}.max_ms'):.1f}]"


for app, label in [("seed", "seed app (oxbow: `target/release/oxbow-default-app serve` in the repo root; "
                             "LB3: rig `apps/seed`, `node server/server.js`)"),
                   ("shop", "shop app (`oxbow serve .` / `node server/server.js`)")]:
    lb, ox = num(f"boot.lb3_{app}.median_ms"), num(f"boot.oxbow_{app}.median_ms")
    w(f"| {label} | {boot('lb3_' + app)} | {boot('oxbow_' + app)} | {fmt_ratio(lb, ox)} |")
w("")

w("## Targets (from the issue)")
w("")
w("| Target | Measured | Status |")
w("|---|---|---|")
for sc, label, target in SCENARIOS:
    lb, ox = num(f"lb3.{sc}.rps"), num(f"oxbow.{sc}.rps")
    r = None if lb in (None, 0) or ox is None else ox / lb
    w(f"| {sc}: ≥ {target:.0f}× LB3 req/s | {fmt_ratio(ox, lb)} | {status(None if r is None else r >= target)} |")
for sc, _, _ in SCENARIOS:
    p = num(f"oxbow.{sc}.p99_us")
    w(f"| {sc}: oxbow p99 < {P99_TARGET_MS:.0f} ms at {R.get('connections')} connections | {fmt_ms(p)} | "
      f"{status(None if p is None else p / 1000 < P99_TARGET_MS)} |")
rss = num("oxbow.rss_seeded")
rss0 = num("oxbow.rss_boot")
w(f"| oxbow idle RSS < {RSS_TARGET_MB:.0f} MB (shop app, 100 rows, `--workers 1`) | "
  f"{R.get('oxbow.rss_seeded', 'n/a')} MiB (empty: {R.get('oxbow.rss_boot', 'n/a')} MiB) | "
  f"{status(None if rss is None else rss < RSS_TARGET_MB)} |")
if "oxbow_unpinned.rss_seeded" in R:
    v = num("oxbow_unpinned.rss_seeded")
    w(f"| oxbow idle RSS < {RSS_TARGET_MB:.0f} MB (default workers, for information) | "
      f"{R.get('oxbow_unpinned.rss_seeded')} MiB | {status(None if v is None else v < RSS_TARGET_MB)} |")
b = num("boot.oxbow_seed.median_ms")
w(f"| boot of the seed app < {BOOT_TARGET_MS:.0f} ms | {boot('oxbow_seed')} | "
  f"{status(None if b is None else b < BOOT_TARGET_MS)} |")
w("")

w("## Conditions")
w("")
w(f"- Machine: {R.get('nproc')} cores, {R.get('cpu_model')}, {R.get('mem_total')}, {R.get('kernel')}")
w(f"- oxbow: {R.get('oxbow_version')}, git {R.get('git_rev')}, {R.get('rustc')}, release build")
w(f"- LoopBack 3: loopback {R.get('npm.loopback')}, loopback-boot {R.get('npm.loopback-boot')}, "
  f"loopback-datasource-juggler {R.get('npm.loopback-datasource-juggler')}, "
  f"strong-remoting {R.get('npm.strong-remoting')}, node {R.get('node')}")
w(f"- Load generator: {R.get('wrk')}")
w(f"- Server processes: LB3 `{R.get('lb3.pid_comm')}` on cpus {R.get('lb3.affinity')}; "
  f"oxbow `{R.get('oxbow.pid_comm')}` on cpus {R.get('oxbow.affinity')}"
  + (f"; unpinned oxbow on cpus {R.get('oxbow_unpinned.affinity')}" if "oxbow_unpinned.affinity" in R else ""))
w(f"- Load average (1/5/15 min) at start: {R.get('loadavg_start')}, at end: {R.get('loadavg_end')}; "
  f"rustc processes running at start: {R.get('rustc_procs_start')}, at end: {R.get('rustc_procs_end')}")
busy = any((num(k) or 0) > 0 for k in R if k.endswith("rustc_procs") or k.startswith("rustc_procs"))
if busy:
    w("- **Noise: a Rust build was running during part of this run; the figures it overlapped are "
      "pessimistic for whichever server it hit.**")
w("- Run-to-run variance on this 2-vCPU VM is ±15–30 % (research/deps.md §3): treat differences "
  "under ~25 % as noise, repeat 3× and take the median before drawing conclusions; p99 in the "
  "millisecond range is mostly CPU contention.")
print("\n".join(out))
