"""Configuration schema and cross-key checks: every bad input fails with one line naming the key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amips_bench.core.config import prepare
from amips_bench.core.errors import ConfigError
from amips_bench.core.runs import expand_grid, parse_run
from amips_bench.core.schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH


def _quick():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_configs_are_valid(name):
    config = prepare(yaml.safe_load((ROOT / "config" / name).read_text()), SCHEMA)
    for dataset in config["datasets"].values():
        assert expand_grid(dataset, config["seeds"])


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if "$ref" in sub and "description" not in sub:
                target = schema
                for part in sub["$ref"].lstrip("#/").split("/"):
                    target = target[part]
                sub = {**target, **sub}
            if "description" not in sub or ("default" not in sub and f"{path}{key}" != "datasets"):
                missing.append(f"{path}{key}")
            walk(sub, f"{path}{key}.")

    walk(schema, "")
    for name, definition in schema["$defs"].items():
        walk(definition, f"$defs.{name}.")
    assert not missing, missing


def _mutate(fn):
    config = _quick()
    fn(config)
    return config


BAD = [
    (lambda c: c["datasets"]["quick"]["splits"].update(val_sise=10),
     r"config key 'datasets\.quick\.splits\.val_sise': unknown key"),
    (lambda c: c.update(seedz=[1]), r"config key 'seedz': unknown key"),
    (lambda c: c["datasets"]["quick"]["train"].update(steps="many"),
     r"config key 'datasets\.quick\.train\.steps': 'many' is not of type integer"),
    (lambda c: c["datasets"]["quick"]["grid"][0].update(size=["S", "XM"]),
     r"config key 'datasets\.quick\.grid\.0\.size\.1': 'XM' is not one of"),
    (lambda c: c["datasets"]["quick"].update(grid=[]), r"config key 'datasets\.quick\.grid': must not be empty"),
    (lambda c: c["datasets"]["quick"]["grid"][0].update(model=[]),
     r"config key 'datasets\.quick\.grid\.0\.model': must not be empty"),
    (lambda c: c["figures"].update(erel_mrr=["quikc"]),
     r"config key 'figures\.erel_mrr': unknown dataset 'quikc'"),
    (lambda c: c["table1"].update(datasets=["nope"]), r"config key 'table1\.datasets': unknown dataset 'nope'"),
    (lambda c: c["datasets"]["quick"]["ivf"].update(nprobe=[1, 500]),
     r"config key 'datasets\.quick\.ivf\.nprobe': nprobe 500 is larger than nlist 141"),
    (lambda c: c["datasets"]["quick"]["routing"].update(ks=[1, 11]),
     r"config key 'datasets\.quick\.routing\.ks': k = 11 is larger than c = 10"),
    (lambda c: c["datasets"].update({"Bad-Name": {}}), r"config key 'datasets': 'Bad-Name' does not match '\^\[a-z\]"),
    (lambda c: c["datasets"]["quick"]["ood"].update(stds=[0.05, 0.1]),
     r"config key 'datasets\.quick\.ood\.stds': must include 0"),
    (lambda c: c.update(width_rule="paperish"), r"config key 'width_rule': 'paperish' is not one of"),
    # (8,200 − 500 − 1,000) × 5 = 33,500 training rows in the quick split
    (lambda c: c["datasets"]["quick"]["train"].update(batch_size=33_501),
     r"config key 'datasets\.quick\.train\.batch_size': 33501 is larger than the 33500 training "
     r"queries of the leak_free split"),
    (lambda c: c["datasets"]["quick"]["routing"].update(router_batch_size=40_000),
     r"config key 'datasets\.quick\.routing\.router_batch_size': 40000 is larger than the "
     r"33500 training queries"),
    (lambda c: c["datasets"]["quick"]["splits"].update(val_size=4000, test_size=4200),
     r"config key 'datasets\.quick\.splits': val_size \+ test_size = 8200 leaves no training query"),
    # a renamed key names its new name
    (lambda c: c["datasets"]["quick"]["routing"].update(classifier_steps=500),
     r"^config key 'datasets\.quick\.routing\.classifier_steps' was renamed: use "
     r"'datasets\.quick\.routing\.router_steps'$"),
    (lambda c: c["datasets"]["quick"]["grid"][0].update(reinject_every=[1]),
     r"^config key 'datasets\.quick\.grid\.0\.reinject_every' was renamed: use "
     r"'datasets\.quick\.grid\.0\.reinject_spacing'$"),
    (lambda c: c.setdefault("table1", {}).update(reinject_every=1),
     r"^config key 'table1\.reinject_every' was renamed: use 'table1\.reinject_spacing'$"),
    # so does a renamed value
    (lambda c: c["datasets"]["quick"]["grid"][0].update(init=["principled", "official"]),
     r"^config value 'official' of 'datasets\.quick\.grid\.0\.init' was renamed: use "
     r"'official_hidden'$"),
]


def _leakage(fn):
    config = yaml.safe_load((ROOT / "config" / "leakage.yaml").read_text())
    fn(config)
    return config


LEAKAGE_BAD = [
    (lambda c: c["datasets"]["quick_official"].update(synthetic={**c["datasets"]["quick_official"]["synthetic"],
                                                              "seed": 1}),
     r"^config key 'figures\.leakage\.0': datasets 'quick_leak_free' and 'quick_official' differ in "
     r"synthetic, not only in splits\.mode$"),
    (lambda c: c["figures"]["leakage"][0].update(official="quick_leak_free"),
     r"^config key 'figures\.leakage\.0\.official': dataset 'quick_leak_free' is split 'leak_free', "
     r"not 'official'$"),
    (lambda c: c["figures"]["leakage"][0].update(leak_free="quick"),
     r"^config key 'figures\.leakage\.0\.leak_free': unknown dataset 'quick'"),
    # the leaky split's former name, as a value and as the pair's key
    (lambda c: c["datasets"]["quick_official"]["splits"].update(mode="paper"),
     r"^config value 'paper' of 'datasets\.quick_official\.splits' was renamed: use 'official'$"),
    (lambda c: c["figures"]["leakage"][0].update(paper=c["figures"]["leakage"][0].pop("official")),
     r"^config key 'figures\.leakage\.0\.paper' was renamed: use 'figures\.leakage\.0\.official'$"),
]


@pytest.mark.parametrize("mutate, message", LEAKAGE_BAD)
def test_a_leakage_pair_must_differ_only_in_the_split_mode(mutate, message):
    with pytest.raises(ConfigError, match=message):
        prepare(_leakage(mutate), SCHEMA)


@pytest.mark.parametrize("mutate, message", BAD)
def test_bad_configs_name_the_key(mutate, message):
    with pytest.raises(ConfigError, match=message) as info:
        prepare(_mutate(mutate), SCHEMA)
    assert "\n" not in str(info.value)


def test_snakemake_stops_before_any_job_with_one_line(tmp_path):
    config = _mutate(BAD[0][0])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(path)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "config error" in line]
    assert lines == ["amips-bench config error: config key 'datasets.quick.splits.val_sise': "
                     "unknown key (allowed here: augment_factor, mode, seed, sigma, test_size, val_size)"]
    assert "rule " not in out.stdout  # nothing was scheduled


def test_defaults_are_filled_and_runs_round_trip():
    config = prepare({"datasets": {"d": {"grid": [{"model": ["keynet"], "size": ["S"]}]}}}, SCHEMA)
    ds = config["datasets"]["d"]
    assert ds["splits"]["sigma"] == 0.02 and ds["train"]["batch_size"] == 4096
    assert config["seeds"] == [0] and config["figures_dir"] == "figures"
    (run,) = expand_grid(ds, config["seeds"])
    assert run.name == "keynet_S_L4_nx3_c1_s0" and parse_run(run.name) == run
    assert parse_run("supportnet_XS_L8_nx2_c10_res_clip_s3").convexity == "clip"


def test_supportnet_run_names_carry_convexity_and_init_and_keynets_neither():
    """Every SupportNet convexity × init gets its own folder name and parses back to itself;
    a KeyNet's name ignores the SupportNet-only settings (one KeyNet per grid point)."""
    grid = [{"model": ["supportnet", "keynet"], "size": ["S"], "convexity": ["none", "penalty", "clip"],
             "init": ["principled", "official_hidden", "plain", "unit_variance"]}]
    config = prepare({"datasets": {"d": {"grid": grid}}}, SCHEMA)
    runs = expand_grid(config["datasets"]["d"], config["seeds"])
    support = [r for r in runs if r.model == "supportnet"]
    assert len(support) == 12 and len({r.name for r in support}) == 12
    assert all(parse_run(r.name) == r for r in runs)
    assert [r.name for r in runs if r.model == "keynet"] == ["keynet_S_L4_nx3_c1_s0"]
    names = {r.name for r in support}
    assert {"supportnet_S_L4_nx3_c1_s0", "supportnet_S_L4_nx3_c1_pen_s0",
            "supportnet_S_L4_nx3_c1_clip_iofficial_hidden_s0", "supportnet_S_L4_nx3_c1_iunit_variance_s0"} <= names


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_the_order_of_keys_in_a_file_does_not_change_the_completed_config(name):
    """Snakemake records a rule's params by their repr, dict order included: keys reordered in
    a file (by hand, or by a tool that sorts them) must give the very same completed config, or
    a finished workflow is planned again from its data on. Names a user chooses (datasets,
    runs) keep the file's order."""
    chosen_names = {("datasets",), ("figures", "ivf"), ("compare", "runs")}  # maps the user keys

    def reversed_keys(node, path=()):
        if isinstance(node, dict):
            items = list(node.items()) if path in chosen_names else list(reversed(node.items()))
            return {k: reversed_keys(v, (*path, k)) for k, v in items}
        if isinstance(node, list):
            return [reversed_keys(v, path) for v in node]
        return node

    config = yaml.safe_load((ROOT / "config" / name).read_text())
    assert json.dumps(reversed_keys(config)) != json.dumps(config)
    assert json.dumps(prepare(reversed_keys(config), SCHEMA)) == json.dumps(prepare(config, SCHEMA))
    assert list(prepare(config, SCHEMA)["datasets"]) == list(config["datasets"])


