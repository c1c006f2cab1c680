"""The training objectives of paper §3.2 against hand computation on a 3-key example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amips_bench.core.stage_settings import LossWeights
from amips_bench.models.losses import compute_loss
from amips_bench.models.networks import KeyNet, ModelSpec, SupportNet

KEYS = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, -0.8]])  # three unit keys in 2-D
X = np.array([[0.9, 0.3], [-0.2, 1.0], [-1.0, -0.5], [0.5, -0.9]])


def _targets():
    """y* and σ by hand: the key of largest inner product, and that inner product."""
    scores = X @ KEYS.T
    best = scores.argmax(axis=1)
    return KEYS[best], scores.max(axis=1)


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec(model=kind, d=2, n_keys=3, size="M", depth=3, n_x=1, width=8,
                     convexity="clip")
    model = (SupportNet if kind == "supportnet" else KeyNet)(spec).double()
    if kind == "supportnet":
        model.clip_()
    return model


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂x by central differences, one input coordinate at a time (no autograd)."""
    out = np.zeros_like(x)
    for j in range(x.shape[0]):
        e = np.zeros_like(x)
        e[j] = eps
        out[j] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


@pytest.mark.parametrize("kind", ["supportnet", "keynet"])
def test_losses_equal_the_papers_equations_by_hand(kind):
    """SupportNet: λ_score·mean (f − σ)² + λ_grad·mean ||∇f − y*||² with ∇f by finite
    differences; KeyNet: λ_key·mean ||F − y*||² + λ_consist·mean (<F, x> − σ)²."""
    model = _model(kind)
    weights = LossWeights(score=0.01, grad=1.0, key=1.0, consist=0.01, convex=0.0, key_reduction="sum")
    y_star, sigma = _targets()
    x = torch.from_numpy(X)
    loss, parts = compute_loss(model, x, torch.from_numpy(y_star)[:, None, :],
                               torch.from_numpy(sigma)[:, None], weights)

    def f(v: np.ndarray) -> float:
        with torch.no_grad():
            out = model(torch.from_numpy(v[None, :]))
        return float(out.reshape(-1)[0]) if kind == "supportnet" else out.numpy().reshape(-1)

    if kind == "supportnet":
        values = np.array([f(v) for v in X])
        grads = np.stack([_numeric_grad(f, v) for v in X])
        expected = (0.01 * np.mean((values - sigma) ** 2)
                    + 1.0 * np.mean(np.sum((grads - y_star) ** 2, axis=1)))
    else:
        keys = np.stack([f(v) for v in X])
        expected = (1.0 * np.mean(np.sum((keys - y_star) ** 2, axis=1))
                    + 0.01 * np.mean((np.sum(keys * X, axis=1) - sigma) ** 2))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_the_double_backward_reaches_the_parameters():
    """SupportNet's gradient-matching term depends on the weights through ∇_x f: its autograd
    gradient with respect to a weight equals the finite difference of the loss itself."""
    model = _model("supportnet")
    weights = LossWeights(score=0.0, grad=1.0, convex=0.0)  # only the ∇f term
    y_star, sigma = _targets()
    args = (torch.from_numpy(X), torch.from_numpy(y_star)[:, None, :],
            torch.from_numpy(sigma)[:, None], weights)
    loss, _ = compute_loss(model, *args)
    loss.backward()
    weight = model.trunk.hidden[0].weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    eps = 1e-6
    for index in [(0, 0), (3, 5), (7, 2)]:
        weight.data[index] += eps
        up = compute_loss(model, *args)[0].item()
        weight.data[index] -= 2 * eps
        down = compute_loss(model, *args)[0].item()
        weight.data[index] += eps
        assert float(weight.grad[index]) == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("kind", ["supportnet", "keynet"])
def test_mean_key_reduction_averages_the_key_term_over_coordinates_by_hand(kind):
    """key_reduction "mean" (the official code's squared_error(pred, target).mean()): the key
    term is the mean over queries, clusters and the d = 2 coordinates, i.e. the summed term / d,
    while the score / consistency term is unchanged."""
    model = _model(kind)
    y_star, sigma = _targets()
    x = torch.from_numpy(X)
    args = (x, torch.from_numpy(y_star)[:, None, :], torch.from_numpy(sigma)[:, None])
    _, summed = compute_loss(model, *args, LossWeights(convex=0.0, key_reduction="sum"))
    loss, meaned = compute_loss(model, *args, LossWeights(score=0.01, grad=1.0, key=1.0,
                                                          consist=0.01, convex=0.0,
                                                          key_reduction="mean"))
    with torch.no_grad():
        if kind == "supportnet":
            keys = np.stack([_numeric_grad(lambda v: float(model(torch.from_numpy(v[None]))[0, 0]), v)
                             for v in X])
            values = model(x).numpy()[:, 0]
        else:
            keys = model(x).numpy()[:, 0, :]
            values = np.sum(keys * X, axis=1)
    key_term = np.mean((keys - y_star) ** 2)  # over 4 queries × 2 coordinates
    score_term = np.mean((values - sigma) ** 2)
    key_name, score_name = ("grad_loss", "score_loss") if kind == "supportnet" else ("key_loss", "consist_loss")
    assert meaned[key_name].item() == pytest.approx(key_term, rel=1e-5)
    assert meaned[key_name].item() == pytest.approx(summed[key_name].item() / 2, rel=1e-9)
    assert meaned[score_name].item() == pytest.approx(summed[score_name].item(), rel=1e-12)
    assert loss.item() == pytest.approx(1.0 * key_term + 0.01 * score_term, rel=1e-5)


def test_an_unknown_key_reduction_is_refused_by_name():
    with pytest.raises(Exception, match="train.key_reduction: unknown reduction 'median'"):
        LossWeights(key_reduction="median")
