"""Numbers stated in the paper, stored as data so our results can be printed beside them.

Table 1 (appendix A.1): seconds to process a batch of 4096 queries of dimension 384, averaged
over 100 runs, for the score and the gradient (predicted key) of SupportNet and KeyNet.
"""

from __future__ import annotations

#: dataset -> (n_keys as printed, {size: {(model, "score"|"grad"): seconds}})
TABLE1: dict[str, dict] = {
    "quora": {"n_keys_label": "513K", "rows": {
        "S": {("supportnet", "score"): 1.34e-3, ("supportnet", "grad"): 2.50e-3,
              ("keynet", "score"): 1.28e-3, ("keynet", "grad"): 1.29e-3},
        "M": {("supportnet", "score"): 2.18e-3, ("supportnet", "grad"): 4.08e-3,
              ("keynet", "score"): 2.13e-3, ("keynet", "grad"): 2.12e-3},
        "L": {("supportnet", "score"): 1.99e-3, ("supportnet", "grad"): 3.12e-3,
              ("keynet", "score"): 1.90e-3, ("keynet", "grad"): 1.90e-3}}},
    "nq": {"n_keys_label": "2.6M", "rows": {
        "S": {("supportnet", "score"): 4.56e-3, ("supportnet", "grad"): 8.64e-3,
              ("keynet", "score"): 4.46e-3, ("keynet", "grad"): 4.46e-3},
        "M": {("supportnet", "score"): 8.55e-3, ("supportnet", "grad"): 1.62e-2,
              ("keynet", "score"): 7.68e-3, ("keynet", "grad"): 7.69e-3},
        "L": {("supportnet", "score"): 7.08e-3, ("supportnet", "grad"): 1.23e-2,
              ("keynet", "score"): 6.00e-3, ("keynet", "grad"): 5.99e-3}}},
    "hotpotqa": {"n_keys_label": "5.2M", "rows": {
        "S": {("supportnet", "score"): 8.69e-3, ("supportnet", "grad"): 1.68e-2,
              ("keynet", "score"): 8.15e-3, ("keynet", "grad"): 8.15e-3},
        "M": {("supportnet", "score"): 1.59e-2, ("supportnet", "grad"): 3.05e-2,
              ("keynet", "score"): 1.49e-2, ("keynet", "grad"): 1.49e-2},
        "L": {("supportnet", "score"): 3.14e-2, ("supportnet", "grad"): 5.96e-2,
              ("keynet", "score"): 2.85e-2, ("keynet", "grad"): 2.86e-2}}},
}

#: grad/score ratio ranges over the paper's Table 1 (machine-independent comparison).
TABLE1_RATIO_RANGE = {"supportnet": (1.57, 1.93), "keynet": (0.99, 1.01)}


def table1_seconds(dataset: str, size: str, model: str, kind: str) -> float | None:
    entry = TABLE1.get(dataset)
    if entry is None or size not in entry["rows"]:
        return None
    return entry["rows"][size].get((model, kind))


#: keys of each dataset as the paper counts them (§4.1: after the official embedding script).
PAPER_KEY_COUNTS = {"fiqa": 52_000, "quora": 513_000, "nq": 2_600_000, "hotpotqa": 5_200_000}
