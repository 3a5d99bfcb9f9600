"""Feature networks for Fréchet distance, KID and precision/recall: φ: (B, *event_shape) -> (B, F).

Sample metrics on images compare feature vectors rather than pixels. Three kinds:

- ``FlatFeatures``: the flattened event itself (φ(x) = x), the right choice for
  low-dimensional data such as the 2-D toy shapes (the Fréchet distance is
  then the exact W₂ between the Gaussian fits of the raw samples).
- ``ClassifierFeatures``: the last hidden layer of a small MLP classifier
  trained on labelled digits. Weights for the 8×8 scikit-learn digits and for
  MNIST ship with the package (``probgen/evaluate/weights/*.safetensors``,
  trained by ``benchmarks/feature_net.py``; test accuracy in the file's
  metadata and in docs/evaluation.md), so the metrics work offline.
- ``InceptionFeatures``: the 2048-d pool features of Inception-v3 (the FID of
  Heusel et al. 2017) when the user has torch-fidelity and its weights.

``default_features(event_shape, levels=K)`` picks the shipped classifier for
(1, 8, 8) and (1, 28, 28) events (or the one named by ``name``, e.g. a data
set's ``feature_net``) and ``FlatFeatures`` otherwise. A classifier reads data
of K levels on the scale it was trained on: level x is intensity
x·(L − 1)/(K − 1) of its L training levels, so binarized MNIST (K = 2) is read
as the 0/255 images it approximates. Every feature module has an integer
``num_features`` (F), as torchmetrics expects of a custom extractor.

Reference: Heusel et al. 2017, "GANs trained by a two time-scale update rule
converge to a local Nash equilibrium"; Kynkäänniemi et al. 2019, Section 2
(features of a pretrained classifier).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from probgen.core import InvalidInput, ProbgenError
from probgen.tensors import flatten_events

__all__ = [
    "RAW_VALUES",
    "SHIPPED",
    "WEIGHTS",
    "ClassifierFeatures",
    "FlatFeatures",
    "InceptionFeatures",
    "default_features",
    "describe_features",
    "load_classifier",
]

WEIGHTS = Path(__file__).with_name("weights")
"""Folder of the shipped classifier weights: ``digits.safetensors``, ``mnist.safetensors``."""

RAW_VALUES = "the raw values"
"""How ``describe_features`` names ``FlatFeatures``: a distance on them sees coordinates, not
features (a Fréchet distance compares the means and covariances of the points only)."""

SHIPPED = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
"""The shipped classifiers by name (``WEIGHTS/<name>.safetensors``) and their event shape."""


def _check_levels(levels: object, name: str = "levels") -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise InvalidInput(f"{name}: expected an integer number of levels >= 2, got {levels!r}")
    return levels


class FlatFeatures(nn.Module):
    """φ(x) = (flatten(x) − m) / s: (B, *event_shape) -> (B, D); ``num_features`` = D.

    With the default m = 0, s = 1 the features are the raw values. ``fitted``
    sets m and s to a reference set's coordinate means and standard deviations,
    which makes every feature metric of continuous vectors free of the data's
    units: the Fréchet distance and KID of raw values change as s² and s⁶ when
    the data are multiplied by s (KID's cubic kernel (aᵀb/D + 1)³ mixes powers
    of the scale), and the k-NN balls of precision/recall are dominated by the
    coordinate with the largest range. On standardised coordinates the
    Fréchet distance is the W₂ between the Gaussian fits in units of the
    reference's spread, and all three are unchanged by any per-coordinate
    affine map applied to samples and reference alike.
    """

    def __init__(
        self, event_shape: Sequence[int], loc: Tensor | None = None, scale: Tensor | None = None
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.num_features = math.prod(self.event_shape)
        d = self.num_features
        loc = torch.zeros(d, dtype=torch.float64) if loc is None else loc
        scale = torch.ones(d, dtype=torch.float64) if scale is None else scale
        if loc.shape != (d,) or scale.shape != (d,):
            raise InvalidInput(f"FlatFeatures: loc and scale must have shape ({d},)")
        self.register_buffer("loc", loc.double())
        self.register_buffer("scale", scale.double())

    @classmethod
    def fitted(cls, reference: Tensor) -> FlatFeatures:
        """Standardised by ``reference`` (N, *event_shape): its coordinate means and sds.

        A coordinate constant in the reference keeps s = 1 (it is only centred).
        """
        flat = flatten_events(reference).double()
        if len(flat) < 2:
            raise InvalidInput("FlatFeatures.fitted needs at least 2 reference rows")
        scale = flat.std(dim=0)
        return cls(reference.shape[1:], flat.mean(dim=0), torch.where(scale > 0, scale, 1.0))

    @property
    def standardized(self) -> bool:
        """Whether m, s differ from 0, 1 (the features are not the raw values)."""
        return bool((self.loc != 0).any() or (self.scale != 1).any())

    def forward(self, x: Tensor) -> Tensor:
        flat = flatten_events(x)
        if not self.standardized:
            return flat
        return ((flat.double() - self.loc) / self.scale).to(flat.dtype)


class ClassifierFeatures(nn.Module):
    """An MLP classifier on x / (K − 1); its last hidden layer is the feature vector.

    features(x) = h_L, h_ℓ = SiLU(W_ℓ h_{ℓ−1} + b_ℓ), h_0 = flatten(x) / (K − 1);
    logits = W_out h_L + b_out. Input (B, *event_shape) in data units (integers
    0…K − 1, as the data sets hold them, K = ``input_levels``); output (B, F),
    F = hidden[-1], in the input's dtype. The net is trained on data of
    ``levels`` = L levels; h_0 ∈ [0, 1] puts data of any K on that scale (level
    x of K is intensity x·(L − 1)/(K − 1) of L), so binary pixels 0/1 read as
    the 0/L − 1 pixels they stand for.

    Args:
        event_shape: shape of one image, e.g. (1, 8, 8).
        levels: intensity levels L of the training data (17 for digits, 256 for MNIST).
        hidden: hidden widths; the last is F.
        n_classes: classes of the training labels.
        input_levels: levels K of the data the features are computed on
            (default L); 2 for binarized images.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        levels: int,
        hidden: Sequence[int] = (128, 64),
        n_classes: int = 10,
        *,
        input_levels: int | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.levels = _check_levels(int(levels))
        self.input_levels = (
            self.levels if input_levels is None else _check_levels(input_levels, "input_levels")
        )
        self.trained_on: str | None = None  # the training data's name, from the file's metadata
        self.hidden = tuple(int(h) for h in hidden)
        self.num_features = self.hidden[-1]
        widths = [math.prod(self.event_shape), *self.hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.hidden[-1], n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, F) of images x (B, *event_shape) of ``input_levels`` levels."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise InvalidInput(
                f"{type(self).__name__}: expected images of shape (B, "
                f"{', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )
        weight = self.head.weight
        h = flatten_events(x).to(weight) / (self.input_levels - 1)
        return self.body(h).to(x.dtype if x.is_floating_point() else weight.dtype)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits (B, n_classes)."""
        return self.head(self(x).to(self.head.weight))

    def save(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        """Write the weights and the architecture (and ``metadata``) as one safetensors file."""
        config = {
            "event_shape": list(self.event_shape),
            "levels": self.levels,
            "hidden": list(self.hidden),
            "n_classes": self.head.out_features,
        }
        tensors = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"config": json.dumps(config), **(metadata or {})})


def load_classifier(path: str | Path, *, input_levels: int | None = None) -> ClassifierFeatures:
    """A ``ClassifierFeatures`` from a file written by ``ClassifierFeatures.save`` (eval mode).

    ``input_levels``: levels of the data it will read (default: its training
    levels); ``trained_on`` is the file's ``data`` metadata (None if absent).
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "config" not in metadata:
        raise InvalidInput(f"{path}: not a probgen feature network (no 'config' metadata)")
    config = json.loads(metadata["config"])
    net = ClassifierFeatures(
        config["event_shape"],
        config["levels"],
        config["hidden"],
        config["n_classes"],
        input_levels=input_levels,
    )
    net.load_state_dict(load_file(str(path)))
    net.trained_on = metadata.get("data")
    return net.eval().requires_grad_(False)


