"""The embedded synthetic dataset: keys and queries that behave like sentence embeddings.

Real retrieval embeddings are not isotropic Gaussians. Passages form a hierarchy of topics and
tight groups of near-paraphrases on an anisotropic spectrum; questions are shorter texts that
point at one passage but also at what its neighbours share, with a style of their own. The
generator reproduces that structure, and its parameters are calibrated so that the statistics
of `realism.REAL_MINILM_REFERENCE` (measured on real all-MiniLM-L6-v2 embeddings) land within
±30 % at the default size:

keys     y = normalise(μ·u₀ + domain + topic + micro + s_key·g_key), every level a draw
         g ~ N(0, Σ) with a power-law spectrum λ_i ∝ i^(−α) on a random basis; domains and
         topics of Zipf popularity, micro-groups of log-normal size inside topics.
queries  pick a micro-group (only `queried_fraction` of them are ever asked about; weight ∝
         size × log-normal popularity), a source key y_s inside it and a specificity
         w ~ Beta; x = normalise(w·y_s + (1−w)·ĉ_micro + s_q·ε_q + b·v), with ε_q partly from
         a flatter spectrum of its own, partly along the keys' axes, and v a shared
         "question style" direction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import InputError
from ..core.schema import schema_defaults

_SCHEMA = schema_defaults("dataset", "synthetic")  # size and seed: the schema's defaults


@dataclass(frozen=True)
class SyntheticParams:
    n_keys: int = _SCHEMA["n_keys"]
    n_queries: int = _SCHEMA["n_queries"]  # queries/keys = 0.41, the ratio of the real corpus
    d: int = _SCHEMA["d"]
    seed: int = _SCHEMA["seed"]
    spectrum_alpha: float = 0.6  # key covariance eigenvalues ∝ i^-alpha
    mean_weight: float = 0.2  # common direction shared by all keys (embedding anisotropy)
    n_domains: int = 12  # broad subject areas of Zipf size: what makes k-means cells uneven
    domain_zipf: float = 1.5
    domain_scale: float = 0.4
    keys_per_topic: float = 10.0
    topic_zipf: float = 0.25  # topic popularity ∝ rank^-zipf
    topic_scale: float = 1.0
    keys_per_micro: float = 6.0  # tight groups of near-paraphrases
    micro_scale: float = 0.677
    micro_size_sigma: float = 0.65  # log-normal spread of micro-group sizes
    key_scale: float = 0.644
    queried_fraction: float = 0.45  # share of micro-groups that anyone asks about
    popularity_sigma: float = 0.2  # log-normal spread of their popularity
    specificity_mean: float = 0.4  # Beta mean of the weight on the source key itself
    specificity_concentration: float = 0.875
    query_noise: float = 1.154
    query_noise_spread: float = 0.324  # log-normal spread of the per-query noise level
    query_spectrum_alpha: float = 0.371  # spectrum of the query-specific noise (flatter)
    query_noise_on_key_axes: float = 0.7  # share of that noise variance along the keys' axes
    style_weight: float = 0.3  # shared "question style" direction

    def __post_init__(self) -> None:
        if self.n_keys < 2 or self.n_queries < 1 or self.d < 2:
            raise InputError(f"synthetic: need n_keys >= 2, n_queries >= 1, d >= 2; got "
                             f"{self.n_keys}, {self.n_queries}, {self.d}")

    def to_dict(self) -> dict:
        return asdict(self)


def _power_basis(rng: np.random.Generator, d: int, alpha: float) -> np.ndarray:
    """A random orthonormal basis scaled so that g = z @ B.T has covariance ∝ diag(i^-alpha), E||g||² = 1."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spectrum = np.arange(1, d + 1, dtype=np.float64) ** (-alpha)
    return (q * np.sqrt(spectrum / spectrum.sum())).astype(np.float32)


def _draw(rng: np.random.Generator, rows: int, basis: np.ndarray, chunk: int = 262_144) -> np.ndarray:
    out = np.empty((rows, basis.shape[0]), dtype=np.float32)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        out[start:stop] = rng.standard_normal((stop - start, basis.shape[0]), dtype=np.float32) @ basis.T
    return out


def _zipf(count: int, exponent: float) -> np.ndarray:
    weight = np.arange(1, count + 1, dtype=np.float64) ** (-exponent)
    return weight / weight.sum()


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


KEY_CHUNK = 262_144  # keys are drawn, normalised and handed out this many rows at a time


