"""`amips-bench <stage>`: one subcommand per workflow stage; the logic lives in the modules.

Every subcommand reads and writes the results contract (docs/architecture.md §2). Bad input stops
with a single line naming the file, key or value at fault and exit status 2. Flags the workflow
always passes are required; the train stage's options default to the schema's values
(`data/schema.yaml`), so a hand-run stage and the workflow start from the same settings.
`--threads` and `--device` are applied once, in `main()`, before a handler runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.plugins import load_plugins
from .core.runs import MODELS
from .reporting.figures import FIGURES

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[Any], None]]] = {}


def command(name: str, help_text: str):
    """Register `add_arguments` + `run` pairs as a subcommand."""
    def wrap(add_arguments):
        def register(run):
            COMMANDS[name] = (help_text, add_arguments, run)
            return run
        return register
    return wrap


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch and FAISS (default: library default)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda[:i]'")


def _add_width_rule(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width-rule", default="paper", choices=["paper", "full"],
                   help="paper: eq. 3.3, (L-1)h^2 + (1+n_x)dh = rho*n*d; full: every parameter counted")


def _add_faiss_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--faiss-device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where FAISS flat/IVF searches run (auto: GPU build and a GPU, else CPU)")


def _dataclass_arguments(p: argparse.ArgumentParser, cls, prefix: str = "",
                         skip: tuple[str, ...] = ()) -> None:
    """One --flag per dataclass field, typed from its default (booleans as --x / --no-x)."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = "--" + (prefix + f.name).replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=f"(default {default})")
        elif isinstance(default, (int, float, str)):
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")


def _dataclass_values(args, cls, prefix: str = "", skip: tuple[str, ...] = ()) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        key = (prefix + f.name).replace("-", "_")
        if f.name not in skip and hasattr(args, key):
            out[f.name] = getattr(args, key)
    return out


# --------------------------------------------------------------------------- data stages


