"""The common base of analytic distributions: exact density, exact sampling, entropy."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood

__all__ = ["Distribution"]

_CHUNK = 8192  # examples per log_prob call in Monte Carlo entropy, to bound memory


class Distribution(GenerativeModel, abc.ABC):
    """An analytic distribution p(x): ``log_prob`` is exact and ``sample`` is exact.

    Subclasses implement ``log_prob(x)`` (B,) and ``sample(n, generator=None)``
    (n, *event_shape), and override ``closed_form_entropy`` when
    H[p] = -E_p[log p(x)] has a closed form; otherwise ``entropy`` returns the
    Monte Carlo estimate -1/n Σ_i log p(x_i), x_i ~ p, with its standard error.
    """

    likelihood = Likelihood.EXACT

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per example, shape (B,), in nats."""

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` independent exact samples, shape ``(n, *event_shape)``."""

    def closed_form_entropy(self) -> Tensor | None:
        """H[p] in nats as a 0-dim tensor when known in closed form, else ``None``."""
        return None

    def entropy(self, n: int = 100_000, generator: torch.Generator | None = None) -> Estimate:
        """Differential entropy H[p] = -E_p[log p(x)] in nats.

        Exact (kind ``"exact"``, stderr 0) when ``closed_form_entropy`` is known;
        else the Monte Carlo mean of -log p(x_i) over ``n`` exact samples drawn
        with ``generator`` (kind ``"estimate"``, stderr s/√n).
        """
        exact = self.closed_form_entropy()
        if exact is not None:
            return Estimate(value=float(exact.detach()), stderr=0.0, kind="exact")
        if n < 2:
            raise InvalidInput(f"entropy: expected n >= 2 samples, got {n}")
        with torch.no_grad():
            values = torch.cat(
                [
                    -self.log_prob(self.sample(min(_CHUNK, n - start), generator=generator))
                    for start in range(0, n, _CHUNK)
                ]
            )
        return Estimate.from_samples(values, kind="estimate")

    def _dtype_device(self) -> dict[str, torch.dtype | torch.device]:
        """Keyword arguments creating a tensor on this distribution's dtype and device."""
        for t in (*self.parameters(), *self.buffers()):
            if t.is_floating_point():
                return {"dtype": t.dtype, "device": t.device}
        return {"dtype": torch.get_default_dtype(), "device": torch.device("cpu")}

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        """Standard normal noise of ``shape`` on this distribution's dtype and device."""
        return torch.randn(shape, generator=generator, **self._dtype_device())

    def _rand(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        """Uniform(0, 1) noise of ``shape`` on this distribution's dtype and device."""
        return torch.rand(shape, generator=generator, **self._dtype_device())