class SyntheticDraw:
    """One seeded draw of the dataset in two phases, so that the keys never need to be in
    memory at once: `key_chunks()` hands them out in chunks (to a file, say), then
    `queries(key_rows)` reads back the few source keys the questions point at.

    The random stream is consumed in one fixed order (structure, keys, queries), so the bytes
    do not depend on where the keys went.
    """

    def __init__(self, params: SyntheticParams) -> None:
        p = self.params = params
        self.rng = rng = np.random.default_rng(p.seed)
        d = p.d
        self.key_basis = _power_basis(rng, d, p.spectrum_alpha)
        mean_dir = rng.standard_normal(d).astype(np.float32)
        mean_dir /= np.linalg.norm(mean_dir)

        self.n_topics = n_topics = max(1, round(p.n_keys / p.keys_per_topic))
        self.n_micro = n_micro = max(1, round(p.n_keys / p.keys_per_micro))
        domains = p.domain_scale * _draw(rng, p.n_domains, self.key_basis)
        domain_of_topic = rng.choice(p.n_domains, size=n_topics, p=_zipf(p.n_domains, p.domain_zipf))
        # in place, with the operands of centre + scale·draw (IEEE addition commutes, so the
        # bytes are those of the plain expression): at 5.2M keys a temporary of the
        # micro-groups is 1.3 GB
        topics = _draw(rng, n_topics, self.key_basis)
        topics *= p.topic_scale
        topics += p.mean_weight * mean_dir + domains[domain_of_topic]
        micro_topic = rng.choice(n_topics, size=n_micro, p=_zipf(n_topics, p.topic_zipf))
        self.micro = _draw(rng, n_micro, self.key_basis)
        self.micro *= p.micro_scale
        self.micro += topics[micro_topic]
        size_weight = rng.lognormal(0.0, p.micro_size_sigma, size=n_micro)
        self.key_micro = rng.choice(n_micro, size=p.n_keys, p=size_weight / size_weight.sum())
        self._phase = "keys"

    def key_chunks(self) -> Iterator[np.ndarray]:
        """The unit-norm keys, in order, KEY_CHUNK rows at a time (float32)."""
        if self._phase != "keys":
            raise RuntimeError("synthetic: the keys of a draw can be drawn only once, first")
        self._phase = "drawing keys"
        p, basis = self.params, self.key_basis
        for start in range(0, p.n_keys, KEY_CHUNK):
            stop = min(p.n_keys, start + KEY_CHUNK)
            spread = self.rng.standard_normal((stop - start, p.d), dtype=np.float32) @ basis.T
            spread *= p.key_scale
            spread += self.micro[self.key_micro[start:stop]]
            yield _normalise(spread)
        self._phase = "queries"

    def queries(self, key_rows: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The unit-norm queries (float32); `key_rows(ids)` returns the keys at `ids`."""
        if self._phase != "queries":
            raise RuntimeError("synthetic: draw every key (key_chunks) before the queries")
        self._phase = "done"
        p, rng, n_micro = self.params, self.rng, self.n_micro
        query_basis = _power_basis(rng, p.d, p.query_spectrum_alpha)
        style = rng.standard_normal(p.d).astype(np.float32)
        style /= np.linalg.norm(style)
        sizes = np.bincount(self.key_micro, minlength=n_micro)
        asked = rng.random(n_micro) < p.queried_fraction
        popularity = sizes * rng.lognormal(0.0, p.popularity_sigma, size=n_micro) * asked
        if popularity.sum() == 0:
            raise InputError("synthetic: no micro-group receives queries; raise queried_fraction")
        source_micro = rng.choice(n_micro, size=p.n_queries, p=popularity / popularity.sum())
        members = np.argsort(self.key_micro, kind="stable")
        first = np.concatenate([[0], np.cumsum(sizes)])
        source_key = members[first[source_micro]
                             + (rng.random(p.n_queries) * sizes[source_micro]).astype(np.int64)]
        a = p.specificity_mean * p.specificity_concentration
        b = (1 - p.specificity_mean) * p.specificity_concentration
        w = rng.beta(a, b, size=(p.n_queries, 1)).astype(np.float32)
        centre = _normalise(self.micro[source_micro].copy())
        noise_level = (p.query_noise * rng.lognormal(0.0, p.query_noise_spread,
                                                     size=(p.n_queries, 1))).astype(np.float32)
        mix = p.query_noise_on_key_axes
        noise = (np.sqrt(1 - mix) * _draw(rng, p.n_queries, query_basis)
                 + np.sqrt(mix) * _draw(rng, p.n_queries, self.key_basis))
        queries = (w * key_rows(source_key) + (1 - w) * centre + noise_level * noise
                   + p.style_weight * style)
        return _normalise(queries).astype(np.float32, copy=False)

    def provenance(self) -> dict:
        return {"generator": "amips_bench.datasets.synthetic", "params": self.params.to_dict(),
                "n_topics": self.n_topics, "n_micro_groups": self.n_micro}


def generate(params: SyntheticParams) -> tuple[np.ndarray, np.ndarray, dict]:
    """(keys float32 [n, d], queries float32 [m, d], provenance) — both unit-norm, seeded, in
    memory (embeddings.write_synthetic streams the keys to disk instead)."""
    draw = SyntheticDraw(params)
    keys = np.empty((params.n_keys, params.d), dtype=np.float32)
    start = 0
    for chunk in draw.key_chunks():
        keys[start:start + len(chunk)] = chunk
        start += len(chunk)
    queries = draw.queries(lambda ids: keys[ids])
    return keys, queries, draw.provenance()