def _synthetic_args(p):
    from .datasets.synthetic import SyntheticParams

    p.add_argument("--out", required=True, help="embeddings folder to write (keys.npy, queries.npy, manifest.json)")
    _dataclass_arguments(p, SyntheticParams, skip=("n_keys", "n_queries", "d", "seed"))
    for name in ("n-keys", "n-queries", "d", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    _add_threads(p)


@command("synthetic", "generate the embedded synthetic dataset (no network)")(_synthetic_args)
def _synthetic(args):
    from .datasets.embeddings import write_synthetic
    from .datasets.synthetic import SyntheticParams

    manifest = write_synthetic(args.out, SyntheticParams(**_dataclass_values(args, SyntheticParams)))
    for name, row in manifest["realism"]["vs_real_minilm"].items():
        flag = {True: "ok", False: "OUTSIDE ±30%", None: "not judged on a key sample"}[row["within_tolerance"]]
        print(f"{name:28s} ours {row['ours']:.4f}  real {row['real_minilm']:.4f}  {flag}")


def _disk_margin(args) -> float | None:
    """The margin a stage checks its files with: its --disk-margin, else the workflow's."""
    import os

    from .core.disk import stage_disk_margin

    return stage_disk_margin(args.disk_margin, os.environ)


def _add_disk_margin(p, before: str) -> None:
    p.add_argument("--disk-margin", default=None,
                   help=f"headroom the free disk must have over the files' size, checked before "
                        f"{before} ('none': no check; default: $AMIPS_BENCH_DISK_MARGIN, which "
                        f"a workflow run sets to its disk_margin, else 0.1)")


def _beir_fetch_args(p):
    p.add_argument("--name", required=True, help="BEIR dataset name (archive NAME.zip)")
    p.add_argument("--raw-dir", required=True, help="results/{dataset}/raw")
    p.add_argument("--base-url", required=True, help="base URL of the BEIR archives")
    p.add_argument("--mirror", default="", help="folder of pre-downloaded NAME.zip or NAME/ folders")
    p.add_argument("--md5", default="", help="expected md5 (default: known value, if any)")
    p.add_argument("--size-bytes", type=int, required=True, help="expected archive size (0: known value)")
    p.add_argument("--query-source", required=True, choices=["beir", "generated"])
    p.add_argument("--generated-url", default="", help="URL of NAME-generated-queries.jsonl.gz")
    _add_disk_margin(p, "each download, copy and unpacking")


@command("beir-fetch", "download (or take from a mirror), verify and unpack a BEIR dataset")(_beir_fetch_args)
def _beir_fetch(args):
    from .datasets.beir import fetch

    origin = fetch(args.name, args.raw_dir, base_url=args.base_url, mirror=args.mirror,
                   md5=args.md5, size=args.size_bytes, query_source=args.query_source,
                   generated_url=args.generated_url, disk_margin=_disk_margin(args))
    print(f"[beir-fetch] {args.name}: {origin['source']}; unique texts: "
          + ", ".join(f"{rule} {n:,}" for rule, n in origin["unique_texts"].items()))


def _encode_args(p):
    p.add_argument("--folder", required=True, help="a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--out", required=True, help="embeddings folder to write")
    p.add_argument("--fetch-manifest", default="", help="raw/manifest.json of the fetch stage")
    p.add_argument("--model", required=True, help="hub name, local path, or auto (offline all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--chunk-size", type=int, required=True)
    p.add_argument("--query-source", required=True, choices=["beir", "generated"])
    p.add_argument("--key-text", required=True, choices=["text", "title_text"],
                   help="keys as passage text alone (the official script) or 'title. text'")
    p.add_argument("--generated-file", default="", help="NAME-generated-queries.jsonl[.gz]")
    _add_device(p)
    _add_threads(p)
    _add_disk_margin(p, "any encoding")


@command("encode", "encode a BEIR folder with all-MiniLM-L6-v2 (deduplicated, resumable)")(_encode_args)
def _encode(args):
    from .datasets.embeddings import encode_folder

    m = encode_folder(args.folder, args.out, fetch_manifest=args.fetch_manifest,
                      generated_file=args.generated_file, query_source=args.query_source,
                      model=args.model, batch_size=args.batch_size, chunk_size=args.chunk_size,
                      device=str(args.device), key_text=args.key_text,
                      disk_margin=_disk_margin(args))
    print(f"[encode] keys {m['counts_before_dedup']['keys']:,} -> {m['counts_after_dedup']['keys']:,}, "
          f"queries {m['counts_before_dedup']['queries']:,} -> {m['counts_after_dedup']['queries']:,}")


def _share_args(p):
    p.add_argument("sources", nargs="+",
                   help="files of another dataset, or one folder: its files (not hidden ones)")
    p.add_argument("--out", required=True, help="this dataset's folder that receives them")


@command("share", "link the embeddings or an index of a dataset with the same data settings "
                  "(keys drawn, encoded and indexed once)")(_share_args)
def _share(args):
    from .core.errors import InputError
    from .core.storage import share_files

    sources = [Path(s) for s in args.sources]
    if len(sources) == 1 and sources[0].is_dir():
        sources = sorted(f for f in sources[0].iterdir() if f.is_file() and not f.name.startswith("."))
        if not sources:
            raise InputError(f"{args.sources[0]}: no files to share")
    for line in share_files(sources, args.out):
        print(line)


def _split_args(p):
    p.add_argument("--queries", required=True, help="embeddings/queries.npy")
    p.add_argument("--out", required=True, help="splits folder to write")
    p.add_argument("--val-size", type=int, required=True)
    p.add_argument("--test-size", type=int, required=True)
    p.add_argument("--augment-factor", type=int, required=True,
                   help="rows per training query (the clean one + factor-1 noisy copies)")
    p.add_argument("--sigma", type=float, required=True, help="std of the Gaussian augmentation noise")
    p.add_argument("--mode", required=True, choices=["leak_free", "official"],
                   help="leak_free, or official (the official code's leaky split, for comparison)")
    p.add_argument("--seed", type=int, required=True)


@command("split", "split unique queries into train/val/test before augmentation")(_split_args)
def _split(args):
    from .datasets.splits import write_splits

    write_splits(args.queries, args.out, val_size=args.val_size, test_size=args.test_size,
                 augment_factor=args.augment_factor, sigma=args.sigma, mode=args.mode, seed=args.seed)


def _cluster_args(p):
    p.add_argument("--keys", required=True, help="embeddings/keys.npy")
    p.add_argument("--out", required=True, help="clusters/c{C} folder to write")
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--restarts", type=int, required=True)
    p.add_argument("--niter", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--max-points-per-centroid", type=int, required=True)
    _add_threads(p)


@command("cluster", "balanced k-means of the keys (most even of several restarts)")(_cluster_args)
def _cluster(args):
    from .datasets.clusters import write_clusters

    m = write_clusters(args.keys, args.out, args.clusters, restarts=args.restarts,
                       niter=args.niter, seed=args.seed,
                       max_points_per_centroid=args.max_points_per_centroid)
    print(f"chosen seed {m['chosen_seed']}: sizes {m['sizes']} (max/min {m['balance_ratio']:.3f})")


def _targets_args(p):
    p.add_argument("--embeddings", required=True, help="embeddings folder")
    p.add_argument("--splits", required=True, help="splits folder")
    p.add_argument("--clusters-dir", default=None, help="clusters/c{C} folder (needed for C > 1)")
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--out", required=True, help="targets/c{C} folder to write")
    p.add_argument("--queries-from", default=None,
                   help="a targets/c1 folder of the same splits: link its queries files, checked "
                        "equal row for row, instead of writing them again")
    p.add_argument("--reuse-from", default=None,
                   help="the targets/c{C} folder of a twin dataset (same keys, clusters, questions "
                        "and noise, another split mode): rows it holds are copied, not searched")
    p.add_argument("--reuse-splits", default=None, help="that twin's splits folder")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"],
                   help="the exact fp32 search, the certified bf16 one (the same answers), or "
                        "bf16 where the hardware has bf16 matrix units (auto)")
    _add_disk_margin(p, "any search")
    _add_device(p)
    _add_faiss_device(p)
    _add_threads(p)


@command("targets", "exact per-cluster top-1 keys of every split (streamed, never [N, n])")(_targets_args)
def _targets(args):
    from .datasets.targets import write_targets

    write_targets(args.embeddings, args.splits, args.out, n_clusters=args.clusters,
                  clusters_dir=args.clusters_dir, device=args.device,
                  faiss_device=args.faiss_device, queries_from=args.queries_from,
                  disk_margin=_disk_margin(args), reuse_from=args.reuse_from,
                  reuse_splits=args.reuse_splits, precision=args.precision)


def _identity_args(p):
    p.add_argument("--dataset-dir", required=True, help="results/{dataset} (with targets/c1)")
    p.add_argument("--out", required=True, help="JSON to write (targets/c1/identity.json)")


@command("identity", "test metrics of the identity map ŷ = x: the reference of Figure 3")(_identity_args)
def _identity(args):
    from .models.evaluation import write_identity_metrics

    write_identity_metrics(args.dataset_dir, args.out)


# --------------------------------------------------------------------------- training


def _train_args(p):
    from .core.stage_settings import KEY_REDUCTIONS, LossWeights, TrainSettings
    from .models.networks import CONVEXITY_MODES, INITS, ModelSpec

    p.add_argument("--dataset-dir", required=True, help="results/{dataset}")
    p.add_argument("--out", required=True, help="model folder to write (model.pt, history.csv, metrics.json)")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--size", required=True, help="XS, S, M, L, XL or XXL (fraction of n·d parameters)")
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--nx", type=int, required=True, help="number of later layers that re-inject x")
    p.add_argument("--clusters", type=int, default=1)
    p.add_argument("--residual", action="store_true")
    p.add_argument("--convexity", default=ModelSpec.convexity, choices=CONVEXITY_MODES,
                   help="SupportNet's W^z: none (non-negative start, then free: the official "
                        "code), penalty (the paper's text) or clip (exact projection)")
    p.add_argument("--init", default=ModelSpec.init, choices=INITS,
                   help="SupportNet's initialisation (models.init_supportnet_)")
    _add_width_rule(p)
    _dataclass_arguments(p, TrainSettings, skip=("weights",))
    _dataclass_arguments(p, LossWeights, prefix="lambda_", skip=("key_reduction",))
    p.add_argument("--key-reduction", default=LossWeights.key_reduction, choices=KEY_REDUCTIONS,
                   help="the key term summed (paper) or averaged (official code) over coordinates")
    p.add_argument("--until-step", type=int, default=None,
                   help="train a segment: stop at this step and save its checkpoint as --segment-out")
    p.add_argument("--segment-out", default=None, help="a segment's checkpoint file to write")
    p.add_argument("--resume-from", default=None,
                   help="the previous segment's checkpoint file to continue from")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="wall-clock budget of this process: before it is spent (and on SIGTERM) "
                        "training saves a checkpoint and exits with status 75; the same command "
                        "continues it (0: no budget)")
    _add_device(p)
    _add_threads(p)


