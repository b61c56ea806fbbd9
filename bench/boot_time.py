#!/usr/bin/env python3
"""Boot time of a server: wall time from spawn to its "Web server listening at:" line on stdout.

    boot_time.py [--runs 10] [--warmup 1] [--cwd DIR] [--env K=V ...] [--timeout 60] -- CMD ARGS...

Runs CMD `warmup` times (discarded, fills the page cache) and then `runs` times, one at a time.
Each child is stopped (SIGTERM, then SIGKILL after 5 s) as soon as its line arrives.
Prints one line: `BOOT median_ms=… min_ms=… max_ms=… runs=… samples=a,b,…`.
"""
import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import time

MARK = b"Web server listening at:"


def one(cmd, cwd, env, timeout):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    try:
        fd = p.stdout.fileno()
        while True:
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                raise RuntimeError(f"no listening line within {timeout}s: {cmd}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"server exited (rc={p.wait()}) before listening: {cmd}\n{buf[-2000:]!r}")
            buf += chunk
            if MARK in buf:
                return (time.perf_counter() - t0) * 1000.0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stdout.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--cwd", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("missing command")
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    for _ in range(a.warmup):
        one(cmd, a.cwd, env, a.timeout)
    samples = [one(cmd, a.cwd, env, a.timeout) for _ in range(a.runs)]
    print("BOOT median_ms=%.1f min_ms=%.1f max_ms=%.1f runs=%d samples=%s" % (
        statistics.median(samples), min(samples), max(samples), len(samples),
        ",".join("%.1f" % s for s in samples)))


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        print(f"boot_time.py: {e}", file=sys.stderr)
        sys.exit(1)
