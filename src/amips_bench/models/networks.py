"""SupportNet (ICNN support function, key = gradient) and KeyNet (direct key regression).

Both share one trunk (paper §3.1):
    z_1     = σ(W_0^x x + b_0)
    z_{i+1} = σ(W_i^z z_i + [W_i^x x] + b_i)      (x re-injected at n_x of the L−1 later layers)
    out     = W_L z_L + b_L                        (c outputs, or c·d for KeyNet)
with optional residual blocks z_{i+1} = z_i + σ(...). All input projections W^x are stacked
into one matrix so a single GEMM computes them; the parameter count is unchanged.

Width h is solved for a budget ρ·n·d by the paper's eq. 3.3 (dominant terms only, the default)
or, as an alternative reading, from the full parameter count; see `solve_width`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import InputError
from ..core.runs import MODELS, SIZES
from ..core.storage import atomic_path, read_file

WIDTH_RULES = ("paper", "full")
#: how SupportNet keeps W^z >= 0: not at all after a non-negative start (the official code's
#: identity rectifier), the paper's penalty Σ||ReLU(−W^z)||², or exact clipping after each step
CONVEXITY_MODES = ("none", "penalty", "clip")
#: SupportNet's initialisation (see `init_supportnet_`)
INITS = ("principled", "official_hidden", "plain", "unit_variance")
#: initialisations renamed since (old -> new): a saved model with the old name loads as the new
RENAMED_INITS = {"hoedt": "unit_variance", "official": "official_hidden"}
#: inputs the principled initialisation passes through the layers to centre their biases
CENTRING_PROBES = 4096


# --------------------------------------------------------------------------- sizing


def injection_layers(depth: int, n_x: int) -> list[int]:
    """Hidden layers (1..L−1) that re-inject x: n_x of them, evenly spaced, ending at L−1."""
    if n_x == 0:
        return []
    return sorted({math.ceil(j * (depth - 1) / n_x) for j in range(1, n_x + 1)})


def parameter_count(d: int, width: int, depth: int, n_x: int, d_out: int) -> int:
    """Full count of docs/architecture.md §3: input projections, hidden, output, biases."""
    return (1 + n_x) * d * width + (depth - 1) * width ** 2 + width * d_out + depth * width + d_out


def paper_width_terms(d: int, width: int, depth: int, n_x: int) -> int:
    """The dominant terms of eq. 3.3: (L−1)·h² + (1+n_x)·d·h (no output layer, no biases)."""
    return (depth - 1) * width ** 2 + (1 + n_x) * d * width


def solve_width(budget: float, d: int, depth: int, n_x: int, d_out: int, multiple: int = 8,
                rule: str = "paper") -> int:
    """Constant width h for a parameter budget ρ·n·d, a multiple of 8.

    rule "paper" (eq. 3.3 of the paper): h solves (L−1)·h² + (1+n_x)·d·h = budget, rounded to
    the nearest multiple of 8 (halves round up); the output layer and the biases are not
    counted, so a KeyNet with c·d outputs has the width of the SupportNet of the same size.
    rule "full": the multiple of 8 whose full parameter count (output layer and biases
    included) is closest to the budget; it makes clustered KeyNets about half as wide.
    """
    if rule not in WIDTH_RULES:
        raise InputError(f"width_rule: unknown rule {rule!r}; expected one of {WIDTH_RULES}")
    a = depth - 1
    if rule == "paper":
        b, c = (1 + n_x) * d, -budget
    else:
        b, c = (1 + n_x) * d + d_out + depth, d_out - budget
    exact = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) if a > 0 else -c / b
    if exact < multiple:
        raise InputError(f"size: a budget of {budget:,.0f} parameters gives width {exact:.1f} < "
                         f"{multiple} (depth {depth}, n_x {n_x}, {d_out} outputs); "
                         f"use a larger size or fewer layers")
    if rule == "paper":
        return max(multiple, int(math.floor(exact / multiple + 0.5)) * multiple)
    lower = max(multiple, int(exact // multiple) * multiple)
    candidates = [lower, lower + multiple]
    return min(candidates, key=lambda h: abs(parameter_count(d, h, depth, n_x, d_out) - budget))


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; stored inside model.pt."""

    model: str
    d: int
    n_keys: int
    size: str
    depth: int
    n_x: int
    n_clusters: int = 1
    residual: bool = False
    convexity: str = "penalty"  # the schema's grid default (benchmarks/supportnet_ablation.py)
    width_rule: str = "paper"
    init: str = "principled"  # SupportNet's initialisation, one of INITS
    alpha: float = 0.1
    beta: float = 20.0
    rho: float = field(default=0.0)
    width: int = field(default=0)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"model: unknown model {self.model!r}; expected one of {MODELS}")
        if self.size not in SIZES:
            raise InputError(f"size: unknown size {self.size!r}; expected one of {list(SIZES)}")
        if self.depth < 2:
            raise InputError(f"depth: must be >= 2, got {self.depth}")
        if not 0 <= self.n_x <= self.depth - 1:
            raise InputError(f"n_x: must lie in [0, depth - 1] = [0, {self.depth - 1}], got {self.n_x}")
        if self.n_clusters < 1:
            raise InputError(f"clusters: must be >= 1, got {self.n_clusters}")
        if self.convexity not in CONVEXITY_MODES:
            raise InputError(f"convexity: unknown mode {self.convexity!r}; expected {CONVEXITY_MODES}")
        if self.init not in INITS:
            raise InputError(f"init: unknown initialisation {self.init!r}; expected one of {INITS}")
        if self.width_rule not in WIDTH_RULES:
            raise InputError(f"width_rule: unknown rule {self.width_rule!r}; expected one of "
                             f"{WIDTH_RULES}")
        self.rho = SIZES[self.size]
        if self.width == 0:
            self.width = solve_width(self.budget, self.d, self.depth, self.n_x, self.d_out,
                                     rule=self.width_rule)

    @property
    def d_out(self) -> int:
        # a scalar per cluster whose gradient is the key, or the key itself
        return self.n_clusters if MODEL_KINDS[self.model].key_is_gradient else self.n_clusters * self.d

    @property
    def budget(self) -> float:
        return self.rho * self.n_keys * self.d

    @property
    def n_parameters(self) -> int:
        """Parameters of the model this spec builds: its width's full count, output layer
        included (under the paper's rule a clustered KeyNet's c·d outputs exceed the budget)."""
        return parameter_count(self.d, self.width, self.depth, self.n_x, self.d_out)

    @property
    def name(self) -> str:
        return f"{self.model}_{self.size}_L{self.depth}_nx{self.n_x}_c{self.n_clusters}"

    def row_fields(self) -> dict:
        """The columns that name this model in every result table."""
        return {"model": self.model, "size": self.size, "depth": self.depth, "n_x": self.n_x}

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- building blocks