def _show_progress(spec, row) -> None:
    print(f"[{spec.name}] step {row['step']:>6}  e_rel {row['e_rel']:+.3f}  "
          f"mrr {row['mrr']:.3f}  match {row['match_rate']:.3f}  "
          f"val_loss {row['val_loss']:.4f}  {row['elapsed_s']:.1f}s", flush=True)


@command("train", "train one SupportNet or KeyNet (resumes from its checkpoint)")(_train_args)
def _train(args):
    from .core.stage_settings import LossWeights, TrainSettings
    from .models.training import STOPPED_EXIT, TrainingStopped, train_run

    cfg = TrainSettings(**_dataclass_values(args, TrainSettings, skip=("weights",)),
                      weights=LossWeights(**_dataclass_values(args, LossWeights, prefix="lambda_",
                                                              skip=("key_reduction",)),
                                          key_reduction=args.key_reduction))
    try:
        metrics = train_run(args.dataset_dir, args.out, cfg, args.device, progress=_show_progress,
                            max_minutes=args.max_minutes, until_step=args.until_step,
                            segment_out=args.segment_out, resume_from=args.resume_from,
                            model=args.model, size=args.size,
                            depth=args.depth, n_x=args.nx, n_clusters=args.clusters,
                            residual=args.residual, convexity=args.convexity,
                            width_rule=args.width_rule, init=args.init)
    except TrainingStopped as stopped:
        print(f"amips-bench train: stopped early ({stopped})", file=sys.stderr, flush=True)
        raise SystemExit(STOPPED_EXIT) from None
    if metrics is None:  # a segment: its checkpoint is written
        return
    test = metrics["test"]
    print(f"[{Path(args.out).name}] test e_rel {test['e_rel']:+.3f}  mrr {test['mrr']:.3f}  "
          f"({metrics['parameters']:,} parameters, {metrics['train_seconds']:.1f}s)")


# --------------------------------------------------------------------------- routing (Figure 2)


#: the training recipe a learned router shares with the models (`train` block of its dataset)
ROUTER_RECIPE = ("steps", "batch_size", "lr_at_128", "end_lr_fraction", "warmup_fraction",
                 "ema_at_128", "ema_warmup", "grad_clip", "seed")


