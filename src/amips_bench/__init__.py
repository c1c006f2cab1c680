"""amips-bench: reproducible benchmark suite for amortized maximum inner product search."""

__version__ = "0.1.0"
