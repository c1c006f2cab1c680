"""Where a number came from: package versions, the git state, the device and CPU, written
beside every result table."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any


def package_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour a number depends on."""
    from importlib import metadata

    names = ["amips-bench", "torch", "numpy", "faiss-cpu", "faiss-gpu", "fvcore",
             "sentence-transformers", "beir", "snakemake", "pandas", "matplotlib"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state() -> dict[str, Any]:
    """The commit of this checkout and whether it has uncommitted changes ("unknown" outside git),
    recorded next to every number so a result names the code that made it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {"git_commit": git("rev-parse", "HEAD"),
            "git_dirty": git("status", "--porcelain") not in ("", "unknown")}


def device_name(device: Any) -> str:
    """Human-readable name of a torch device: the GPU model, or the CPU model and thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu:{cpu_model()} ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