def _not_router_recipe() -> tuple[str, ...]:
    from .core.stage_settings import TrainSettings

    return tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name not in ROUTER_RECIPE)


def _train_router_args(p):
    from .core.stage_settings import TrainSettings

    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--out", required=True, help="router folder to write (model.pt, metrics.json)")
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--router", required=True, metavar="NAME",
                   help="a registered router: KIND_SIZE_LDEPTH for a sized one (classifier_S_L2: "
                        "the classifier MLP at size S, depth 2) or KIND (linear: W·q, W ∈ R^{c×d})")
    _dataclass_arguments(p, TrainSettings, skip=_not_router_recipe())
    p.add_argument("--lr-factors", type=float, nargs="+", default=[1.0],
                   help="train at lr_at_128 × each factor, keep the best on validation")
    _add_device(p)
    _add_threads(p)


@command("train-router", "train a learned router baseline of the router registry (cross-entropy "
                         "on the top key's cluster)")(_train_router_args)
def _train_router(args):
    from .core.stage_settings import TrainSettings
    from .models.routers import train_router

    cfg = TrainSettings(**_dataclass_values(args, TrainSettings, skip=_not_router_recipe()))
    m = train_router(args.dataset_dir, args.out, n_clusters=args.clusters, router=args.router,
                     cfg=cfg, device=args.device, lr_factors=tuple(args.lr_factors))
    print(f"[{m['name']}] {m['parameters']:,} parameters, test top-1 accuracy "
          f"{m['top1_accuracy']['test']:.3f}")


def _routing_args(p):
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--ks", type=int, nargs="+", required=True)
    p.add_argument("--out", required=True, help="routing/*.csv to write")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="models/*/model.pt of a clustered SupportNet or KeyNet")
    what.add_argument("--router", help="models/router_*/model.pt of a learned router")
    what.add_argument("--baselines", action="store_true", help="centroid IP / L2 / cosine and the oracle")
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines (fine k-means)")
    p.add_argument("--fine-centroids", type=int, nargs="*", default=[], metavar="M",
                   help="with --baselines: centroid routing at equal cost with M fine centroids")
    _add_device(p)
    _add_threads(p)


@command("routing", "routing accuracy vs FLOPs of one router (Figure 2)")(_routing_args)
def _routing(args):
    from .core.storage import save_result_rows
    from .experiments.routing import routing_rows

    questions: dict = {}
    rows = routing_rows(args.dataset_dir, args.clusters, tuple(args.ks), args.device,
                        model=args.model, router=args.router, seed=args.seed,
                        fine=tuple(args.fine_centroids), questions=questions)
    save_result_rows(args.out, rows, args.dataset_dir, questions)
    for r in rows:
        if r["k"] == 1:
            print(f"{r['method']:>14} {r['size']:>3}  k=1 accuracy {r['accuracy']:.3f}  "
                  f"{r['flops_total']:.3e} FLOPs/query")


# --------------------------------------------------------------------------- IVF / HNSW (Figures 4-7)


def _index_args(p):
    from .core.runs import PAPER_IVF_SETUP

    p.add_argument("--keys", required=True, help="embeddings/keys.npy")
    p.add_argument("--out", required=True,
                   help="folder for ivf.faiss with manifest.json (the paper's setup) and the "
                        "variants' ivf_{quantizer}_x{multiple}.faiss with their .json")
    p.add_argument("--nlist", type=int, required=True,
                   help="IVF lists of the paper's setup ivf.faiss (0 = round(sqrt(n)))")
    _add_ivf_variant_args(p, "of the IVFs to build, one per quantizer × multiple (spherical "
                             "at 1: the paper's ivf.faiss)", [PAPER_IVF_SETUP[0]],
                          [PAPER_IVF_SETUP[1]])
    p.add_argument("--seed", type=int, default=0)
    _add_faiss_device(p)
    _add_threads(p)


def _add_ivf_variant_args(p, role: str, quantizers: list[str], multiples: list[float]):
    p.add_argument("--quantizers", nargs="+", default=quantizers,
                   help=f"coarse quantizers {role}: spherical (normalised centroids, FAISS's "
                        f"default for inner product) and/or kmeans (unnormalised)")
    p.add_argument("--nlist-multiples", type=float, nargs="+", default=multiples,
                   help=f"nlist as multiples of the paper's nlist, {role}")


@command("index", "build the FAISS IVF indexes of the keys")(_index_args)
def _index(args):
    from .experiments.ivf import write_ivf_indexes

    write_ivf_indexes(args.keys, args.out, nlist=args.nlist, seed=args.seed,
                      faiss_device=args.faiss_device, quantizers=tuple(args.quantizers),
                      nlist_multiples=tuple(args.nlist_multiples))


def _hnsw_index_args(p):
    p.add_argument("--keys", required=True, help="embeddings/keys.npy")
    p.add_argument("--out", required=True, help="folder for hnsw.faiss and hnsw.json")
    p.add_argument("--m", type=int, required=True, help="graph degree M")
    p.add_argument("--ef-construction", type=int, required=True)
    _add_threads(p)


