"""The config schema shipped with the package (data/schema.yaml): where it is, and the defaults
it gives every key (the CLI takes its defaults from it too)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

#: the one schema of the workflow configuration: every key, its type and its default. It ships
#: with the package so that the CLI's defaults (`stage_settings.py`) come from the same file.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def resolve_ref(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        node = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**node, **merged}
    return schema


@functools.cache
def schema_defaults(*path: str) -> dict[str, Any]:
    """Defaults of one block of the schema, e.g. ("train",) or ("dataset", "synthetic").

    The settings dataclasses and the CLI take their defaults from here, so a hand-run stage
    and the workflow start from the same values.
    """
    schema = load_schema()
    node = resolve_ref(schema["$defs"][path[0]], schema)
    for part in path[1:]:
        node = resolve_ref(node["properties"][part], schema)
    return {key: copy.deepcopy(resolve_ref(sub, schema)["default"])
            for key, sub in node["properties"].items() if "default" in resolve_ref(sub, schema)}
