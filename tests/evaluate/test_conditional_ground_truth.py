"""Conditional KLs and the class-conditional log Z(c) by AIS, against closed forms.

On the 8 Gaussians conditioned on their component, p(x | k) = N(μ_k, σ² I),
a model p_θ(x | k) = N(μ_k + δ, σ² I) has KL(p(·|k) ‖ p_θ(·|k)) =
KL(p_θ(·|k) ‖ p(·|k)) = ‖δ‖² / (2σ²) for every k, so both expected conditional
KLs equal it. A class-conditional quadratic energy E(x, k) = ‖x − m_k‖²/(2s²) +
b_k has Z(k) = (2πs²)^{D/2} e^{−b_k}, so its conditional NLL is exact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.data.toy import ToyDataset
from probgen.distributions import GaussianMixture
from probgen.distributions.conditional import ConditionalMixture
from probgen.evaluate.ais import AIS, sigmoid_schedule
from probgen.evaluate.suite import NLL, KLDataModel, KLModelData, SmoothedKL, evaluate_model
from probgen.models.ebm import EBM
from probgen.sampling import MALA


def _data() -> ToyDataset:
    return ToyDataset("8gaussians", condition="component", n_test=4000, n_validation=64)


def test_expected_conditional_kls_equal_the_closed_form_of_a_shifted_model() -> None:
    data = _data()
    truth = data.truth
    delta = torch.tensor([0.03, -0.04])
    shifted = ConditionalMixture(
        GaussianMixture(truth.weights, truth.means + delta, truth.covariances)
    )
    sigma2 = float(truth.covariances[0, 0, 0])
    exact = float(delta.square().sum()) / (2 * sigma2)
    results = evaluate_model(
        shifted,
        data,
        n_samples=4000,
        generator=torch.Generator().manual_seed(0),
        metrics=[KLDataModel(), KLModelData(), SmoothedKL()],
    )
    for name in ("kl_data_model", "kl_model_data"):
        estimate = results[name]
        assert estimate.kind == "exact"
        assert abs(estimate.value - exact) < 4 * estimate.stderr, (name, estimate, exact)
        assert estimate.stderr < exact / 3  # the check separates the KL from 0
    assert "per condition" in results.skipped["kl_model_data_smoothed"]
    same = evaluate_model(truth, data, n_samples=500, metrics=[KLDataModel(), KLModelData()])
    assert same["kl_data_model"].value == 0.0 and same["kl_model_data"].value == 0.0


class ClassQuadratic(nn.Module):
    """E(x, h) = ‖x − M h‖² / (2 s²) + b·h for one-hot h: N(m_k, s² I) up to e^{−b_k}."""

    def __init__(self, means: Tensor, offsets: Tensor, scale: float) -> None:
        super().__init__()
        self.means, self.offsets, self.scale = means, offsets, scale

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        centre = h @ self.means
        return 0.5 * (x - centre).square().sum(1) / self.scale**2 + h @ self.offsets


def test_conditional_nll_of_an_ebm_uses_log_z_per_class() -> None:
    data = _data()
    means, scale = data.truth.means.clone(), 0.5
    offsets = torch.linspace(-1.0, 2.0, 8)
    energy = ClassQuadratic(means, offsets, scale)
    ebm = EBM((2,), energy=energy, buffer_size=8, condition=ConditionSpec(classes=8))
    ebm.init = type(ebm.init)(torch.zeros(2), torch.tensor(3.0))
    ais = AIS(sigmoid_schedule(200), MALA, step_size=0.2, n_chains=128)
    results = evaluate_model(
        ebm, data, n_samples=16, generator=torch.Generator().manual_seed(1), metrics=[NLL(ais=ais)]
    )
    x, c = data.split("test"), data.conditions("test")
    log_z = math.log(2 * math.pi * scale**2) - offsets  # (8,), D = 2
    h = torch.nn.functional.one_hot(c, 8).double()
    exact_nll = float((energy(x, h) + log_z[c]).mean())
    counts = torch.bincount(c, minlength=8).double()
    exact_log_z = float((counts / counts.sum() * log_z).sum())
    nll, z = results["nll"], results["log_partition"]
    assert nll.kind == "estimate" and 0 < z.stderr < 0.06
    assert abs(z.value - exact_log_z) < 4 * z.stderr + 0.01  # AIS bias at 200 levels
    # the NLL is off by exactly the AIS error of the weighted log Z, and its standard
    # error is that of the per-row NLLs E(x_n, c_n) + log Z(c_n) with the AIS error added
    assert abs((nll.value - exact_nll) - (z.value - exact_log_z)) < 1e-9
    row_se = float((energy(x, h) + log_z[c]).std() / math.sqrt(len(x)))
    assert abs(nll.stderr - math.hypot(row_se, z.stderr)) < 0.05 * nll.stderr
