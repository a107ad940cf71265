#!/usr/bin/env python3
"""Writes ai_gateway.meta.json (the bundle's Kong schema) from the separate modules' meta files.

Each chain entry is `{"policy": <module name>, "config": <that module's config_schema>}`; each module's
`definitions` move under the bundle's root with the module's name as a prefix (a `$ref` resolves against
the root document), and the label patterns are the modules' own, in order, without repeats.

Run: python3 filters/ai-gateway/build_meta.py [--check]   (--check: fail if the committed file is stale;
tests/check_meta.py runs it)
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILTERS = HERE.parent
POLICIES = ["ai-prompt-guard", "ai-token-ratelimit", "ai-pii-redact", "ai-proxy", "ai-enrich", "ai-router"]
OUT = HERE / "ai_gateway.meta.json"


def rewrite_refs(node, prefix):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/definitions/"):
                out[k] = "#/definitions/" + prefix + v[len("#/definitions/"):]
            else:
                out[k] = rewrite_refs(v, prefix)
        return out
    if isinstance(node, list):
        return [rewrite_refs(v, prefix) for v in node]
    return node


def build():
    definitions, entries, labels = {}, [], []
    for name in POLICIES:
        meta = json.loads((FILTERS / name / (name.replace("-", "_") + ".meta.json")).read_text())
        schema = dict(meta["config_schema"])
        prefix = name.replace("-", "_") + "__"
        for k, v in schema.pop("definitions", {}).items():
            definitions[prefix + k] = rewrite_refs(v, prefix)
        schema.pop("$schema", None)
        entries.append({
            "type": "object",
            "additionalProperties": False,
            "required": ["policy", "config"],
            "properties": {"policy": {"enum": [name]}, "config": rewrite_refs(schema, prefix)},
        })
        for p in meta.get("metrics", {}).get("label_patterns", []):
            if p["label"] not in [l["label"] for l in labels]:
                labels.append(p)
    return {
        "config_schema": {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": "ai-gateway",
            "description": "The bundle: a chain of the policies, each entry's config exactly the separate module's.",
            "type": "object",
            "additionalProperties": False,
            "required": ["chain"],
            "properties": {
                "chain": {"type": "array", "minItems": 1, "items": {"oneOf": entries}},
            },
            "definitions": definitions,
        },
        "metrics": {"label_patterns": labels},
    }


def main():
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python3 filters/ai-gateway/build_meta.py")
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