@command("hnsw-index", "build the FAISS HNSW index of the keys (CPU: FAISS has no GPU HNSW)")(_hnsw_index_args)
def _hnsw_index(args):
    from .experiments.ivf import write_hnsw_index

    write_hnsw_index(args.keys, args.out, m=args.m, ef_construction=args.ef_construction)


def _ivf_common(p):
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--index-dir", required=True,
                   help="folder of the index stages (ivf*.faiss with their manifests, hnsw.faiss, "
                        "hnsw.json)")
    p.add_argument("--nprobe", type=int, nargs="+", required=True)
    p.add_argument("--recall-at", type=int, nargs="+", required=True)
    p.add_argument("--out", required=True, help="CSV to write")
    _add_device(p)
    _add_faiss_device(p)
    _add_threads(p)


def _ivf_args(p):
    from .core.schema import schema_defaults

    _ivf_common(p)
    p.add_argument("--ef-search", type=int, nargs="*", default=[],
                   help="HNSW efSearch sweep (omitted or empty: no HNSW rows)")
    p.add_argument("--timed-queries", type=int, default=schema_defaults("ivf")["timed_queries"],
                   help="queries timed per budget for seconds_per_query (0: not timed)")
    p.add_argument("--evaluator", default=schema_defaults("ivf")["evaluator"],
                   choices=["auto", "faiss", "all_nprobe"],
                   help="FAISS search per nprobe, or one exact pass for every nprobe (ivf_ranks)")
    _add_ivf_variant_args(p, "of the IVF variants swept besides ivf.faiss",
                          schema_defaults("ivf")["quantizers"],
                          schema_defaults("ivf")["nlist_multiples"])
    p.add_argument("--model", default=None, help="models/*/model.pt for mapped queries (omit: natural)")
    p.add_argument("--probe-mapped", action="store_true",
                   help="with --model, also sweep probe_mapped: ŷ chooses the lists, x ranks their keys")


@command("ivf", "recall/MRR vs FLOPs of natural or mapped queries on IVF and HNSW")(_ivf_args)
def _ivf(args):
    from .core.storage import save_result_rows
    from .experiments.ivf import evaluate_indexes

    questions: dict = {}
    rows = evaluate_indexes(args.dataset_dir, args.index_dir, ivf_budgets=args.nprobe,
                            hnsw_budgets=args.ef_search, ks=args.recall_at, model_path=args.model,
                            device=args.device, faiss_device=args.faiss_device,
                            timed_queries=args.timed_queries, quantizers=tuple(args.quantizers),
                            nlist_multiples=tuple(args.nlist_multiples), evaluator=args.evaluator,
                            probe_mapped=args.probe_mapped, questions=questions)
    save_result_rows(args.out, rows, args.dataset_dir, questions)


def _ood_args(p):
    _ivf_common(p)
    p.add_argument("--model", required=True, help="models/*/model.pt of the c = 1 model under test")
    p.add_argument("--stds", type=float, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0, help="noise seed")


@command("ood", "natural vs mapped IVF search under growing query noise (Figure 7)")(_ood_args)
def _ood(args):
    from .core.storage import save_result_rows
    from .experiments.ood import ood_rows

    questions: dict = {}
    rows = ood_rows(args.dataset_dir, args.index_dir, args.model, stds=args.stds,
                    nprobes=args.nprobe, ks=args.recall_at, seed=args.seed, device=args.device,
                    faiss_device=args.faiss_device, questions=questions)
    save_result_rows(args.out, rows, args.dataset_dir, questions)


def _clean_test_args(p):
    p.add_argument("--official-dir", required=True, help="results/{dataset} of the official-split dataset")
    p.add_argument("--leak-free-dir", required=True,
                   help="results/{dataset} of its leak-free twin, whose test questions are scored")
    p.add_argument("--index-dir", required=True, help="folder of ivf.faiss (the paper's IVF setup)")
    p.add_argument("--model", required=True, help="models/*/model.pt of a c = 1 official-split model")
    p.add_argument("--nprobe", type=int, nargs="+", required=True)
    p.add_argument("--recall-at", type=int, nargs="+", required=True)
    p.add_argument("--out-json", required=True, help="metrics of the model on the clean questions")
    p.add_argument("--out-csv", required=True, help="IVF rows of natural and mapped queries")
    p.add_argument("--ivf-models", nargs="+", default=["keynet", "supportnet"],
                   help="models whose mapped queries are swept (the dataset's ivf.models)")
    _add_device(p)
    _add_faiss_device(p)
    _add_threads(p)


@command("clean-test", "leakage study: an official-split model on the test questions its split "
                       "held out whole")(_clean_test_args)
def _clean_test(args):
    from .experiments.clean_test import write_clean_test

    write_clean_test(args.official_dir, args.leak_free_dir, args.index_dir, args.model,
                     args.out_json, args.out_csv, nprobes=args.nprobe, ks=args.recall_at,
                     device=args.device, faiss_device=args.faiss_device,
                     ivf_models=tuple(args.ivf_models))


# --------------------------------------------------------------------------- timing (Table 1)


