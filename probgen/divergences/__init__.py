"""Divergences and distances between distributions.

Closed forms (KL between Gaussians), Monte Carlo estimates from exact densities
(KL, Jensen–Shannon, any f-divergence), the f-divergence family with conjugates and
f-GAN activations, Wasserstein distances (exact 1-D, exact OT, sliced), and kernel
two-sample distances (MMD, energy distance). See docs/divergences.md.
"""

from probgen.divergences.closed_form import (
    KL_CLOSED_FORMS,
    NoClosedForm,
    kl_diagonal_gaussian,
    kl_divergence,
    kl_gaussian,
    register_kl,
)
from probgen.divergences.f_divergences import (
    F_DIVERGENCES,
    FDivergence,
    GANJensenShannon,
    JensenShannon,
    KullbackLeibler,
    PearsonChiSquared,
    ReverseKullbackLeibler,
    SquaredHellinger,
    TotalVariation,
    variational_bound,
)
from probgen.divergences.kernels import MMD_SCALES, energy_distance, median_bandwidth, mmd
from probgen.divergences.monte_carlo import (
    Density,
    f_divergence_monte_carlo,
    js_monte_carlo,
    kl_monte_carlo,
)
from probgen.divergences.transport import (
    sliced_wasserstein,
    wasserstein,
    wasserstein1_1d,
    wasserstein1_cdf,
    wasserstein_1d,
)

__all__ = [
    "F_DIVERGENCES",
    "KL_CLOSED_FORMS",
    "MMD_SCALES",
    "Density",
    "FDivergence",
    "GANJensenShannon",
    "JensenShannon",
    "KullbackLeibler",
    "NoClosedForm",
    "PearsonChiSquared",
    "ReverseKullbackLeibler",
    "SquaredHellinger",
    "TotalVariation",
    "energy_distance",
    "f_divergence_monte_carlo",
    "js_monte_carlo",
    "kl_diagonal_gaussian",
    "kl_divergence",
    "kl_gaussian",
    "kl_monte_carlo",
    "median_bandwidth",
    "mmd",
    "register_kl",
    "sliced_wasserstein",
    "variational_bound",
    "wasserstein",
    "wasserstein1_1d",
    "wasserstein1_cdf",
    "wasserstein_1d",
]
