"""benchmarks/paper_cost.py: its FLOPs per training step against the FLOPs counted on a real step,
and which measured rate it gives a run (measured as such, or borrowed)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from conftest import benchmark_script

from amips_bench.core.errors import InputError
from amips_bench.core.stage_settings import TrainSettings
from amips_bench.models.networks import ModelSpec, build_model

paper_cost = benchmark_script("paper_cost")  # prices through amips_bench.models.cost


@pytest.mark.parametrize("model", ["keynet", "supportnet"])
@pytest.mark.parametrize("clusters", [1, 4])
@pytest.mark.parametrize(("d", "size", "depth", "n_x"), [(64, "XS", 4, 3), (96, "S", 6, 1)])
def test_step_flops_match_the_flops_counted_on_a_real_training_step(model, clusters, d, size, depth, n_x):
    """The reference: FlopCounterMode over one real Trainer step (forward, backward, SupportNet's
    double backward). The formula also prices the biases, which are not matmuls: within 2 %."""
    throughput = benchmark_script("train_throughput")
    spec = ModelSpec(model=model, d=d, n_keys=20_000, size=size, depth=depth, n_x=n_x,
                     n_clusters=clusters)
    device = torch.device("cpu")
    data = throughput.synthetic_data(20_000, d, 256, device, clusters)
    cfg = TrainSettings(steps=10, batch_size=32, lr_at_128=1e-4)
    counted = throughput.count_step_flops(spec, cfg, data, device)
    assert paper_cost.step_flops(spec, 32) == pytest.approx(counted, rel=0.02)


def test_a_clustered_keynet_is_priced_at_its_real_parameters_not_the_budget():
    """Under the paper's width rule the c·d outputs come on top of the budget ρ·n·d."""
    spec = ModelSpec(model="keynet", d=384, n_keys=513_000, size="XS", depth=4, n_x=3, n_clusters=10)
    built = sum(p.numel() for p in build_model(spec).parameters())
    assert spec.n_parameters == built
    assert built > 2 * spec.budget


def _rates(tmp_path: Path, rows: list[dict]) -> list[dict]:
    """Rows written and read back as paper_cost reads a throughput CSV."""
    path = tmp_path / "throughput.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return paper_cost.load_rates(path)


def _row(spec: ModelSpec, *, width: int | None = None, flops: float = 1e14, graph: bool = False,
         batch: int = 4096) -> dict:
    return {"model": spec.model, "size": spec.size, "clusters": spec.n_clusters, "depth": spec.depth,
            "n_x": spec.n_x, "width": spec.width if width is None else width,
            "parameters": spec.n_parameters, "batch": batch, "precision": "tf32",
            "cuda_graph": graph, "achieved_flops": flops, "device": "test GPU"}


def _spec(model: str, size: str, clusters: int = 1, n_keys: int = 513_000) -> ModelSpec:
    return ModelSpec(model=model, d=384, n_keys=n_keys, size=size, depth=4, n_x=3, n_clusters=clusters)


def test_a_run_is_measured_only_where_the_table_holds_that_very_model(tmp_path):
    s, m = _spec("keynet", "S"), _spec("keynet", "M")
    rates = _rates(tmp_path, [_row(s, flops=1e14), _row(m, flops=2e14)])
    assert paper_cost.pick_rate(rates, s, "tf32", 4096, 513_000)[:2] == (1e14, "measured")
    # the same size at another batch or key count is another run: it borrows the rate
    assert paper_cost.pick_rate(rates, s, "tf32", 1024, 513_000)[1] == "extrapolated"
    assert paper_cost.pick_rate(rates, _spec("keynet", "S", n_keys=2_600_000), "tf32", 4096,
                                513_000)[:2] == (2e14, "extrapolated")  # nearest in parameters: M
    assert paper_cost.pick_rate(rates, _spec("keynet", "L"), "tf32", 4096, 513_000)[:2] == (2e14, "extrapolated")


def test_a_row_measured_at_another_width_is_not_the_run_itself(tmp_path):
    """A table measured under another width rule: same size, depth, n_x and c, other model."""
    spec = _spec("supportnet", "S")
    rates = _rates(tmp_path, [_row(spec, width=spec.width - 56)])
    assert paper_cost.pick_rate(rates, spec, "tf32", 4096, 513_000)[1] == "extrapolated"


def test_cuda_graph_rows_are_preferred_and_a_missing_model_is_named(tmp_path):
    s, m = _spec("supportnet", "S"), _spec("supportnet", "M")
    rates = _rates(tmp_path, [_row(s, flops=1e14), _row(m, flops=3e14, graph=True)])
    assert paper_cost.pick_rate(rates, s, "tf32", 4096, 513_000)[:2] == (3e14, "extrapolated")
    with pytest.raises(InputError, match="no measured supportnet rate in bf16"):
        paper_cost.pick_rate(rates, s, "bf16", 4096, 513_000)
    with pytest.raises(InputError, match=r"c > 1"):
        paper_cost.pick_rate(rates, _spec("supportnet", "S", clusters=10), "tf32", 4096, 513_000)