def _timing_args(p):
    p.add_argument("--datasets", nargs="+", required=True, metavar="NAME=N_KEYS",
                   help="datasets and their key counts, e.g. quora=513000")
    p.add_argument("--sizes", nargs="+", required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--nx", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                   help="matmul precision on a GPU: fp32 (IEEE), tf32 or bf16 autocast")
    _add_width_rule(p)
    p.add_argument("--out", required=True, help="output stem: STEM.csv and STEM.md")
    _add_device(p)
    _add_threads(p)


@command("timing", "Table 1: seconds per batch for score and gradient, beside the paper")(_timing_args)
def _timing(args):
    from .experiments.timing import write_table1

    print(write_table1(args.out, args.datasets, sizes=args.sizes, depth=args.depth, n_x=args.nx,
                       batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                       device=args.device, precision=args.precision, width_rule=args.width_rule))


def _pipelines_args(p):
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--index-dir", required=True)
    p.add_argument("--clusters", type=int, required=True, help="c of the routing models (0: no routing)")
    p.add_argument("--routing-models", nargs="*", required=True)
    p.add_argument("--ks", type=int, nargs="+", required=True)
    p.add_argument("--ivf-models", nargs="*", required=True)
    p.add_argument("--nprobe", type=int, nargs="+", required=True)
    p.add_argument("--k", type=int, required=True, help="results returned by the IVF search")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--out", required=True, help="timing/pipelines.csv to write")
    _add_device(p)
    _add_threads(p)


@command("pipelines", "seconds per batch of the full search pipelines (router + scan, KeyNet + IVF)")(_pipelines_args)
def _pipelines(args):
    from .core.storage import save_result_rows
    from .experiments.timing import pipeline_rows

    rows = pipeline_rows(args.dataset_dir, args.index_dir, n_clusters=args.clusters,
                         routing_models=args.routing_models, ks=args.ks,
                         ivf_models=args.ivf_models, nprobes=args.nprobe, k=args.k,
                         batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                         device=args.device)
    save_result_rows(args.out, rows, args.dataset_dir)


# --------------------------------------------------------------------------- figures and tables


def _figure_args(p):
    names = list(FIGURES)
    p.add_argument("name", choices=names, help="; ".join(f"{n}: {FIGURES[n].title}" for n in names))
    p.add_argument("--number", type=int, default=4, help="figure number of an ivf figure (4, 5 or 6)")
    p.add_argument("--out", required=True, help="output stem: writes STEM.pdf, STEM.png, STEM.csv")
    p.add_argument("--metrics", nargs="*", default=[], help="models/*/metrics.json")
    p.add_argument("--history", nargs="*", default=[], help="models/*/history.csv (same order as --metrics)")
    p.add_argument("--csv", nargs="*", default=[], help="result tables (routing/*.csv, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", nargs="*", default=[], metavar="LEAK_FREE:OFFICIAL",
                   help="leakage figure: datasets that differ only in their split mode")
    p.add_argument("--clean-test", nargs="*", default=[],
                   help="leakage figure: clean_test/*.json of the third arm (CSV beside each)")
    _add_regime_args(p)
    _add_threads(p)


def _add_regime_args(p):
    p.add_argument("--regime", nargs="*", default=[], metavar="DATASET",
                   help="where mapping pays: the datasets of the study (figures.regime.datasets)")
    p.add_argument("--regime-settings", nargs="*", default=[], metavar="KEY=VALUE",
                   help="the study's other figures.regime keys (recall_fraction, predict_at, "
                        "plateau_fraction, plateau_tolerance)")


@command("figure", "draw one figure of the paper from result files")(_figure_args)
def _figure(args):
    FIGURES[args.name].render(args.out, args)


def _table_args(p):
    p.add_argument("name", choices=["final_metrics", "realism"])
    p.add_argument("--out", required=True, help="output stem: writes STEM.csv and STEM.md")
    p.add_argument("--inputs", nargs="+", required=True, help="metrics.json or embeddings manifest.json files")


@command("table", "summary tables (CSV + Markdown)")(_table_args)
def _table(args):
    from .reporting.tables import write_named_table

    write_named_table(args.name, args.inputs, args.out)


def _report_args(p):
    p.add_argument("--out", required=True, help="report folder (reproduction.md, reproduction.html, claims.csv)")
    p.add_argument("--metrics", nargs="*", default=[], help="models/*/metrics.json")
    p.add_argument("--histories", nargs="*", default=[], help="models/*/history.csv (same order)")
    p.add_argument("--routing", nargs="*", default=[])
    p.add_argument("--ivf", nargs="*", default=[])
    p.add_argument("--ood", nargs="*", default=[])
    p.add_argument("--table1", default=None)
    p.add_argument("--kinds", nargs="*", default=[], metavar="DATASET=KIND",
                   help="data kind of each dataset: synthetic, beir or local")
    p.add_argument("--figures", nargs="*", default=[])
    p.add_argument("--manifests", nargs="*", default=[], help="results/*/embeddings/manifest.json")
    p.add_argument("--config-hash", default="")
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--leakage", nargs="*", default=[], metavar="LEAK_FREE:OFFICIAL",
                   help="dataset pairs of the leakage study (a report section per pair)")
    p.add_argument("--clean-test", nargs="*", default=[],
                   help="clean_test/*.json of the leakage study's third arm (CSV beside each)")
    _add_regime_args(p)