class InceptionFeatures(nn.Module):
    """The 2048-d pool3 features of Inception-v3 as used by FID (needs ``torch-fidelity``).

    Images (B, C, H, W) with C ∈ {1, 3} in data units 0…levels − 1 are scaled to
    0…255 bytes, grey images repeated to three channels, and resized to 299×299
    inside the network. ``weights``: a local copy of the FID Inception weights
    (``pt_inception-2015-12-05``); without it torch-fidelity downloads them.

    Reference: Szegedy et al. 2016, "Rethinking the Inception architecture for
    computer vision"; Heusel et al. 2017.
    """

    num_features = 2048

    def __init__(self, levels: int = 256, weights: str | Path | None = None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=None if weights is None else str(weights),
            )
        except (ImportError, ModuleNotFoundError) as e:
            raise ProbgenError(
                "InceptionFeatures needs torch-fidelity (pip install torch-fidelity) and the "
                "Inception weights; use the shipped ClassifierFeatures offline"
            ) from e
        self.levels = int(levels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise InvalidInput(f"InceptionFeatures: expected (B, 1|3, H, W), got {tuple(x.shape)}")
        pixels = (x.double() * (255 / (self.levels - 1))).round().clamp(0, 255).to(torch.uint8)
        return self.net(pixels.expand(-1, 3, -1, -1)).to(x.dtype)


def default_features(
    event_shape: Sequence[int], *, levels: int | None = None, name: str | None = None
) -> nn.Module:
    """The shipped classifier named ``name`` or chosen by event shape, else ``FlatFeatures``.

    ``levels``: the data's levels K (``DataSpec.levels``), read by the
    classifier as described in ``ClassifierFeatures``; None (continuous data,
    or unknown) reads the input on the classifier's own training scale.
    ``name`` (a key of ``SHIPPED``) asks for that classifier; its event shape
    must be ``event_shape`` and its weights must be installed. Without it the
    shape picks one (``FlatFeatures`` when none ships, or its weights are
    missing). ``FlatFeatures`` ignores ``levels`` (the raw values).
    """
    shape = tuple(int(s) for s in event_shape)
    if levels is not None:
        levels = _check_levels(levels)
    if name is not None:
        if name not in SHIPPED:
            raise InvalidInput(
                f"unknown feature network {name!r}; choose one of: {', '.join(SHIPPED)}"
            )
        if SHIPPED[name] != shape:
            raise InvalidInput(
                f"feature network {name!r} reads events of shape {SHIPPED[name]}, not {shape}"
            )
        if not (WEIGHTS / f"{name}.safetensors").is_file():
            raise ProbgenError(f"feature network {name!r}: {WEIGHTS / name}.safetensors is missing")
    else:
        name = next((n for n, s in SHIPPED.items() if s == shape), None)
    if name is not None and (WEIGHTS / f"{name}.safetensors").is_file():
        return load_classifier(WEIGHTS / f"{name}.safetensors", input_levels=levels)
    return FlatFeatures(shape)


def describe_features(net: nn.Module) -> str:
    """One line naming a feature net: which classifier, read at how many levels; or raw values."""
    if isinstance(net, ClassifierFeatures):
        return (
            f"the {net.trained_on or 'unnamed'} classifier's {net.num_features} features "
            f"(trained on {net.levels} levels, reading {net.input_levels})"
        )
    if isinstance(net, FlatFeatures):
        if net.standardized:
            return f"{RAW_VALUES}, standardised by the reference's coordinate means and sds"
        return RAW_VALUES
    return f"{type(net).__name__}'s {getattr(net, 'num_features', '?')} features"
