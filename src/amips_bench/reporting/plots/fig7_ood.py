"""Figure 7: natural against mapped IVF search under growing query noise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..results import at_flops
from . import style
from .fig4_6_ivf import load_sweeps
from .style import plt


def _gap_at_equal_flops(nat: pd.DataFrame, mapped: pd.DataFrame) -> pd.DataFrame:
    """natural − mapped MRR at the natural curve's FLOPs, mapped interpolated in log-FLOPs."""
    nat, mapped = nat.sort_values("flops_total"), mapped.sort_values("flops_total")
    lo, hi = mapped.flops_total.min(), mapped.flops_total.max()
    inside = nat[(nat.flops_total >= lo) & (nat.flops_total <= hi)]
    interp = at_flops(inside.flops_total, mapped.flops_total, mapped.mrr)
    return pd.DataFrame({"flops_total": inside.flops_total.values,
                         "gap": inside.mrr.values - interp})


def fig7_ood(csv_paths: list[str | Path], out_stem: str | Path) -> None:
    df = load_sweeps(csv_paths)
    agg = df.groupby(["std", "query", "budget"])[["mrr", "flops_total"]].mean().reset_index()
    stds = sorted(agg["std"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {s: cmap(i / max(1, len(stds) - 1)) for i, s in enumerate(stds)}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    rows = []
    for std in stds:
        nat = agg[(agg["std"] == std) & (agg["query"] == "natural")]
        mapped = agg[(agg["std"] == std) & (agg["query"] == "mapped")]
        for ax, sub in ((axes[0], nat), (axes[1], mapped)):
            sub = sub.sort_values("flops_total")
            ax.plot(sub.flops_total, sub.mrr, color=colors[std], marker="o", ms=3, label=f"std {std:g}")
        gap = _gap_at_equal_flops(nat, mapped)
        axes[2].plot(gap.flops_total, gap.gap, color=colors[std], marker="o", ms=3, label=f"std {std:g}")
        rows += [{"std": std, "flops_total": f, "gap_natural_minus_mapped": g}
                 for f, g in zip(gap.flops_total, gap.gap)]
    model = df[df["query"] == "mapped"].iloc[0]
    axes[0].set_title("natural query x")
    axes[1].set_title(f"mapped ŷ ({style.model_label(model['model'], model['size'], model['depth'])})")
    axes[2].set_title("gap natural − mapped at equal FLOPs\n(< 0: mapped is better)")
    axes[2].axhline(0, color="k", lw=0.6)
    for ax in axes:
        style.flops_axis(ax, 7)
    axes[0].set_ylabel("MRR of the exact top key (IVF, nprobe sweep)")
    axes[2].set_ylabel("MRR gap")
    axes[0].legend(frameon=False, title="query noise")
    fig.suptitle(f"Figure 7 — {df.dataset.iloc[0]}: search under growing query noise "
                 f"(exact targets recomputed for the noisy queries)", fontsize=9)
    fig.tight_layout()
    style.save_figure(fig, out_stem, agg.to_dict("records") + rows)