@command("report", "the paper's claims beside our results (reproduction.md / .html)")(_report_args)
def _report(args):
    from .reporting.report import write_report_from_files

    claims = write_report_from_files(
        args.out, metrics=args.metrics, histories=args.histories, routing=args.routing,
        ivf=args.ivf, ood=args.ood, table1=args.table1, kinds=args.kinds,
        manifests=args.manifests, figures=args.figures, config_hash=args.config_hash,
        seeds=args.seeds, leakage=args.leakage, clean_tests=args.clean_test,
        regime=(args.regime, args.regime_settings))
    for c in claims:
        print(f"{c['claim']:<26} {c['dataset'] or '-':<10} {c['verdict']}")


# --------------------------------------------------------------------------- comparing runs


def _compare_args(p):
    p.add_argument("--run", nargs="+", required=True, metavar="NAME=FOLDER",
                   help="the compared runs: a name and the results tree the run wrote")
    p.add_argument("--baseline", required=True, help="the NAME every other run is compared with")
    p.add_argument("--out", required=True, help="folder of summary.md, summary.html, differences.csv")
    p.add_argument("--figures", required=True, help="folder of the overlaid figures")
    p.add_argument("--seed-factor", type=float, default=2.0, help="|Δ| ≤ FACTOR·σ_seed + FLOOR")
    p.add_argument("--floor", type=float, default=0.005, help="absolute slack under the seed term")
    p.add_argument("--absolute", type=float, default=0.02,
                   help="|Δ| ≤ ABSOLUTE where neither run has two seeds")
    p.add_argument("--fail-on", nargs="*", default=[], metavar="KIND",
                   help="exit with status 1, naming the curves, when a baseline curve differs "
                        "(beyond its tolerance, shorter, no common x) or is missing from a run "
                        "(KIND: differs, missing); the summary is written first")
    p.add_argument("--fail-on-difference", action="store_true", help="the same as --fail-on differs")


@command("compare", "compare runs figure by figure with a baseline, within seed noise")(_compare_args)
def _compare(args):
    from .comparing.compare_runs import check_fail_on, compare_runs, failures, verdict_counts, write_comparison
    from .comparing.curves import Tolerance
    from .core.errors import InputError

    runs = {}
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--run: {item!r} is not NAME=FOLDER")
        if name in runs:
            raise InputError(f"--run: the name {name!r} is given twice")
        runs[name] = folder
    fail_on = tuple(dict.fromkeys(args.fail_on + (["differs"] if args.fail_on_difference else [])))
    check_fail_on(fail_on)  # before the comparison: a misspelled kind costs nothing
    result = compare_runs(runs, args.baseline, Tolerance(args.seed_factor, args.floor, args.absolute))
    summary = write_comparison(result, args.out, args.figures)
    counts = verdict_counts(result.rows)
    print(counts.to_string(index=False))
    print(f"summary: {summary}")
    failed = failures(result.rows, args.baseline, fail_on)
    for r in failed.itertuples():
        print(f"{r.failure}: {r.figure} · run {r.run} · {r.curve} · {r.metric}: {r.verdict}"
              + (f", {r.tolerance}" if r.tolerance else ""), file=sys.stderr)
    if len(failed):
        raise SystemExit(1)


def _compare_gate_args(p):
    p.add_argument("--differences", required=True, help="differences.csv of `amips-bench compare`")
    p.add_argument("--baseline", required=True, help="the baseline run of that comparison")
    p.add_argument("--fail-on", nargs="*", default=["differs", "missing"], metavar="KIND",
                   help="differs and/or missing (comparison.FAIL_ON)")
    p.add_argument("--out", required=True, help="written (with the counts) only when the gate passes")


@command("compare-gate", "fail, naming the curves, when a finished comparison found a regression")(
    _compare_gate_args)
def _compare_gate(args):
    import pandas as pd

    from .comparing.compare_runs import check_fail_on, failures
    from .core.errors import InputError
    from .core.storage import save_text

    check_fail_on(tuple(args.fail_on))
    if not Path(args.differences).is_file():
        raise InputError(f"--differences: {args.differences} not found")
    rows = pd.read_csv(args.differences, keep_default_na=False)
    failed = failures(rows, args.baseline, tuple(args.fail_on))
    for r in failed.itertuples():
        print(f"{r.failure}: {r.figure} · run {r.run} · {r.curve} · {r.metric}: {r.verdict}",
              file=sys.stderr)
    if len(failed):
        print(f"amips-bench compare-gate: {len(failed)} of {len(rows)} compared curves fail "
              f"({', '.join(args.fail_on)}); see {Path(args.differences).parent / 'summary.md'}",
              file=sys.stderr)
        raise SystemExit(1)
    save_text(args.out, f"passed: {len(rows)} compared curves, none "
                        f"{' or '.join(args.fail_on) or 'gated'}\n")
    print(f"compare gate passed ({len(rows)} curves; fail on: {', '.join(args.fail_on) or 'nothing'})")


