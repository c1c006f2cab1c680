"""Workflow configuration: schema validation with one-line errors, defaults, grid expansion.

The Snakefile calls `prepare(config, schema_path)` before any rule is defined, so a misspelled
key, a wrong type, an unknown dataset or size name or an empty grid stops the workflow with one
line naming the key, before any job runs.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .runs import Run, dataset_n_keys, expand_grid, ivf_nlist, nx_for
from .schema import SCHEMA_PATH, load_schema, resolve_ref
from .stage_settings import RegimeSettings

# --------------------------------------------------------------------------- schema










def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict, schema: dict) -> None:
    """Raise ConfigError (one line) for the first schema violation, else return."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(config))
    if error is None:
        return
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        raise ConfigError(f"config key '{_key_path(path + extra[:1])}': unknown key "
                          f"(allowed here: {allowed})")
    if error.validator == "enum":
        raise ConfigError(f"config key '{_key_path(path)}': {error.instance!r} is not one of "
                          f"{error.validator_value}")
    if error.validator == "type":
        raise ConfigError(f"config key '{_key_path(path)}': {error.instance!r} is not of type "
                          f"{error.validator_value}")
    if error.validator in ("minItems", "minProperties"):
        raise ConfigError(f"config key '{_key_path(path)}': must not be empty")
    if error.validator == "required":
        raise ConfigError(f"config key '{_key_path(path)}': {error.message}")
    if error.validator == "propertyNames":
        raise ConfigError(f"config key '{_key_path(path)}': dataset names must match "
                          f"[a-z][a-z0-9_]* ({error.message})")
    message = error.message.splitlines()[0]
    raise ConfigError(f"config key '{_key_path(path)}': {message}")


def fill_defaults(config: Any, schema: dict, root: dict | None = None) -> Any:
    """Copy of `config` with every missing key that has a schema default filled in.

    Keys the schema names come out in the schema's order, whatever their order in the file:
    Snakemake records a rule's params by their repr, so a dict param in the file's order
    would re-plan a finished workflow, from its data on, when keys are merely reordered.
    Names the user chooses (datasets, runs) keep the file's order.
    """
    root = root or schema
    schema = resolve_ref(schema, root)
    if isinstance(config, dict):
        known = schema.get("properties", {})
        out = {}
        for key, sub in known.items():
            sub_resolved = resolve_ref(sub, root)
            if key in config:
                out[key] = fill_defaults(config[key], sub_resolved, root)
            elif "default" in sub_resolved:
                out[key] = fill_defaults(copy.deepcopy(sub_resolved["default"]), sub_resolved, root)
        extra = schema.get("additionalProperties")
        for key, value in config.items():
            if key not in known:
                out[key] = fill_defaults(value, extra, root) if isinstance(extra, dict) else value
        return out
    if isinstance(config, list) and isinstance(schema.get("items"), dict):
        return [fill_defaults(item, schema["items"], root) for item in config]
    return config


