#!/usr/bin/env python3
"""Finds configurations that a filter's Kong schema accepts but its Rust parser refuses.

On Kong the Admin API validates a filter's config against `config_schema` in `<name>.meta.json`; a config
that passes there and is then refused by the filter's `on_configure` stops that nginx worker for good. So for
every field the schema must refuse at least what the parser refuses.

How: every valid fixture (`filters/<f>/fixtures/valid/*.json`) is mutated field by field — each value replaced
by values of other types and edge values, each object given an unknown key and each key removed, each array
emptied, shortened and given a duplicate —, the mutants the schema accepts are sent to the real parsers
(`config-check`, a binary of the e2e crate), and every mutant the parser refuses is a gap, printed with the
field the parser named.

Rules a draft-4 schema cannot express (a model naming a target that does not exist, two targets with one name,
a loop in a fallback chain) are listed in CROSS_FIELD below; on Kong a config breaking one of them is served
as a clear 500 `filter_misconfigured` instead of stopping the worker (`shared/src/wasm/mod.rs`). Any other
gap fails this check.

Run: .venv/bin/python tests/schema_gaps.py [--verbose] (needs target/release/config-check:
`cargo build --release -p e2e --bin config-check`; `make meta` builds it and runs this).
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path

from jsonschema import Draft4Validator

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "target" / "release" / "config-check"

# Parser messages for rules that relate several fields, which JSON Schema draft 4 cannot state.
CROSS_FIELD = [
    r"no target named",
    r"duplicate target name",
    r"is already in this chain",
    r"weights must not all be 0",
    # ai-proxy: `lowest_cost` needs a price for every target of its model
    r"lowest_cost needs a price",
    # ai-router: actions naming upstreams, rules naming intent labels, an intent no rule reads, ranges
    r"no upstream named",
    r"is not one of intent.labels",
    r"no rule reads the intent",
    r"min must not be above max",
    r"duplicate (rule|label) name",
    r"duplicate (limit|detector|rule|entity|name|task name)",
    # ai-enrich (shared::llm): sources naming tasks, task outputs read without a source configured, defaults
    # against the output schema, strict structured output (depends on the target's provider)
    r"there is no task named",
    r"is required: `",
    r"needs `claims`",
    r"does not match the output schema",
    r"must list every property",
    r"unknown (limit|detector|entity|type)",
    r"pattern does not compile|invalid regex|regex",
    r"is already defined",
    r"must be \[low, high\] with low < high",
    # ai-audit-log: names unique, the summary's routes and targets, the backoff's bounds in order
    r"duplicate (route|sink) name",
    r"no route is named",
    r"only the summary uses targets",
    r"must not be below retry.initial",
]

# Values of every JSON type and the edges parsers check (empty, blank, negative, fractional, past u32).
REPLACEMENTS = [None, "", " ", "x", "/", 0, -1, 1, 1.5, 101, 2**32, True, [], {}, ["x"], {"zz": 1}]


def mutants(doc):
    """Yields (path, mutant) for every single-site mutation of `doc`."""

    def walk(node, path):
        yield path, node
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, path + [i])

    def set_at(root, path, value):
        out = copy.deepcopy(root)
        if not path:
            return value
        cur = out
        for p in path[:-1]:
            cur = cur[p]
        cur[path[-1]] = value
        return out

    for path, node in list(walk(doc, [])):
        # Each mutant is a deep copy: big fixtures make this the slow part, hence the dedup below.
        for r in REPLACEMENTS:
            if r != node:
                yield path, set_at(doc, path, r)
        if isinstance(node, str) and node:
            yield path, set_at(doc, path, node + " ")
            yield path, set_at(doc, path, node.upper())
            yield path, set_at(doc, path, "x" * 300)
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            for v in (node - 1, node + 1, node * 1000, -node):
                yield path, set_at(doc, path, v)
        if isinstance(node, dict):
            extra = dict(node)
            extra["zz_unknown"] = 1
            yield path, set_at(doc, path, extra)
            for k in node:
                less = {kk: vv for kk, vv in node.items() if kk != k}
                yield path + [k], set_at(doc, path, less)
        if isinstance(node, list) and node:
            yield path, set_at(doc, path, node[:-1])
            yield path, set_at(doc, path, node + [copy.deepcopy(node[0])])
            yield path, set_at(doc, path, [])


_VALIDATOR = None


def _init(schema) -> None:
    global _VALIDATOR
    _VALIDATOR = Draft4Validator(schema)


def _valid(doc) -> bool:
    return _VALIDATOR.is_valid(doc)


def fmt(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "$"


def main() -> int:
    verbose = "--verbose" in sys.argv
    if not CHECKER.exists():
        print(f"missing {CHECKER}: cargo build --release -p e2e --bin config-check")
        return 1
    failed = 0
    for meta in sorted(ROOT.glob("filters/*/*.meta.json")):
        fdir = meta.parent
        filter_name = fdir.name
        schema = json.loads(meta.read_text())["config_schema"]
        seen = set()
        candidates = []
        for fixture in sorted((fdir / "fixtures" / "valid").glob("*.json")):
            doc = json.loads(fixture.read_text())
            for path, m in mutants(doc):
                key = json.dumps(m, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    candidates.append((fixture.name, path, m))
        with multiprocessing.Pool(initializer=_init, initargs=(schema,)) as pool:
            accepted = pool.map(_valid, [m for _, _, m in candidates], chunksize=64)
        batch = [c for c, ok in zip(candidates, accepted) if ok]
        lines = "".join(json.dumps({"filter": filter_name, "config": m}) + "\n" for _, _, m in batch)
        result = subprocess.run([str(CHECKER)], input=lines, capture_output=True, text=True, check=True)
        answers = [json.loads(l) for l in result.stdout.splitlines()]
        gaps, allowed = {}, 0
        for (fixture, path, m), a in zip(batch, answers):
            if a["ok"]:
                continue
            if any(re.search(p, a["error"]) for p in CROSS_FIELD):
                allowed += 1
                continue
            where = a["field"] or fmt(path)
            gaps.setdefault(where, []).append((fixture, fmt(path), a["error"], m))
        status = "ok  " if not gaps else "FAIL"
        print(
            f"{status}  {filter_name}: {len(seen)} mutants, {len(batch)} accepted by the schema, "
            f"{sum(len(v) for v in gaps.values())} refused by the parser ({len(gaps)} fields), "
            f"{allowed} cross-field"
        )
        for where, cases in sorted(gaps.items()):
            fixture, path, error, m = cases[0]
            print(f"      {where}: {error}  (e.g. {fixture} mutated at {path}; {len(cases)} cases)")
            if verbose:
                print("        " + json.dumps(m)[:400])
        failed += bool(gaps)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