def _freeze_reference_args(p):
    p.add_argument("--results", required=True, help="the results tree to freeze")
    p.add_argument("--out", required=True, help="the reference folder (replaced when complete)")
    p.add_argument("--made-by", default="", help="the command that made the results, recorded")
    p.add_argument("--config-json", default=None, help="the run's config as JSON text, recorded")


@command("freeze-reference", "keep a run's tidy result files as a reference for compare")(
    _freeze_reference_args)
def _freeze_reference(args):
    from .comparing.trees import freeze_reference
    from .core.errors import InputError

    config = None
    if args.config_json:
        import json

        try:
            config = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise InputError(f"--config-json: not JSON ({exc})") from None
    files = freeze_reference(args.results, args.out, command=args.made_by, config=config)
    print(f"{len(files)} files from {args.results} kept in {args.out}")


# --------------------------------------------------------------------------- planning


def _disk_plan_args(p):
    p.add_argument("--config", required=True, help="the config file the run uses (--configfile)")
    p.add_argument("--summary", required=True,
                   help="the output of `snakemake --summary TARGETS --configfile CONFIG`, "
                        "or - to read it from standard input")
    p.add_argument("--workdir", default=".", help="the run's working folder (snakemake --directory)")
    p.add_argument("--check", action="store_true",
                   help="exit with status 2 when the results folder's disk is short")
    p.add_argument("--margin", type=float, default=0.1,
                   help="with --check: want this fraction more free disk than planned")
    p.add_argument("--jobs", type=int, default=1,
                   help="training jobs that run at once, each holding its checkpoints")


@command("disk-plan", "size every file a run will write and check the free disk before it starts")(
    _disk_plan_args)
def _disk_plan(args):
    import yaml

    from .core.config import prepare
    from .core.errors import InputError
    from .planning.disk_plan import free_disk_verdict, plan, read_summary, results_folder, table

    try:
        config = prepare(yaml.safe_load(Path(args.config).read_text()) or {})
        text = sys.stdin.read() if args.summary == "-" else Path(args.summary).read_text()
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}") from None
    workdir = Path(args.workdir)
    planned = plan(config, read_summary(text), workdir)
    print(table(planned))
    line, short = free_disk_verdict(planned, results_folder(config, workdir), args.margin,
                                    args.jobs)
    if short and args.check:
        raise InputError(line)
    print(f"disk-plan: {line}")


def _plan_args(p):
    p.add_argument("--config", required=True, help="the config file the run uses (--configfile)")
    p.add_argument("--throughput", default=None,
                   help="throughput table to price with (default: the config's cluster.throughput)")
    p.add_argument("--max-runtime-minutes", type=int, default=None,
                   help="walltime cap to plan under (default: the config's cluster.max_runtime_minutes)")
    p.add_argument("--jobs", action="store_true", help="a row per training job, not only the totals")
    p.add_argument("--cpu", action="store_true",
                   help="instead: every stage's CPU time on this machine, from rates measured "
                        "here on small samples (synthetic datasets)")
    p.add_argument("--cores", type=int, default=2, help="with --cpu: the --cores of the run")


@command("plan", "what every training job of a config costs and asks a cluster for")(_plan_args)
def _plan(args):
    import yaml

    from .core.config import prepare
    from .core.errors import InputError
    from .core.provenance import cpu_model
    from .planning.jobs import training_plan_tables

    try:
        config = prepare(yaml.safe_load(Path(args.config).read_text()) or {})
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if args.cpu:
        from .planning.time_plan import plan_tables, stage_estimates

        print(f"# stages of {Path(args.config).name} on this CPU ({cpu_model()}), from rates "
              f"measured here at one thread\n")
        print(plan_tables(stage_estimates(config), args.cores, config["threads"]))
        return
    if args.throughput is not None:
        config["cluster"]["throughput"] = args.throughput
    if args.max_runtime_minutes is not None:
        config["cluster"]["max_runtime_minutes"] = args.max_runtime_minutes
    print(training_plan_tables(config, Path(args.config).name, per_job=args.jobs))


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amips-bench",
        description="Benchmark suite for amortized MIPS (SupportNet / KeyNet). Each subcommand is "
                    "one stage of the Snakemake workflow and reads/writes the results contract.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _apply_execution_settings(args) -> None:
    """Threads and device, once for every stage: torch/FAISS threads and the torch device
    ('auto' -> cuda or cpu). FAISS settings are resolved by the stage, which records them."""
    if getattr(args, "threads", None):
        from .core.devices import apply_threads

        apply_threads(args.threads)
    if hasattr(args, "device"):
        from .core.devices import pick_device

        args.device = pick_device(args.device)


def main(argv: list[str] | None = None) -> int:
    from .core.errors import InputError

    try:
        load_plugins()  # routers and figures registered outside the package
    except InputError as exc:
        print(f"amips-bench: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        _apply_execution_settings(args)
        COMMANDS[args.command][2](args)
    except InputError as exc:
        print(f"amips-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
