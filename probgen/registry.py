"""The one place that maps user-facing names (CLI, configs) to implementations.

Entries are ``"module:attribute"`` strings imported on first use, so listing
names is instant and a family's dependencies load only when it is chosen.
Adding a model, data set, metric or sampler is one line here.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from typing import Any

from probgen.core import ProbgenError

__all__ = ["DATASETS", "METRICS", "MODELS", "POSTERIORS", "SAMPLERS", "Registry", "UnknownName"]


class UnknownName(ProbgenError, KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """A named, lazily imported table of implementations of one kind.

    An entry is ``"module:attribute"`` or ``("module:attribute", {defaults})``;
    in the second form ``get`` returns the attribute with those keyword
    arguments bound (e.g. one ``ToyDataset`` class serves every 2-D shape).
    """

    def __init__(self, kind: str, entries: dict[str, str | tuple[str, dict[str, Any]]]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def target(self, name: str) -> str:
        """The ``module:attribute`` path registered under ``name``."""
        self._require(name)
        entry = self._entries[name]
        return entry if isinstance(entry, str) else entry[0]

    def get(self, name: str) -> Any:
        """Import and return the implementation registered under ``name``."""
        module, _, attr = self.target(name).partition(":")
        obj = getattr(importlib.import_module(module), attr)
        entry = self._entries[name]
        return obj if isinstance(entry, str) else functools.partial(obj, **entry[1])

    def _require(self, name: str) -> None:
        if name not in self._entries:
            raise UnknownName(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )


MODELS = Registry(
    "model",
    {
        "gaussian": "probgen.models.gaussian:GaussianModel",
        "realnvp": "probgen.models.flows:RealNVP",
        "maf": "probgen.models.flows:MAF",
        "nsf": "probgen.models.flows:NSF",
        "glow": "probgen.models.flows:Glow",
        "made": "probgen.models.autoregressive.made:MADEModel",
        "pixelcnn": "probgen.models.autoregressive.pixelcnn:PixelCNN",
        "transformer": "probgen.models.autoregressive.transformer:Transformer",
        "vae": "probgen.models.vae:VAE",
        "ddpm": "probgen.models.diffusion:DDPM",
        "score_sde": "probgen.models.diffusion:ScoreSDE",
        "flow_matching": "probgen.models.diffusion:FlowMatchingModel",
        "ensemble": "probgen.models.ensemble:Ensemble",
        "ebm": "probgen.models.ebm:EBM",
        "gan": "probgen.models.gan:GAN",
        "fgan": "probgen.models.gan:FGAN",
        "wgan": "probgen.models.gan:WGAN",
        "wgan_gp": "probgen.models.gan:WGANGP",
    },
)

DATASETS = Registry(
    "data set",
    {
        "8gaussians": ("probgen.data.toy:ToyDataset", {"shape": "8gaussians"}),
        "25gaussians": ("probgen.data.toy:ToyDataset", {"shape": "25gaussians"}),
        "checkerboard": ("probgen.data.toy:ToyDataset", {"shape": "checkerboard"}),
        "two_moons": ("probgen.data.toy:ToyDataset", {"shape": "two_moons"}),
        "swiss_roll": ("probgen.data.toy:ToyDataset", {"shape": "swiss_roll"}),
        "pinwheel": ("probgen.data.toy:ToyDataset", {"shape": "pinwheel"}),
        "rings": ("probgen.data.toy:ToyDataset", {"shape": "rings"}),
        "2spirals": ("probgen.data.toy:ToyDataset", {"shape": "2spirals"}),
        "digits": "probgen.data.digits:Digits",
        "mnist": "probgen.data.mnist:MNIST",
        "fashion_mnist": "probgen.data.mnist:FashionMNIST",
        "text": "probgen.data.text:TextCorpus",
        "tinyshakespeare": "probgen.data.text:TinyShakespeare",
        "sbi_gaussian_linear": (
            "probgen.data.simulation:SimulationDataset",
            {"simulator": "gaussian_linear"},
        ),
        "sbi_two_moons": ("probgen.data.simulation:SimulationDataset", {"simulator": "two_moons"}),
        "arrays": "probgen.data.arrays:load_arrays",
        "file": "probgen.data.userfiles:load_file",
    },
)

METRICS = Registry(
    "metric",
    {
        "nll": "probgen.evaluate.likelihood:nll",
        "bpd": "probgen.evaluate.likelihood:bits_per_dim",
        "mmd": "probgen.divergences:mmd",
        "energy_distance": "probgen.divergences:energy_distance",
        "sliced_wasserstein": "probgen.divergences:sliced_wasserstein",
        "fid": "probgen.evaluate.samples:frechet_distance",
        "kid": "probgen.evaluate.samples:kernel_inception_distance",
        "precision": "probgen.evaluate.samples:precision",
        "recall": "probgen.evaluate.samples:recall",
        "density": "probgen.evaluate.samples:density",
        "coverage": "probgen.evaluate.samples:coverage",
        "c2st": "probgen.evaluate.two_sample:c2st",
        "nats_per_char": "probgen.evaluate.text:CharacterNLL",
        "bits_per_char": "probgen.evaluate.text:CharacterNLL",
        **{f"distinct_{n}": ("probgen.evaluate.text:distinct_n", {"n": n}) for n in (1, 2, 3)},
        **{f"ngram_js_{n}": ("probgen.evaluate.text:ngram_js", {"n": n}) for n in (1, 2, 3)},
    },
)
"""Metric names for ``--metrics``; each is defined on some kinds of data (text metrics on
text only, ``probgen.cli.metrics.kinds_of``)."""

SAMPLERS: Registry = Registry(
    "sampler",
    {
        "langevin": "probgen.sampling:Langevin",
        "mala": "probgen.sampling:MALA",
        "hmc": "probgen.sampling:HMC",
        "annealed_langevin": "probgen.sampling:AnnealedLangevin",
        "ancestral": "probgen.models.diffusion:Ancestral",
        "ddim": "probgen.models.diffusion:DDIM",
        "euler_maruyama": "probgen.models.diffusion:EulerMaruyama",
        "predictor_corrector": "probgen.models.diffusion:PredictorCorrector",
        "probability_flow": "probgen.models.diffusion:ProbabilityFlow",
        "euler": "probgen.models.diffusion:Euler",
        "heun": "probgen.models.diffusion:Heun",
        "midpoint": "probgen.models.diffusion:Midpoint",
        "dpm_solver_2m": "probgen.models.diffusion:DPMSolver2M",
        "dpm_solver_3m": "probgen.models.diffusion:DPMSolver3M",
        "ncsn": "probgen.models.diffusion:AnnealedLangevin",
    },
)

POSTERIORS = Registry(
    "posterior",
    {
        "mean_field": "probgen.bayes.mean_field:MeanField",
        "sgld": "probgen.bayes.sgld:SGLD",
    },
)
