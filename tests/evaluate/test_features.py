"""The feature networks read the data's levels: one image on two scales has one feature vector."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, InvalidInput
from probgen.data.base import ArrayDataset
from probgen.data.digits import Digits
from probgen.data.mnist import MNIST, FashionMNIST
from probgen.data.toy import ToyDataset
from probgen.evaluate.features import (
    SHIPPED,
    ClassifierFeatures,
    FlatFeatures,
    default_features,
)
from probgen.evaluate.suite import FeatureDistances, PrecisionRecall, evaluate_model

FEATURE_KEYS = {"fid", "kid", "precision", "recall", "density", "coverage"}


def _scales(trained: int) -> list[int]:
    """Every K ≥ 2 whose levels are exact levels of ``trained``: (K − 1) divides (L − 1)."""
    return [k for k in range(2, trained + 1) if (trained - 1) % (k - 1) == 0]


def _cases() -> list[tuple[str, int]]:
    cases = []
    for name, shape in SHIPPED.items():
        net = default_features(shape)
        assert isinstance(net, ClassifierFeatures), f"shipped weights of {name!r} missing"
        cases += [(name, k) for k in _scales(net.levels)]
    return cases


@pytest.mark.parametrize(("name", "levels"), _cases())
def test_an_image_on_the_training_scale_and_on_k_levels_has_the_same_features(
    name: str, levels: int
) -> None:
    """x of K levels and the same image x·(L − 1)/(K − 1) on the net's L levels: equal features.

    Both inputs reach the net as x/(K − 1) = x·(L − 1)/(K − 1)/(L − 1), one
    correctly rounded quotient of the same exact integers, so the features are
    bitwise equal; for K = 2 this is binarized MNIST against the same 0/255 images.
    """
    shape = SHIPPED[name]
    trained = default_features(shape)
    on_k = default_features(shape, levels=levels)
    g = torch.Generator().manual_seed(levels)
    x = torch.randint(levels, (64, *shape), generator=g).double()  # (B, *shape), 0…K − 1
    same_image = x * ((trained.levels - 1) // (levels - 1))  # exact integers 0…L − 1
    assert torch.equal(on_k(x), trained(same_image))
    if levels < trained.levels:  # the old reading (as L levels) is a different image
        assert not torch.allclose(trained(x), trained(same_image), atol=1e-3)


def test_mnist_classifier_reads_binarized_test_images(data_dir) -> None:
    """Accuracy on fixed-binarized MNIST test images: 0.969 at 2 levels, 0.089 read as 256."""
    data = MNIST(root=data_dir, binarize=True)
    x, y = data.split("test").double(), data.labels("test")
    assert set(x.unique().tolist()) == {0.0, 1.0}

    def accuracy(net: ClassifierFeatures) -> float:
        with torch.no_grad():
            return (net.logits(x).argmax(dim=1) == y).double().mean().item()

    assert accuracy(default_features(data.spec.event_shape, levels=data.spec.levels)) > 0.95
    assert accuracy(default_features(data.spec.event_shape)) < 0.2  # before: 0/1 read as 0/255ths


def test_default_features_by_name_and_its_errors() -> None:
    net = default_features((1, 28, 28), levels=2, name="mnist")
    assert isinstance(net, ClassifierFeatures)
    assert (net.trained_on, net.levels, net.input_levels) == ("mnist", 256, 2)
    assert isinstance(default_features((5,), levels=3), FlatFeatures)
    with pytest.raises(InvalidInput, match="unknown feature network 'cifar'"):
        default_features((1, 28, 28), name="cifar")
    with pytest.raises(InvalidInput, match=r"'digits' reads events of shape \(1, 8, 8\)"):
        default_features((1, 28, 28), name="digits")
    with pytest.raises(InvalidInput, match="levels >= 2"):
        default_features((1, 28, 28), levels=1)
    with pytest.raises(InvalidInput, match="input_levels"):
        ClassifierFeatures((1, 4, 4), levels=5, input_levels=True)


def test_data_sets_name_the_net_trained_on_them() -> None:
    assert MNIST.feature_net == "mnist" and Digits.feature_net == "digits"
    assert FashionMNIST.feature_net is None  # no Fashion-MNIST net ships


class _Resampler(GenerativeModel):
    """Returns rows of a fixed image set (a sampler-only model)."""

    def __init__(self, images: Tensor) -> None:
        super().__init__(tuple(images.shape[1:]))
        self.images = images
        self.net = nn.Identity()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.images[torch.randint(len(self.images), (n,), generator=generator)]


def _scores(data: ArrayDataset | Digits | ToyDataset, images: Tensor, **options: object):
    return evaluate_model(
        _Resampler(images),
        data,
        n_samples=200,
        generator=torch.Generator().manual_seed(0),
        metrics=[FeatureDistances(**options), PrecisionRecall(**options)],
    )


def test_the_evaluator_reads_the_data_at_its_levels_and_notes_the_features() -> None:
    digits = Digits()
    binary = [(digits.split(s) > 8).double() for s in ("train", "validation", "test")]
    on_2 = ArrayDataset(*binary, DataSpec((1, 8, 8), levels=2))
    on_17 = ArrayDataset(*(16 * b for b in binary), DataSpec((1, 8, 8), levels=17))
    on_2.feature_net = on_17.feature_net = "digits"
    a, b = _scores(on_2, binary[0]), _scores(on_17, 16 * binary[0])
    assert set(a) >= FEATURE_KEYS
    assert {k: a[k] for k in FEATURE_KEYS} == {k: b[k] for k in FEATURE_KEYS}
    assert set(a.notes) == FEATURE_KEYS
    assert a.notes["fid"] == (
        "features: the digits classifier's 64 features (trained on 17 levels, reading 2), "
        "trained on this data set"
    )
    unnamed = _scores(ArrayDataset(*binary, DataSpec((1, 8, 8), levels=2)), binary[0])
    assert unnamed["fid"] == a["fid"]
    assert "chosen by event shape, not trained on this data set" in unnamed.notes["kid"]


def test_notes_for_raw_values_and_given_features() -> None:
    toy = ToyDataset("8gaussians", n_test=500)
    images = toy.split("test")
    assert _scores(toy, images).notes["fid"] == (
        "features: the raw values, standardised by the reference's coordinate means and sds "
        "(no feature network ships for this event shape)"
    )
    given = _scores(toy, images, features=FlatFeatures((2,)))
    assert given.notes["precision"] == "features: the raw values (given)"


def test_fitted_flat_features_standardise_by_the_reference() -> None:
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [2.0, 5.0, 0.0]
    )
    net = FlatFeatures.fitted(reference + torch.tensor([1.0, -3.0, 7.0]))
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    m, s = reference.mean(0) + torch.tensor([1.0, -3.0, 7.0]), reference.std(0)
    expected = (x - m) / torch.where(s > 0, s, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-14)
    assert net.scale[2] == 1.0 and net.standardized and not FlatFeatures((3,)).standardized
    torch.testing.assert_close(FlatFeatures((3,))(x), x, rtol=0, atol=0)
    with pytest.raises(InvalidInput, match="at least 2 reference rows"):
        FlatFeatures.fitted(reference[:1])


@pytest.mark.parametrize(("scale", "shift"), [(1e-3, 0.0), (1e3, 0.0), (1.0, 1e3), (40.0, -5.0)])
def test_feature_metrics_of_continuous_vectors_do_not_depend_on_units(
    scale: float, shift: float
) -> None:
    """FID, KID and PRDC of raw 2-D vectors: a per-coordinate affine map of data and
    samples alike leaves every figure unchanged (to rounding), as it does on the
    standardised coordinates they are computed on. Raw, KID would change as scale⁶."""
    toy = ToyDataset("8gaussians", n_train=500, n_validation=100, n_test=500)
    samples = toy.split("test") + 1.0 * torch.randn(
        500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    a = torch.tensor([scale, 3 * scale], dtype=torch.float64)
    moved = ArrayDataset(
        *(a * toy.split(s) + shift for s in ("train", "validation", "test")), DataSpec((2,))
    )
    base = _scores(
        ArrayDataset(*(toy.split(s) for s in ("train", "validation", "test")), DataSpec((2,))),
        samples,
    )
    other = _scores(moved, a * samples + shift)
    assert base["fid"].value > 0.02  # the samples are visibly noisier than the data
    for key in FEATURE_KEYS:
        torch.testing.assert_close(
            torch.tensor(_value(other[key])), torch.tensor(_value(base[key])), rtol=1e-9, atol=1e-12
        )


def _value(result: object) -> float:
    return float(getattr(result, "value", result))
