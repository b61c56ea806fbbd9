#!/usr/bin/env python3
"""Prints the deliberate-deviation tables of docs/COMPATIBILITY.md from
tests/conformance/deviations.json and the recorded LoopBack 3 answers (paste the output into
the doc; a test checks that every deviation's step title appears there)."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
dev = json.loads((root / "tests/conformance/deviations.json").read_text())
groups = {}
for tr, steps in dev.items():
    for title, d in steps.items():
        groups.setdefault(d["reason"], []).append((tr, title, d))


def lb_answer(tr, title):
    t = json.loads((root / f"tests/conformance/transcripts/{tr}.json").read_text())
    for s in t["steps"]:
        if s.get("title") == title:
            return s["response"].get("status", "stream"), s["response"].get("body", "")
    return None, None


def cell(status, body):
    if status == 0:
        status = "stream"
    if body is None:
        return str(status)
    if len(body) > 150:
        body = body[:147] + "…"
    body = body.replace("|", "\\|").replace("\n", "\\n")
    return f"{status} `{body}`"


for n, (reason, items) in enumerate(groups.items(), 1):
    print(f"### D{n}\n\n{reason}\n")
    print("| transcript — step | LoopBack 3 | oxbow |\n|---|---|---|")
    for tr, title, d in items:
        st, body = lb_answer(tr, title)
        print(f"| `{tr}` — {title} | {cell(st, body)} | {cell(d['status'], d.get('body'))} |")
    print()
