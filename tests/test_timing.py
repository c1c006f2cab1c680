"""Timing protocol and Table 1."""

from __future__ import annotations

import torch

from amips_bench.experiments.timing import table1_markdown, table1_rows, time_callable, time_interleaved


class FakeDevice:
    """Records the order of synchronisations, clock reads and work."""

    def __init__(self):
        self.events = []
        self.t = 0.0

    def synchronize(self):
        self.events.append("sync")

    def clock(self):
        self.events.append("clock")
        self.t += 1.0
        return self.t

    def work(self):
        self.events.append("work")


def _every_clock_read_follows_a_sync(events):
    reads = [i for i, e in enumerate(events) if e == "clock"]
    return reads and all(i > 0 and events[i - 1] == "sync" for i in reads)


def test_the_timer_synchronises_before_every_clock_read():
    dev = FakeDevice()
    timing = time_callable(dev.work, warmup=2, repeats=5, synchronize=dev.synchronize, clock=dev.clock)
    assert len(timing.seconds) == 5
    assert dev.events[:2] == ["work", "work"]  # warm-up, untimed
    assert _every_clock_read_follows_a_sync(dev.events)
    # and the work sits between the two reads of each measurement
    assert dev.events[2:7] == ["sync", "clock", "work", "sync", "clock"]


def test_interleaved_timer_synchronises_before_every_clock_read():
    dev = FakeDevice()
    a, b = time_interleaved([dev.work, dev.work], warmup=1, repeats=4, synchronize=dev.synchronize,
                            clock=dev.clock)
    assert len(a.seconds) == len(b.seconds) == 4
    assert dev.events.count("clock") == 16
    assert _every_clock_read_follows_a_sync(dev.events)


def test_table1_has_one_row_per_dataset_size_and_model():
    dev = FakeDevice()
    rows = table1_rows({"alpha": 3000, "quora": 4000}, sizes=["S", "M"], depth=3, n_x=1, batch=16,
                       repeats=2, warmup=1, device=torch.device("cpu"), d=32,
                       synchronize=dev.synchronize)
    keys = [(r["dataset"], r["size"], r["model"]) for r in rows]
    assert sorted(keys) == sorted((ds, s, m) for ds in ("alpha", "quora") for s in ("S", "M")
                                  for m in ("supportnet", "keynet"))
    assert dev.events.count("sync") == 8 * 2 * 2 * 2  # rows × (score, grad) × repeats × 2 reads
    quora = [r for r in rows if r["dataset"] == "quora" and r["size"] == "S"]
    assert all(r["paper_score_s"] is not None for r in quora)  # the paper's values beside ours
    md = table1_markdown(rows)
    assert md.count("\n| ") == 1 + len(rows)  # header + one line per row
    assert "grad/score" in md
