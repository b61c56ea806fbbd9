#!/usr/bin/env python3
"""Check the oxbow JSON Schemas (schemas/*.schema.json) against their test cases.

Usage: python3 schemas/tests/check.py [APP_DIR ...]

Needs the `jsonschema` package (pip install jsonschema).

What is checked:
  * every schemas/<name>.schema.json is a valid draft 2020-12 schema, has $schema, $id,
    title, allows a top-level "$schema" key, and has only local ("#...") $refs;
  * schemas/tests/valid/<name>/*.json must validate against <name>.schema.json;
  * schemas/tests/invalid/<name>/*.json must fail, and the set of instance locations
    (JSON pointers) of the errors must equal the lines of the sibling *.expect file
    (one pointer per line; an empty line stands for the root pointer "");
  * the config files of LoopBack apps: examples/*/ of the repository, plus every
    APP_DIR given on the command line (an app root, or a directory of app roots).
    server/{config,datasources,model-config,middleware}[.*].json are checked against the
    matching schema, and every *.json directly inside a directory named "models" against
    the model schema.

Prints one line per failure and ends with "N passed, M failed"; exit status 1 on failure.
"""

import json
import re
import sys
from pathlib import Path

try:
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover
    sys.exit("check.py needs the jsonschema package: pip install jsonschema")

TESTS = Path(__file__).resolve().parent
SCHEMAS = TESTS.parent
REPO = SCHEMAS.parent
NAMES = ["model", "config", "datasources", "model-config", "middleware"]
SERVER_FILE = re.compile(r"^(config|datasources|model-config|middleware)(\.[A-Za-z0-9_-]+)?\.json$")

passed = 0
failed = 0


def ok():
    global passed
    passed += 1


def fail(what, why):
    global failed
    failed += 1
    print(f"FAIL {what}: {why}")


def pointer(path):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rel(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def resolve_local(schema, ref):
    node = schema
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def error_pointers(validator, instance):
    return sorted({pointer(e.absolute_path) for e in validator.iter_errors(instance)})


def describe_errors(validator, instance):
    errs = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return "; ".join(f"{pointer(e.absolute_path) or '(root)'}: {e.message}" for e in errs[:5])


def check_schema(name):
    path = SCHEMAS / f"{name}.schema.json"
    what = rel(path)
    try:
        schema = load(path)
    except (OSError, ValueError) as e:
        fail(what, f"cannot load: {e}")
        return None
    problems = []
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as e:  # SchemaError
        problems.append(f"not a valid draft 2020-12 schema: {e.message if hasattr(e, 'message') else e}")
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        problems.append("$schema is not draft 2020-12")
    if schema.get("$id") != f"https://oxbow.dev/schemas/{name}.schema.json":
        problems.append("unexpected $id")
    if not schema.get("title"):
        problems.append("missing title")
    if "$schema" not in schema.get("properties", {}):
        problems.append('top-level "$schema" key not declared')
    remote = [r for r in refs(schema) if not r.startswith("#")]
    if remote:
        problems.append(f"non-local $ref: {remote}")
    for r in sorted(set(refs(schema)) - set(remote)):
        if resolve_local(schema, r) is None:
            problems.append(f"unresolvable $ref {r}")
    validator = Draft202012Validator(schema)
    if problems:
        fail(what, "; ".join(problems))
    else:
        ok()
    return validator


def check_cases(name, validator):
    for path in sorted((TESTS / "valid" / name).glob("*.json")):
        instance = load(path)
        if list(validator.iter_errors(instance)):
            fail(rel(path), "expected valid, got: " + describe_errors(validator, instance))
        else:
            ok()
    for path in sorted((TESTS / "invalid" / name).glob("*.json")):
        instance = load(path)
        expect_path = path.with_suffix(".expect")
        if not expect_path.exists():
            fail(rel(path), f"missing {expect_path.name}")
            continue
        text = expect_path.read_text(encoding="utf-8")
        if text.endswith("\n"):
            text = text[:-1]
        expected = sorted(set(text.split("\n")))
        got = error_pointers(validator, instance)
        if not got:
            fail(rel(path), "expected invalid, but it validates")
        elif got != expected:
            fail(rel(path), f"error locations {got} != expected {expected} ({describe_errors(validator, instance)})")
        else:
            ok()


def app_roots(dirs):
    for d in dirs:
        d = Path(d)
        if (d / "server").is_dir():
            yield d
        elif d.is_dir():
            for sub in sorted(d.iterdir()):
                if (sub / "server").is_dir():
                    yield sub


def check_app(root, validators):
    for path in sorted(root.rglob("*.json")):
        if "node_modules" in path.parts:
            continue
        name = None
        if path.parent.name == "server" and SERVER_FILE.match(path.name):
            name = SERVER_FILE.match(path.name).group(1)
        elif path.parent.name == "models":
            name = "model"
        if name is None or validators.get(name) is None:
            continue
        instance = load(path)
        validator = validators[name]
        if list(validator.iter_errors(instance)):
            fail(f"{rel(path)} [{name}]", describe_errors(validator, instance))
        else:
            ok()


def main(argv):
    validators = {}
    for name in NAMES:
        validators[name] = check_schema(name)
        if validators[name] is not None:
            check_cases(name, validators[name])
    for root in app_roots([*sorted((REPO / "examples").glob("*")), *argv]):
        check_app(root, validators)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