class SoftLeakyReLU(nn.Module):
    """σ(x) = αx + (1−α)/β · log(1 + e^{βx}): convex, increasing, leaky ReLU as β → ∞."""

    def __init__(self, alpha: float = 0.1, beta: float = 20.0) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + (1.0 - self.alpha) * F.softplus(x, beta=self.beta)


class Trunk(nn.Module):
    """The shared constant-width network; `nonneg` marks the W^z (and output) weights of an ICNN."""

    def __init__(self, d: int, width: int, depth: int, n_x: int, d_out: int, *,
                 residual: bool = False, alpha: float = 0.1, beta: float = 20.0) -> None:
        super().__init__()
        self.depth, self.width, self.residual = depth, width, residual
        self.inject = injection_layers(depth, n_x)
        self.input_proj = nn.Linear(d, (1 + len(self.inject)) * width, bias=False)
        self.bias0 = nn.Parameter(torch.zeros(width))
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.out = nn.Linear(width, d_out)
        self.act = SoftLeakyReLU(alpha, beta)
        self._slot = {layer: k + 1 for k, layer in enumerate(self.inject)}

    def z_weights(self) -> list[torch.Tensor]:
        """Weights acting on hidden states: the ones an ICNN keeps non-negative."""
        return [layer.weight for layer in self.hidden] + [self.out.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden_states(x)[-1][1])

    def hidden_states(self, x: torch.Tensor, adjust: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pre-activation, state) of hidden layers 1..L: what `live_fractions` and the
        principled initialisation look at. `adjust(i, pre)`, if given, may replace the
        pre-activation of layer i ≥ 2 before it is activated (one pass, layer by layer)."""
        projections = self.input_proj(x)
        if self.inject:
            projections = projections.split(self.width, dim=-1)
            pre = projections[0] + self.bias0
        else:
            pre = projections + self.bias0
        z = self.act(pre)
        states = [(pre, z)]
        for i, layer in enumerate(self.hidden, start=1):
            pre = layer(z)
            if i in self._slot:
                pre = pre + projections[self._slot[i]]
            if adjust is not None:
                pre = adjust(i, pre)
            z = z + self.act(pre) if self.residual else self.act(pre)
            states.append((pre, z))
        return states

    @torch.no_grad()
    def live_fractions(self, x: torch.Tensor) -> list[float]:
        """Fraction of positive pre-activations in each hidden layer 1..L on inputs x: near 0
        is a layer of dead units, where the network is nearly linear."""
        return [float((pre > 0).float().mean()) for pre, _ in self.hidden_states(x)]


def lognormal_moments(fan_in: int, *, corr: float = 0.5, alpha: float = 0.1) -> tuple[float, float, float]:
    """(log-mean, log-std, squared mean) of Hoedt & Klambauer's (2023) log-normal weights of a
    non-negative layer: they keep the variance and correlation of its pre-activations at a fixed
    point (correlation `corr`, an activation of negative slope `alpha`)."""
    mix = math.sqrt(1 - corr ** 2) + corr * math.acos(-corr)
    corr_term = fan_in * (math.pi - fan_in + (fan_in - 1) * mix) / (2 * math.pi)
    mean_sq = corr / corr_term
    variance = (2.0 / (1.0 + alpha ** 2)) * (1.0 - corr) / fan_in
    second_moment = math.log(mean_sq + variance)
    log_mean = math.log(mean_sq) - second_moment / 2
    return log_mean, math.sqrt(second_moment - math.log(mean_sq)), mean_sq


def init_convex_(weight: torch.Tensor, bias: torch.Tensor | None, *, corr: float = 0.5,
                 var: float = 1.0, alpha: float = 0.1, bias_sign: float = -1.0) -> None:
    """Hoedt & Klambauer (2023) initialisation of a non-negative layer: log-normal weights and
    the constant bias ±fan_in·sqrt(mean_sq·var/2π) derived for inputs of variance `var`
    (their centring bias is negative; ott-jax's fixed-point variant, which the official code
    calls, gives it a positive sign)."""
    log_mean, log_std, mean_sq = lognormal_moments(weight.shape[1], corr=corr, alpha=alpha)
    with torch.no_grad():
        weight.normal_(log_mean, log_std).exp_()
        if bias is not None:
            bias.fill_(bias_sign * weight.shape[1] * math.sqrt(mean_sq * var / (2 * math.pi)))


@torch.no_grad()
def centre_biases_(trunk: Trunk, probes: int = CENTRING_PROBES) -> None:
    """Set each hidden layer's bias so that half of its pre-activations are positive on
    unit-norm inputs passed through the layers below (one constant per layer, as Hoedt's bias;
    the median rather than the mean, since the log-normal weights skew the pre-activations:
    centred on their mean, the deep layers of a depth-16 network keep under 10 % live).

    Hoedt's analytic bias assumes unit-variance inputs; a query of unit norm has coordinates of
    variance 1/d, and the soft leaky ReLU adds log 2/β to every unit at that scale, so the
    analytic bias leaves every unit dead (tests/test_models.py). The probes are isotropic
    unit vectors drawn from torch's global generator (the run's seed decides them)."""
    x = torch.randn(probes, trunk.input_proj.in_features)
    x = x / x.norm(dim=-1, keepdim=True)

    def centre(i: int, pre: torch.Tensor) -> torch.Tensor:
        shift = pre.median()
        trunk.hidden[i - 1].bias.sub_(shift)
        return pre - shift

    trunk.hidden_states(x, adjust=centre)


def init_supportnet_(trunk: Trunk, init: str, alpha: float) -> None:
    """SupportNet's initialisation (every variant keeps W^z ≥ 0 at the start).

    principled: Hoedt & Klambauer's log-normal W^z, biases centred on unit-norm inputs
        (`centre_biases_`): about half of every hidden layer's units are active.
    official_hidden: the hidden layers as the official code initialises ott-jax's ICNN
        (principled_init, identity rectifier): the fixed-point log-normal W^z for a ReLU-like
        activation with its positive bias, LeCun-normal W^x and a zero first bias, on this
        suite's architecture (a linear output layer without x re-injected into it, its W^z
        from the slope-1 moments). It is not the official network, whose output layer also
        takes x and is initialised otherwise. On unit-norm queries nearly every unit is on.
    plain: |PyTorch's default uniform| / √fan_in, zero-mean uniform biases.
    unit_variance: Hoedt's analytic bias for unit-variance inputs (an earlier default): on
        unit-norm queries it leaves every hidden unit dead.
    """
    if init not in INITS:
        raise InputError(f"init: unknown initialisation {init!r}; expected one of {INITS}")
    with torch.no_grad():
        if init == "plain":
            for w in trunk.z_weights():
                w.abs_().div_(math.sqrt(w.shape[1]))
            return
        if init == "official_hidden":
            nn.init.normal_(trunk.input_proj.weight, std=1 / math.sqrt(trunk.input_proj.in_features))
            trunk.bias0.zero_()
            for layer in trunk.hidden:
                init_convex_(layer.weight, layer.bias, alpha=0.0, bias_sign=1.0)
            init_convex_(trunk.out.weight, None, alpha=1.0)
            trunk.out.bias.zero_()
            return
        for layer in trunk.hidden:
            init_convex_(layer.weight, layer.bias, alpha=alpha)
        init_convex_(trunk.out.weight, None, alpha=alpha)
        trunk.out.bias.zero_()
        if init == "principled":
            centre_biases_(trunk)


# --------------------------------------------------------------------------- models


def trunk_for(spec: ModelSpec, model: str) -> Trunk:
    """The shared MLP trunk of a `model` (supportnet or keynet) spec; an error for the other."""
    if spec.model != model:
        raise InputError(f"{model} built from a {spec.model} spec")
    return Trunk(spec.d, spec.width, spec.depth, spec.n_x, spec.d_out,
                 residual=spec.residual, alpha=spec.alpha, beta=spec.beta)


class SupportNet(nn.Module):
    """f(x) ≈ σ_{Y_j}(x) for c clusters: an ICNN g inside the homogeniser H[g](x) = ||x|| g(x/||x||).

    The predicted key of cluster j is ∇_x f(x)_j (see `predict_keys`). H makes f positively
    1-homogeneous whatever g is. Note that H[g] of a convex g is not convex in general
    (g ≡ −1 gives −||x||); convexity is a property of g, which clipping guarantees.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = trunk_for(spec, "supportnet")
        init_supportnet_(self.trunk, spec.init, spec.alpha)

    def potential(self, u: torch.Tensor) -> torch.Tensor:
        """The un-homogenised ICNN g(u), [B, c]."""
        return self.trunk(u)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores f(x) = ||x|| g(x/||x||), [B, c]."""
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return norm * self.trunk(x / norm)

    def predict_keys(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """[B, c, d]: row j is ∇_x f(x)_j (the Jacobian rows for c > 1)."""
        return scores_and_keys(self, x, create_graph=create_graph)[1]

    def negative_fraction(self) -> float:
        """Fraction of the W^z and output weights that violate the ICNN constraint."""
        weights = self.trunk.z_weights()
        negative = sum(int((w < 0).sum()) for w in weights)
        return negative / sum(w.numel() for w in weights)

    def convexity_penalty(self) -> torch.Tensor:
        """Σ ||ReLU(−W^z)||² (paper §2)."""
        return sum(F.relu(-w).pow(2).sum() for w in self.trunk.z_weights())

    @torch.no_grad()
    def clip_(self) -> None:
        """Exact projection onto W^z ≥ 0: guarantees convexity of g."""
        for w in self.trunk.z_weights():
            w.clamp_(min=0.0)


class KeyNet(nn.Module):
    """F(x) ≈ y*_j(x): the same trunk with c·d outputs reshaped to [c, d]; score <F(x)_j, x>."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = trunk_for(spec, "keynet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted keys [B, c, d]."""
        return self.trunk(x).view(x.shape[0], self.spec.n_clusters, self.spec.d)

    def predict_keys(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return self(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """<F(x)_j, x>, [B, c]."""
        return torch.einsum("bcd,bd->bc", self(x), x)


@dataclass(frozen=True)
class ModelKind:
    """A model of the registry: its network and how the suite shows it. Its name is in the
    schema's model list (core.config.MODELS), the run-name grammar's."""

    name: str
    label: str
    network: type[nn.Module]
    key_is_gradient: bool  # SupportNet's key is ∇f(x), KeyNet's its output
    color: str
    linestyle: str


#: name -> model, in the order of the figures
MODEL_KINDS: dict[str, ModelKind] = {
    "supportnet": ModelKind("supportnet", "SupportNet", SupportNet, True, "#9467bd", "--"),
    "keynet": ModelKind("keynet", "KeyNet", KeyNet, False, "k", "-"),
}


def build_model(spec: ModelSpec) -> nn.Module:
    return MODEL_KINDS[spec.model].network(spec)


def scores_and_keys(model: nn.Module, x: torch.Tensor,
                    create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [B, c], keys [B, c, d]) for either model.

    SupportNet: keys are the input gradients of each output, obtained in one batched backward
    (is_grads_batched) rather than c separate ones; `create_graph` keeps them differentiable
    for the gradient-matching loss. The input is cloned so autograd.grad never sees a leaf
    (which FlopCounterMode cannot handle).
    """
    if isinstance(model, KeyNet):
        with torch.set_grad_enabled(create_graph):
            keys = model(x)
        return torch.einsum("bcd,bd->bc", keys, x), keys
    leaf = x.detach().requires_grad_(True)
    inp = leaf.clone()
    with torch.enable_grad():
        scores = model(inp)
        c = scores.shape[1]
        if c == 1:
            (grad,) = torch.autograd.grad(scores.sum(), inp, create_graph=create_graph)
            keys = grad.unsqueeze(1)
        else:
            eye = torch.eye(c, device=x.device, dtype=scores.dtype)
            basis = eye[:, None, :].expand(c, x.shape[0], c)
            (grad,) = torch.autograd.grad(scores, inp, grad_outputs=basis,
                                          is_grads_batched=True, create_graph=create_graph)
            keys = grad.permute(1, 0, 2)
    if not create_graph:
        scores, keys = scores.detach(), keys.detach()
    return scores, keys


def model_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Cluster scores without computing keys where the model allows it (SupportNet: forward only)."""
    if isinstance(model, KeyNet):
        return model.scores(x)
    return model(x)


def save_model(path, model: nn.Module, extra: dict | None = None) -> None:

    payload = {"spec": model.spec.to_dict(), "state_dict": model.state_dict(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    payload = read_file(path, lambda p: torch.load(p, map_location=device, weights_only=False),
                        kind="model", remedy="re-run the train stage that writes it")
    # models saved before the width rule, initialisation and convexity modes were recorded:
    # the full count, Hoedt's unit-variance initialisation, the penalty
    saved = {"width_rule": "full", "init": "unit_variance", "convexity": "penalty", **payload["spec"]}
    saved["init"] = RENAMED_INITS.get(saved["init"], saved["init"])
    spec = ModelSpec(**saved)
    model = build_model(spec).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
