#!/usr/bin/env python3
"""Checks each filter's Kong metadata file and its configuration fixtures.

For every directory filters/<name>/ holding a `*.meta.json` (the file Kong reads beside the .wasm):

- the file has only the keys Kong knows: `config_schema` and `metrics` (`metrics.label_patterns`,
  a list of `{label, pattern}`);
- `config_schema` is a valid JSON Schema draft 4 (Kong validates filter config with draft 4 only);
- every label pattern compiles, has two groups (group 1 the whole `_key=value` segment, group 2 the
  value) and, applied the way Kong's Prometheus exporter applies them (in list order, each search
  starting where the previous match ended), extracts every label from a sample metric name;
- every fixtures/valid/*.json is accepted and every fixtures/invalid/*.json is refused by
  `config_schema` (Draft4Validator).

Prints one line per check and ends with `N passed, N failed`; exits 1 on any failure.
Run: .venv/bin/python tests/check_meta.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from jsonschema import Draft4Validator
from jsonschema.exceptions import SchemaError, best_match

ROOT = Path(__file__).resolve().parent.parent
META_KEYS = {"config_schema", "metrics"}
METRICS_KEYS = {"label_patterns"}
LABEL_PATTERN_KEYS = {"label", "pattern"}
DRAFT4_IDS = {"http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-04/schema"}
PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f": {detail}" if detail else ""))
        return ok


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def load_json(path: Path) -> tuple[object, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except (OSError, ValueError) as e:
        return None, f"not readable JSON: {e}"


def kong_extract(name: str, patterns: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    """Mirrors kong/plugins/prometheus/wasmx.lua parse_pw_key: the patterns are tried in order with one
    shared ngx.re.match ctx, so each search starts where the previous successful match ended; the
    label's position is `ctx.pos - #match[1]`, and the name is cut at the first label found."""
    labels = []
    pos = 0
    first = len(name)
    for p in patterns:
        m = re.compile(p["pattern"]).search(name, pos)
        if m:
            pos = m.end()
            start = m.end() - len(m.group(1))
            labels.append((p["label"], m.group(2)))
            first = min(first, start)
    return name[:first], labels


def envoy_extract(name: str, patterns: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    """Mirrors Envoy stats_tags with a regex: group 1 is removed from the name, group 2 is the value."""
    labels = []
    for p in patterns:
        m = re.compile(p["pattern"]).search(name)
        if m:
            labels.append((p["label"], m.group(2)))
            name = name[: m.start(1)] + name[m.end(1) :]
    return name, labels


def check_label_patterns(r: Report, where: str, metrics: object) -> None:
    if not r.check(isinstance(metrics, dict), f"{where}: metrics is an object"):
        return
    assert isinstance(metrics, dict)
    r.check(
        set(metrics) <= METRICS_KEYS,
        f"{where}: metrics has only keys Kong knows {sorted(METRICS_KEYS)}",
        f"unknown {sorted(set(metrics) - METRICS_KEYS)}",
    )
    patterns = metrics.get("label_patterns", [])
    if not r.check(isinstance(patterns, list), f"{where}: metrics.label_patterns is a list"):
        return
    good = []
    for i, p in enumerate(patterns):
        what = f"{where}: label_patterns[{i}]"
        if not isinstance(p, dict) or set(p) != LABEL_PATTERN_KEYS:
            r.check(False, what, "must be an object with exactly `label` and `pattern`")
            continue
        label, pattern = p["label"], p["pattern"]
        if not (isinstance(label, str) and PROM_LABEL.match(label)):
            r.check(False, what, f"label {label!r} is not a Prometheus label name")
            continue
        try:
            groups = re.compile(pattern).groups if isinstance(pattern, str) else -1
        except re.error as e:
            r.check(False, what, f"pattern {pattern!r} does not compile: {e}")
            continue
        if r.check(groups >= 2, f"{what} ({label}) compiles with 2 groups", f"{groups} groups in {pattern!r}"):
            good.append(p)
    if not good:
        return
    base = "sample_total"
    sample = base + "".join(f"_{p['label']}=v{i}.x-{i}" for i, p in enumerate(good))
    want = [(p["label"], f"v{i}.x-{i}") for i, p in enumerate(good)]
    for host, extract in (("Kong label_patterns", kong_extract), ("Envoy stats_tags", envoy_extract)):
        name, labels = extract(sample, good)
        r.check(
            name == base and labels == want,
            f"{where}: {host} lift every label out of {sample}",
            f"got name {name!r}, labels {labels}",
        )


def check_filter(r: Report, fdir: Path) -> None:
    metas = sorted(fdir.glob("*.meta.json"))
    fixtures = fdir / "fixtures"
    if not metas:
        if fixtures.is_dir():
            r.check(False, f"{rel(fdir)}: has fixtures but no *.meta.json")
        return
    for meta_path in metas:
        where = rel(meta_path)
        meta, err = load_json(meta_path)
        if not r.check(isinstance(meta, dict), f"{where}: is a JSON object", err):
            continue
        assert isinstance(meta, dict)
        r.check(
            set(meta) <= META_KEYS,
            f"{where}: has only keys Kong knows {sorted(META_KEYS)}",
            f"unknown {sorted(set(meta) - META_KEYS)}",
        )
        if "metrics" in meta:
            check_label_patterns(r, where, meta["metrics"])
        schema = meta.get("config_schema")
        if not r.check(isinstance(schema, dict), f"{where}: has a config_schema object"):
            continue
        assert isinstance(schema, dict)
        declared = schema.get("$schema")
        r.check(
            declared is None or declared in DRAFT4_IDS,
            f"{where}: config_schema declares draft 4 (or nothing)",
            f"$schema is {declared!r}; Kong supports draft 4 only",
        )
        try:
            Draft4Validator.check_schema(schema)
        except SchemaError as e:
            r.check(False, f"{where}: config_schema is a valid draft-4 schema", e.message)
            continue
        r.check(True, f"{where}: config_schema is a valid draft-4 schema")
        validator = Draft4Validator(schema)

        for kind, expect_valid in (("valid", True), ("invalid", False)):
            files = sorted((fixtures / kind).glob("*.json"))
            r.check(bool(files), f"{rel(fixtures / kind)}: has fixtures", "none found")
            for path in files:
                doc, err = load_json(path)
                if err:
                    r.check(False, rel(path), err)
                    continue
                error = best_match(validator.iter_errors(doc))
                if expect_valid:
                    where_err = "/".join(str(x) for x in error.absolute_path) if error else ""
                    r.check(error is None, rel(path), f"refused at `{where_err}`: {error.message}" if error else "")
                else:
                    r.check(error is not None, f"{rel(path)} refused", "accepted by config_schema")


def check_bundle(r: Report) -> None:
    """The bundle's schema is generated from the separate modules' schemas; the committed file must be current."""
    script = ROOT / "filters" / "ai-gateway" / "build_meta.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    r.check(done.returncode == 0, "filters/ai-gateway/ai_gateway.meta.json is generated and current", done.stdout.strip())


def main() -> int:
    r = Report()
    filter_dirs = sorted(p for p in (ROOT / "filters").iterdir() if p.is_dir())
    if not filter_dirs:
        r.check(False, "filters/: no filter directories")
    for fdir in filter_dirs:
        check_filter(r, fdir)
    check_bundle(r)
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