def coerce_command_line_strings(config: Any, schema: dict, root: dict | None = None) -> Any:
    """Copy of `config` with numeric and boolean strings turned into what the schema wants.

    Snakemake parses `--config seeds=[0,1]` with YAML's BaseLoader, so list items arrive as
    strings ('0', '1'); converting them where the schema asks for a number or a boolean lets such
    overrides work. Strings that do not parse are left alone for `validate` to report.
    """
    root = root or schema
    schema = resolve_ref(schema, root)
    if isinstance(config, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else None
        return {key: value if props.get(key, extra) is None
                else coerce_command_line_strings(value, props.get(key, extra), root)
                for key, value in config.items()}
    if isinstance(config, list) and isinstance(schema.get("items"), dict):
        return [coerce_command_line_strings(item, schema["items"], root) for item in config]
    if isinstance(config, str):
        wanted = schema.get("type")
        wanted = wanted if isinstance(wanted, list) else [wanted]
        text = config.strip()
        if "boolean" in wanted and text.lower() in ("true", "false"):
            return text.lower() == "true"
        for kind, parse in (("integer", int), ("number", float)):
            if kind in wanted:
                with contextlib.suppress(ValueError):
                    return parse(text)
    return config


# --------------------------------------------------------------------------- the grid





















#: encoder settings that say how an encoding job runs, not which vectors it writes
ENCODER_EXECUTION_ONLY = ("batch_size", "chunk_size")


def data_settings(dataset: dict) -> dict:
    """The settings that decide a dataset's embeddings (its keys and queries)."""
    if dataset["source"] == "synthetic":
        return {"source": "synthetic", "synthetic": dataset["synthetic"]}
    encoder = {k: v for k, v in dataset["encoder"].items() if k not in ENCODER_EXECUTION_ONLY}
    return {"source": dataset["source"], "beir": dataset["beir"], "encoder": encoder}


#: per kind of index, the settings that decide it besides the keys (which IVF variants exist
#: is decided by the file names that the sweeps ask for)
INDEX_SETTINGS = {"ivf": ("nlist",), "hnsw": ("hnsw_m", "hnsw_ef_construction")}


def shared_data(datasets: dict) -> dict[str, dict[str, str]]:
    """What a dataset takes from an earlier one instead of making it: per kind ("embeddings",
    "ivf", "hnsw"), the dataset whose files it links to. The first dataset in config order with
    the same data settings (for an index: and the same settings of that index) makes them, and
    each later one links to its files. The leakage study's pairs differ only in their splits,
    so their keys are drawn or encoded once and indexed once (at 5.2M keys: 8 GB of keys and
    an 8 GB IVF, and their build time)."""
    shared: dict[str, dict[str, str]] = {"embeddings": {}, **{kind: {} for kind in INDEX_SETTINGS}}
    first: dict[str, dict[str, str]] = {kind: {} for kind in shared}
    for name, dataset in datasets.items():
        data = json.dumps(data_settings(dataset), sort_keys=True)
        settings = {"embeddings": data}
        for kind, keys in INDEX_SETTINGS.items():
            settings[kind] = json.dumps([data, [dataset["ivf"][k] for k in keys]])
        for kind, key in settings.items():
            if first[kind].setdefault(key, name) != name:
                shared[kind][name] = first[kind][key]
    return shared










# --------------------------------------------------------------------------- semantic checks


def check(config: dict) -> None:
    """Cross-key checks the schema cannot express."""
    datasets = config["datasets"]
    figures = config["figures"]
    compare = config["compare"]
    if compare["baseline"] not in compare["runs"]:
        raise ConfigError(f"config key 'compare.baseline': {compare['baseline']!r} is not among "
                          f"the runs ({', '.join(compare['runs'])})")

    def known(name: str, key: str) -> None:
        if name not in datasets:
            raise ConfigError(f"config key '{key}': unknown dataset {name!r} "
                              f"(datasets: {', '.join(datasets)})")

    for name, ds in datasets.items():
        runs = expand_grid(ds, config["seeds"])
        if not runs:
            raise ConfigError(f"config key 'datasets.{name}.grid': the grid is empty")
        if ds["source"] == "local" and not ds["beir"]["path"]:
            raise ConfigError(f"config key 'datasets.{name}.beir.path': source 'local' needs the "
                              f"path of a BEIR-format folder")
        if ds["source"] == "synthetic":
            routed = any(r.clusters > 1 for r in runs) and (
                ds["routing"]["classifier_sizes"] or ds["routing"]["linear_router"])
            _check_synthetic_split(name, ds, routed=bool(routed))
        for i, entry in enumerate(ds["grid"]):
            for depth, every in itertools.product(entry["depth"], entry["reinject_spacing"]):
                if nx_for(depth, every) > depth - 1:
                    raise ConfigError(f"config key 'datasets.{name}.grid.{i}.reinject_spacing': "
                                      f"{every} gives n_x > depth - 1 for depth {depth}")
        clustered = {r.clusters for r in runs if r.clusters > 1}
        for k in ds["routing"]["ks"]:
            if clustered and k > min(clustered):
                raise ConfigError(f"config key 'datasets.{name}.routing.ks': k = {k} is larger "
                                  f"than c = {min(clustered)} clusters")
        smallest = smallest_nlist(ds)
        for p in ds["ivf"]["nprobe"]:
            if p > smallest:
                raise ConfigError(f"config key 'datasets.{name}.ivf.nprobe': nprobe {p} is larger "
                                  f"than nlist {smallest}")

    for name in figures["routing"]:
        known(name, "figures.routing")
        if not any(r.clusters > 1 for r in expand_grid(datasets[name], config["seeds"])):
            raise ConfigError(f"config key 'figures.routing': dataset {name!r} has no clustered "
                              f"model (clusters > 1) in its grid")
    for name in figures["erel_mrr"]:
        known(name, "figures.erel_mrr")
    for name in figures["ivf"]:
        known(name, "figures.ivf")
        models = set(datasets[name]["ivf"]["models"])
        if not any(r.clusters == 1 and r.model in models
                   for r in expand_grid(datasets[name], config["seeds"])):
            raise ConfigError(f"config key 'figures.ivf': dataset {name!r} has no c = 1 model of "
                              f"{sorted(models)} in its grid")
    if figures["ood"]:
        known(figures["ood"], "figures.ood")
        ood_run(config, figures["ood"])
    for name, dataset in datasets.items():
        if 0 not in dataset["ood"]["stds"]:
            raise ConfigError(f"config key 'datasets.{name}.ood.stds': must include 0, the clean "
                              f"queries the noisy ones are compared with")
    if figures["training"]:
        known(figures["training"], "figures.training")
    for name in config["table1"]["datasets"]:
        known(name, "table1.datasets")
    for i, pair in enumerate(figures["leakage"]):
        check_leakage_pair(datasets, pair, f"figures.leakage.{i}", known)
    regime = RegimeSettings.from_config(figures["regime"])
    for name in regime.datasets:
        known(name, "figures.regime.datasets")
        k = regime.judged_k(dataset_n_keys(datasets[name]))
        if k not in datasets[name]["ivf"]["recall_at"]:
            raise ConfigError(f"config key 'datasets.{name}.ivf.recall_at': the regime study "
                              f"judges recall@{k} (figures.regime.recall_fraction of n); add {k}")
        if not any(r.clusters == 1 for r in expand_grid(datasets[name], config["seeds"])):
            raise ConfigError(f"config key 'figures.regime.datasets': dataset {name!r} has no "
                              f"c = 1 model in its grid")


def _check_synthetic_split(name: str, ds: dict, routed: bool) -> None:
    """Split sizes and batch sizes against the synthetic queries' count, known before any data
    exists (a batch larger than the training split would fail only when training starts, after
    the data stages)."""

    splits, n_queries = ds["splits"], ds["synthetic"]["n_queries"]
    for key in ("val_size", "test_size"):
        if splits[key] >= n_queries:
            raise ConfigError(f"config key 'datasets.{name}.splits.{key}': "
                              f"{splits[key]} is not smaller than the {n_queries} queries")
    n_train = train_rows(n_queries, val_size=splits["val_size"], test_size=splits["test_size"],
                         augment_factor=splits["augment_factor"], mode=splits["mode"])
    if n_train < 1:
        raise ConfigError(f"config key 'datasets.{name}.splits': val_size + test_size = "
                          f"{splits['val_size'] + splits['test_size']} leaves no training query "
                          f"of the {n_queries} queries")
    batches = [("train.batch_size", ds["train"]["batch_size"])]
    if routed:
        batches.append(("routing.router_batch_size", ds["routing"]["router_batch_size"]))
    for key, batch in batches:
        if batch > n_train:
            raise ConfigError(f"config key 'datasets.{name}.{key}': {batch} is larger than the "
                              f"{n_train} training queries of the {splits['mode']} split")


def check_leakage_pair(datasets: dict, pair: dict, key: str, known) -> None:
    """The two datasets of a leakage pair: split leak-free and as the official code does, and
    otherwise the same data and grid (so a difference can only come from the split)."""
    for mode in ("leak_free", "official"):
        known(pair[mode], f"{key}.{mode}")
        actual = datasets[pair[mode]]["splits"]["mode"]
        if actual != mode:
            raise ConfigError(f"config key '{key}.{mode}': dataset {pair[mode]!r} is split "
                              f"{actual!r}, not {mode!r}")
    a, b = (copy.deepcopy(datasets[pair[m]]) for m in ("leak_free", "official"))
    for block in (a, b):
        block["splits"].pop("mode")
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differ:
        raise ConfigError(f"config key '{key}': datasets {pair['leak_free']!r} and "
                          f"{pair['official']!r} differ in {', '.join(differ)}, not only in "
                          f"splits.mode")


def ood_run(config: dict, dataset: str) -> Run:
    """The grid model the OOD test uses (first seed); an error if the grid lacks it."""
    spec = config["datasets"][dataset]["ood"]
    wanted = (spec["model"], spec["size"], spec["depth"], nx_for(spec["depth"], spec["reinject_spacing"]),
              1, False, config["seeds"][0])
    for run in expand_grid(config["datasets"][dataset], config["seeds"]):  # first convexity, init
        if (run.model, run.size, run.depth, run.n_x, run.clusters, run.residual, run.seed) == wanted:
            return run
    raise ConfigError(f"config key 'datasets.{dataset}.ood': no {spec['model']} {spec['size']} "
                      f"of depth {spec['depth']} (n_x {wanted[3]}, c = 1, seed {wanted[-1]}) in "
                      f"the grid of {dataset!r}")


#: keys that were renamed: old path -> new key ("*": any dataset, "[]": any entry of a list); a
#: config with an old key is refused in one line that names the new one
RENAMED_KEYS = {"datasets.*.routing.classifier_steps": "router_steps",
                "datasets.*.routing.classifier_batch_size": "router_batch_size",
                "datasets.*.grid.[].reinject_every": "reinject_spacing",
                "datasets.*.ood.reinject_every": "reinject_spacing",
                "table1.reinject_every": "reinject_spacing",
                "figures.leakage.[].paper": "official"}
#: values that were renamed: key path -> {old value: new value}; refused in one line as well
RENAMED_VALUES = {"datasets.*.grid.[].init.[]": {"official": "official_hidden"},
                  "datasets.*.splits.mode": {"paper": "official"}}


def _found(node, parts: list[str], at: str):
    """The dotted paths under `node` that match `parts` (with * and [] as wildcards)."""
    if not parts:
        yield at
        return
    head, rest = parts[0], parts[1:]
    if head == "[]" and isinstance(node, list):
        for i, item in enumerate(node):
            yield from _found(item, rest, f"{at}.{i}")
    elif head == "*" and isinstance(node, dict):
        for key, value in node.items():
            yield from _found(value, rest, f"{at}.{key}".lstrip("."))
    elif isinstance(node, dict) and head in node:
        yield from _found(node[head], rest, f"{at}.{head}".lstrip("."))


def check_renamed_keys(config: dict) -> None:
    """Refuse a key or a value that was renamed, naming its new name, before the schema calls
    it unknown."""
    for old, new in RENAMED_KEYS.items():
        for path in _found(config, old.split("."), ""):
            raise ConfigError(f"config key '{path}' was renamed: use "
                              f"'{path.rsplit('.', 1)[0]}.{new}'")
    for key, renamed in RENAMED_VALUES.items():
        for path in _found(config, key.split("."), ""):
            value = _value_at(config, path)
            if isinstance(value, str) and value in renamed:
                raise ConfigError(f"config value {value!r} of '{path.rsplit('.', 1)[0]}' was "
                                  f"renamed: use {renamed[value]!r}")


def _value_at(node, path: str):
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def prepare(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate, fill defaults and run the cross-key checks; returns the completed config."""
    check_renamed_keys(config)
    schema = load_schema(schema_path)
    config = coerce_command_line_strings(config, schema)
    validate(config, schema)
    full = fill_defaults(config, schema)
    expand_every_nprobe(full)
    check(full)
    return full


def expand_every_nprobe(config: dict) -> None:
    """`ivf.nprobe: all` -> every nprobe from 1 to the dataset's smallest nlist (known from
    its n_keys before any data exists)."""
    for ds in config.get("datasets", {}).values():
        if ds["ivf"]["nprobe"] == "all":
            ds["ivf"]["nprobe"] = list(range(1, smallest_nlist(ds) + 1))


def smallest_nlist(dataset: dict) -> int:
    """The fewest lists of a dataset's IVFs (the paper's and its nlist multiples), which every
    nprobe must fit; known from n_keys before any data exists."""
    n_keys = dataset_n_keys(dataset)
    return min(ivf_nlist(n_keys, dataset["ivf"]["nlist"], m)
               for m in [1.0, *dataset["ivf"]["nlist_multiples"]])


def train_rows(n_queries: int, *, val_size: int, test_size: int, augment_factor: int,
               mode: str) -> int:
    """Rows of the training split `datasets.splits.make_splits` makes, known before any data
    exists (the config check sizes batches with it)."""
    leak_free = (n_queries - val_size - test_size) * augment_factor
    if mode == "leak_free":
        return leak_free
    return min(leak_free, (n_queries - test_size) * augment_factor - val_size - test_size)
