"""Numbers stated in the paper, stored as data so our results can be printed beside them.

Table 1 (appendix A.1): seconds to process a batch of 4096 queries of dimension 384, averaged
over 100 runs, for the score and the gradient (predicted key) of SupportNet and KeyNet.
"""

from __future__ import annotations

#: Table 1 as printed: seconds per batch, one line per dataset and size
_TABLE1_PRINTED = """
dataset   keys  size  supportnet_score  supportnet_grad  keynet_score  keynet_grad
quora     513K  S     1.34e-3           2.50e-3          1.28e-3       1.29e-3
quora     513K  M     2.18e-3           4.08e-3          2.13e-3       2.12e-3
quora     513K  L     1.99e-3           3.12e-3          1.90e-3       1.90e-3
nq        2.6M  S     4.56e-3           8.64e-3          4.46e-3       4.46e-3
nq        2.6M  M     8.55e-3           1.62e-2          7.68e-3       7.69e-3
nq        2.6M  L     7.08e-3           1.23e-2          6.00e-3       5.99e-3
hotpotqa  5.2M  S     8.69e-3           1.68e-2          8.15e-3       8.15e-3
hotpotqa  5.2M  M     1.59e-2           3.05e-2          1.49e-2       1.49e-2
hotpotqa  5.2M  L     3.14e-2           5.96e-2          2.85e-2       2.86e-2
"""


def _table1(printed: str) -> dict[str, dict]:
    """dataset -> {"n_keys_label": keys as printed, "rows": {size: {(model, "score"|"grad"): s}}}."""
    header, *lines = printed.split("\n")[1:-1]
    columns = header.split()[3:]
    table: dict[str, dict] = {}
    for line in lines:
        dataset, keys, size, *seconds = line.split()
        entry = table.setdefault(dataset, {"n_keys_label": keys, "rows": {}})
        entry["rows"][size] = {tuple(c.rsplit("_", 1)): float(s) for c, s in zip(columns, seconds)}
    return table


TABLE1: dict[str, dict] = _table1(_TABLE1_PRINTED)

#: grad/score ratio ranges over the paper's Table 1 (machine-independent comparison).
TABLE1_RATIO_RANGE = {"supportnet": (1.57, 1.93), "keynet": (0.99, 1.01)}


def table1_seconds(dataset: str, size: str, model: str, kind: str) -> float | None:
    entry = TABLE1.get(dataset)
    if entry is None or size not in entry["rows"]:
        return None
    return entry["rows"][size].get((model, kind))


#: keys of each dataset as the paper counts them (§4.1: after the official embedding script).
PAPER_KEY_COUNTS = {"fiqa": 52_000, "quora": 513_000, "nq": 2_600_000, "hotpotqa": 5_200_000}