def test_command_line_strings_become_the_numbers_the_schema_wants():
    # Snakemake's --config parses `seeds=[0,1]` item by item with YAML's BaseLoader: strings.
    config = _mutate(lambda c: c.update(seeds=["0", "1"]))
    config["datasets"]["quick"]["splits"]["sigma"] = "0.05"
    full = prepare(config, SCHEMA)
    assert full["seeds"] == [0, 1]
    assert full["datasets"]["quick"]["splits"]["sigma"] == 0.05
    with pytest.raises(ConfigError, match=r"config key 'seeds.1': 'one' is not of type"):
        prepare(_mutate(lambda c: c.update(seeds=["0", "one"])), SCHEMA)


def test_snakemake_config_override_of_seeds_plans_every_seed(tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(ROOT / "config/config.yaml"),
                          "--config", "seeds=[0,1]", "--", "figures"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    planned = out.stdout + out.stderr
    assert "_s0/" in planned and "_s1/" in planned


def test_settings_dataclasses_take_the_schema_defaults():
    """One source for defaults: TrainSettings, LossWeights and SyntheticParams equal the defaults
    the schema fills into an empty dataset block."""
    from amips_bench.core.stage_settings import LossWeights, TrainSettings
    from amips_bench.datasets.synthetic import SyntheticParams

    ds = prepare({"datasets": {"d": {}}}, SCHEMA)["datasets"]["d"]
    cfg, weights = TrainSettings(), LossWeights()
    for key, value in ds["train"].items():
        if key.startswith("lambda_"):
            assert getattr(weights, key.removeprefix("lambda_")) == value, key
        elif key == "key_reduction":  # a setting of the loss, carried by LossWeights
            assert weights.key_reduction == value
        else:
            assert getattr(cfg, key) == value, key
    synthetic = SyntheticParams()
    for key, value in ds["synthetic"].items():
        assert getattr(synthetic, key) == value, key


def test_a_model_spec_takes_the_schemas_grid_defaults():
    """A SupportNet built by hand (ModelSpec, `amips-bench train` without --convexity/--init)
    is the one the workflow's default grid trains."""
    from amips_bench.models.networks import ModelSpec

    (entry,) = prepare({"datasets": {"d": {"grid": [{"model": ["supportnet"]}]}}}, SCHEMA)["datasets"]["d"]["grid"]
    assert entry["convexity"] == [ModelSpec.convexity] and entry["init"] == [ModelSpec.init]


def test_a_hand_run_train_parses_to_the_schema_defaults():
    from amips_bench.cli import build_parser
    from amips_bench.core.stage_settings import TrainSettings

    args = build_parser().parse_args(["train", "--dataset-dir", "d", "--out", "o", "--model",
                                      "keynet", "--size", "S", "--depth", "4", "--nx", "3"])
    train = prepare({"datasets": {"d": {}}}, SCHEMA)["datasets"]["d"]["train"]
    for key, value in train.items():
        assert getattr(args, key) == value, key
    assert TrainSettings(**{k: v for k, v in train.items()
                          if not k.startswith("lambda_") and k != "key_reduction"})
    flipped = build_parser().parse_args(["train", "--dataset-dir", "d", "--out", "o", "--model",
                                         "keynet", "--size", "S", "--depth", "4", "--nx", "3",
                                         "--no-cuda-graph"])
    assert flipped.cuda_graph is False
    with pytest.raises(SystemExit):  # "flase" is an error, not False
        build_parser().parse_args(["train", "--dataset-dir", "d", "--out", "o", "--model", "keynet",
                                   "--size", "S", "--depth", "4", "--nx", "3", "--cuda-graph", "flase"])


def test_one_grammar_of_run_names():
    """The Snakefile's wildcard is RUN_PATTERN without group names; the schema's size names are
    the size table's; every grid run's name parses back to itself."""
    import re

    from amips_bench.core.runs import RUN_PATTERN, RUN_WILDCARD, SIZES, nx_for

    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["size_name"]["enum"] == list(SIZES)
    assert "(?P<" not in RUN_WILDCARD
    assert "run=RUN_WILDCARD" in (ROOT / "Snakefile").read_text()
    for name in ("keynet_S_L4_nx3_c1_s0", "supportnet_XXL_L16_nx4_c10_res_clip_s12"):
        assert re.fullmatch(RUN_WILDCARD, name) and re.fullmatch(RUN_PATTERN, name)
        assert parse_run(name).name == name
    assert not re.fullmatch(RUN_WILDCARD, "keynet_Q_L4_nx3_c1_s0")
    assert nx_for(16, 4) == 4 and nx_for(8, 1) == 7 and nx_for(4, 0) == 0


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_config_dry_runs_the_all_target(name, tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "all",
                          "--configfile", str(ROOT / "config" / name)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert "reproduction_report" in out.stdout + out.stderr


def test_the_hnsw_graph_is_built_only_for_datasets_with_an_ef_search_sweep(tmp_path):
    """Building HNSW takes hours at millions of keys: a config whose datasets have no efSearch
    sweep (the leakage studies) plans no hnsw_index job; the default config plans one per
    dataset, and its IVF jobs wait for it. Every IVF variant besides the paper's is a job of its
    own: 2 quantizers × 2 multiples less the paper's setup by default, none in the leakage
    studies (the paper's IVF only)."""
    def planned(name):
        out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--snakefile",
                              str(ROOT / "Snakefile"), "--directory", str(tmp_path / name), "figures",
                              "--configfile", str(ROOT / "config" / name)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-1500:]
        counts = re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, flags=re.M)
        return {rule: int(n) for rule, n in counts}

    default = planned("config.yaml")
    assert default["hnsw_index"] == 1 and default["index"] == 1 and default["ivf_natural"] == 1
    assert default["ivf_variant"] == 3
    for name in ("leakage.yaml", "hotpotqa_scale.yaml"):
        jobs = planned(name)
        # the official-mode dataset links to the leak-free one's keys and IVF (config.shared_data)
        assert "hnsw_index" not in jobs and jobs["index"] == 1 and jobs["ivf_natural"] == 2
        assert jobs["synthetic"] == 1 and jobs["shared_embeddings"] == 1 and jobs["shared_ivf"] == 2
        assert "ivf_variant" not in jobs


def planned_jobs(workdir: Path, config: Path, target: str = "all") -> dict[str, int]:
    """The jobs per rule that `snakemake -n target` plans in workdir."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--snakefile",
                          str(ROOT / "Snakefile"), "--directory", str(workdir), target,
                          "--configfile", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, flags=re.M)}


def test_datasets_with_the_same_data_draw_and_index_their_keys_once(tmp_path):
    """A dataset whose data settings equal an earlier one's links to its embeddings; its IVFs
    and HNSW graph too where their own settings agree. `twin` differs only in its splits, so it
    makes no keys and no index; `coarse` has the same keys at another nlist, so it builds its IVFs
    (the paper's and three variants) but links the HNSW graph; `other` draws other keys."""
    config = _quick()
    quick = config["datasets"]["quick"]
    twin = yaml.safe_load(yaml.safe_dump(quick))
    twin["splits"]["val_size"] = 400
    coarse = yaml.safe_load(yaml.safe_dump(quick))
    coarse["ivf"]["nlist"] = 200
    other = yaml.safe_load(yaml.safe_dump(quick))
    other["synthetic"]["seed"] = 1
    config["datasets"].update(twin=twin, coarse=coarse, other=other)
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump(config))

    jobs = planned_jobs(tmp_path, path)
    assert jobs["synthetic"] == 2 and jobs["shared_embeddings"] == 2
    assert jobs["index"] == 3 and jobs["ivf_variant"] == 9
    assert jobs["shared_ivf"] == 8  # twin: ivf.faiss, manifest.json, three variants and their .json
    assert jobs["hnsw_index"] == 2 and jobs["shared_hnsw"] == 4
    assert jobs["split"] == 4

    # keys that `twin` made itself before it had a twin stay its own, and so do its indexes
    embeddings = tmp_path / "results" / "twin" / "embeddings"
    embeddings.mkdir(parents=True)
    for name in ("keys.npy", "queries.npy", "manifest.json"):
        (embeddings / name).write_text("made before")
    jobs = planned_jobs(tmp_path, path)
    assert jobs["synthetic"] == 2 and jobs["shared_embeddings"] == 1
    assert jobs["index"] == 4 and jobs["ivf_variant"] == 12 and "shared_ivf" not in jobs
    assert jobs["hnsw_index"] == 3 and jobs["shared_hnsw"] == 2


def test_encoded_datasets_share_only_what_the_same_encoder_wrote():
    """How an encoding job runs (batch and chunk size) writes the same vectors; another model,
    query source or dataset does not."""
    from amips_bench.core.config import shared_data

    config = yaml.safe_load((ROOT / "config" / "fiqa.yaml").read_text())
    fiqa = config["datasets"]["fiqa"]
    variants = {"fiqa": fiqa}
    for name, block, key, value in [("faster", "encoder", "batch_size", 4096),
                                    ("other_model", "encoder", "model", "sentence-transformers/other"),
                                    ("beir_queries", "beir", "query_source", "beir")]:
        variant = yaml.safe_load(yaml.safe_dump(fiqa))
        variant.setdefault(block, {})[key] = value
        variants[name] = variant
    full = prepare({**config, "datasets": variants})
    shared = shared_data(full["datasets"])
    assert shared["embeddings"] == {"faster": "fiqa"}
    assert shared["ivf"] == {"faster": "fiqa"} and shared["hnsw"] == {"faster": "fiqa"}
