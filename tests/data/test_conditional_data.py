"""Data sets of pairs (x, c): labels on the right rows, conditions of the right law."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probgen.core import InvalidInput
from probgen.data import MNIST, Digits, FashionMNIST, SimulationDataset, ToyDataset
from probgen.data.idx import read_idx
from probgen.distributions import ConditionalMixture, GaussianMixture, RotatedShape
from probgen.distributions.shapes import _rotate

SPLITS = ("train", "validation", "test")


def _indices(n: int, batch: int, seed: int) -> torch.Tensor:
    """The rows a batch drawn with ``manual_seed(seed)`` takes (draws start with randint)."""
    return torch.randint(n, (batch,), generator=torch.Generator().manual_seed(seed))


def test_digits_labels_are_sklearns_targets_on_the_same_rows() -> None:
    from sklearn.datasets import load_digits

    reference = load_digits()
    digits = Digits(conditional=True)
    assert digits.spec.condition is not None and digits.spec.condition.classes == 10
    rows = {"train": slice(0, 1000), "validation": slice(1000, 1350), "test": slice(1350, None)}
    for split, r in rows.items():
        c = digits.conditions(split)
        assert c.dtype == torch.long
        assert torch.equal(c, torch.from_numpy(reference.target[r]))
        images = torch.from_numpy(reference.images[r]).unsqueeze(1)
        assert torch.equal(digits.split(split), images.to(torch.float64))
        x, labels = digits.draw(split, 64, torch.Generator().manual_seed(5))
        idx = _indices(len(images), 64, 5)
        assert torch.equal(x, images[idx].double())
        assert torch.equal(labels, torch.from_numpy(reference.target[r])[idx])


def test_unconditional_by_default() -> None:
    digits = Digits()
    assert digits.spec.condition is None and digits.conditions("train") is None
    x, c = digits.draw("train", 4, torch.Generator().manual_seed(0))
    assert c is None and torch.equal(x, digits.batch("train", 4, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("binarize", [False, True])
def test_mnist_labels_follow_every_split(data_dir, binarize: bool) -> None:
    """conditions(split) against the IDX label files, with a carved validation split."""
    folder = data_dir / "mnist"
    train_labels = torch.from_numpy(read_idx(folder / "train-labels-idx1-ubyte.gz")).long()
    test_labels = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz")).long()
    mnist = MNIST(root=data_dir, binarize=binarize, n_validation=1000, conditional=True)
    assert mnist.spec.condition is not None and mnist.spec.condition.classes == 10
    expected = {"train": train_labels[:-1000], "validation": train_labels[-1000:]}
    expected["test"] = test_labels
    for split in SPLITS:
        assert torch.equal(mnist.conditions(split), expected[split])
        assert len(mnist.conditions(split)) == len(mnist.split(split))
        x, c = mnist.draw(split, 32, torch.Generator().manual_seed(6))
        idx = _indices(len(expected[split]), 32, 6)
        assert torch.equal(c, expected[split][idx])
        if not binarize or split != "train":  # train batches are binarized afresh
            assert torch.equal(x, mnist.split(split)[idx])


def test_fashion_mnist_test_labels(data_dir) -> None:
    labels = read_idx(data_dir / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz")
    fashion = FashionMNIST(root=data_dir, conditional=True)
    assert torch.equal(fashion.conditions("test"), torch.from_numpy(labels).long())


def test_toy_component_pairs_come_from_their_component() -> None:
    """Rows with label k are centred on μ_k (5 SE); labels follow the weights."""
    data = ToyDataset("8gaussians", n_train=16_000, condition="component")
    assert isinstance(data.truth, ConditionalMixture)
    assert data.spec.condition is not None and data.spec.condition.classes == 8
    x, c = data.split("train"), data.conditions("train")
    std = data.truth.component_stds[0].item()
    counts = torch.bincount(c, minlength=8).double()
    assert ((counts - 2000).abs() <= 5 * math.sqrt(16_000 * (1 / 8) * (7 / 8))).all()
    for k in range(8):
        rows = x[c == k]
        assert ((rows.mean(0) - data.truth.means[k]).abs() <= 5 * std / math.sqrt(len(rows))).all()
    xb, cb = data.draw("validation", 100, torch.Generator().manual_seed(7))
    idx = _indices(len(data.split("validation")), 100, 7)
    assert torch.equal(xb, data.split("validation")[idx])
    assert torch.equal(cb, data.conditions("validation")[idx])


def test_toy_rotation_pairs_rotate_back_to_the_shape() -> None:
    std = 0.2
    shape = GaussianMixture.isotropic(torch.ones(1), torch.tensor([[1.5, 0.5]]), std)
    data = ToyDataset(shape, n_train=20_000, condition="rotation")
    assert isinstance(data.truth, RotatedShape) and data.spec.condition.shape == (1,)
    x, theta = data.split("train"), data.conditions("train")
    back = _rotate(x, -theta[:, 0])
    n = len(x)
    assert ((back.mean(0) - torch.tensor([1.5, 0.5])).abs() <= 5 * std / math.sqrt(n)).all()
    assert ((back.var(0) - std**2).abs() <= 5 * std**2 * math.sqrt(2 / (n - 1))).all()


def test_toy_conditions_in_other_units_keep_the_exact_truth() -> None:
    """With scale s and shift m: x = m + s y, and log p(x | c) = log p(y | c) − D log s."""
    data = ToyDataset("25gaussians", n_train=5000, condition="component", scale=3.0, shift=-1.0)
    x, c = data.split("train"), data.conditions("train")
    inner = ConditionalMixture(data.truth.model)
    y = (x + 1.0) / 3.0
    log_p = data.truth.log_prob(x, condition=c)
    assert torch.allclose(log_p, inner.log_prob(y, condition=c) - 2 * math.log(3.0))
    assert (log_p > inner.log_prob(y, condition=(c + 1) % 25) + 10).float().mean() > 0.99


def test_a_conditional_law_given_as_shape_yields_its_pairs() -> None:
    truth = ConditionalMixture(GaussianMixture.isotropic(torch.ones(2), torch.eye(2), 0.1))
    data = ToyDataset(truth, n_train=100)
    assert data.truth is truth and data.spec.condition.classes == 2
    x, c = data.split("train"), data.conditions("train")
    assert ((x - truth.means[c]).abs() < 0.6).all()  # 6 σ of its own mean, 4 σ from the other


def test_toy_condition_errors() -> None:
    with pytest.raises(InvalidInput, match="needs a Gaussian mixture"):
        ToyDataset("two_moons", condition="component")
    with pytest.raises(InvalidInput, match="unknown condition 'colour'"):
        ToyDataset("8gaussians", condition="colour")
    fresh = ToyDataset("8gaussians", condition="component")
    with pytest.raises(InvalidInput, match="training split is infinite"):
        fresh.conditions("train")


def test_simulation_pairs_and_budget() -> None:
    """θ are the events and x the conditions; x − θ ~ N(0, 0.1 I) row by row."""
    data = SimulationDataset("gaussian_linear", n_train=4000, n_validation=10, n_test=10)
    assert data.spec.event_shape == (10,) and data.spec.condition.shape == (10,)
    theta, x = data.split("train"), data.conditions("train")
    assert theta.shape == x.shape == (4000, 10)
    noise = x - theta
    assert ((noise.var(0) - 0.1).abs() <= 5 * 0.1 * math.sqrt(2 / 3999)).all()
    assert torch.equal(
        data.truth.log_prob(theta, condition=x).isfinite(), torch.ones(4000, dtype=torch.bool)
    )
    moons = SimulationDataset("two_moons", n_train=50)
    assert moons.truth is None and moons.spec.condition.shape == (2,)
    with pytest.raises(InvalidInput, match="unknown simulator 'slcp'"):
        SimulationDataset("slcp")


def test_fixed_sets_do_not_depend_on_the_order_of_use() -> None:
    a = SimulationDataset("two_moons", n_train=100, seed=3)
    b = SimulationDataset("two_moons", n_train=100, seed=3)
    b.split("test")
    assert torch.equal(a.conditions("train"), b.conditions("train"))
    assert not torch.equal(
        a.split("train"), SimulationDataset("two_moons", n_train=100).split("train")
    )


def test_arrays_keep_every_pair(tmp_path) -> None:
    from probgen.data import load_arrays

    n = 200
    rng = np.random.default_rng(1)
    x = np.column_stack([np.arange(n, dtype=np.float64), rng.normal(size=n)])  # column 0: row id
    c = rng.integers(0, 5, size=n)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", c)
    data = load_arrays(str(tmp_path / "x.npy"), str(tmp_path / "c.npy"), seed=4)
    assert data.spec.condition.classes == 5 and data.spec.event_shape == (2,)
    ids = []
    for split in SPLITS:
        rows, labels = data.split(split), data.conditions(split)
        ids.append(rows[:, 0].long())
        assert torch.equal(labels, torch.from_numpy(c)[rows[:, 0].long()])
        assert torch.equal(rows, torch.from_numpy(x)[rows[:, 0].long()])
    assert [len(i) for i in ids] == [160, 20, 20]
    assert torch.equal(torch.cat(ids).sort().values, torch.arange(n))
    other = load_arrays(str(tmp_path / "x.npy"), str(tmp_path / "c.npy"), seed=5)
    assert not torch.equal(other.split("test"), data.split("test"))


def test_arrays_npz_continuous_and_levels(tmp_path) -> None:
    from probgen.data import load_arrays

    path = tmp_path / "d.npz"
    np.savez(path, images=np.arange(40).reshape(10, 4) % 7, c=np.linspace(0, 1, 10))
    data = load_arrays(str(path), str(path), key="images", validation=0.2, test=0.2)
    assert data.spec.levels == 7 and data.spec.condition.shape == (1,)
    assert data.split("train").dtype == torch.float64 and data.conditions("train").shape == (6, 1)


def test_arrays_errors(tmp_path) -> None:
    from probgen.data import MissingDataFile, load_arrays
    from probgen.data.files import CorruptDataFile

    x = np.zeros((10, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "short.npy", np.zeros(9, dtype=np.int64))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 3] * 2 + [0, 1]))
    bad = x.copy()
    bad[[1, 4, 7], 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 10, dtype=object), allow_pickle=True)

    def p(name: str) -> str:
        return str(tmp_path / name)

    with pytest.raises(MissingDataFile, match=r"missing\.npy: no such file"):
        load_arrays(p("missing.npy"))
    with pytest.raises(InvalidInput, match="has 9 rows but x has 10"):
        load_arrays(p("x.npy"), p("short.npy"))
    with pytest.raises(InvalidInput, match="contains 3 NaN or infinite value"):
        load_arrays(p("nan.npy"))
    with pytest.raises(InvalidInput, match=r"labels must lie in 0\.\.2, got \[0, 3\]"):
        load_arrays(p("x.npy"), p("labels.npy"), classes=3)
    with pytest.raises(CorruptDataFile, match="not a NumPy"):
        load_arrays(p("objects.npy"))
    with pytest.raises(InvalidInput, match="no array 'x'; it holds a"):
        np.savez(tmp_path / "a.npz", a=x)
        load_arrays(p("a.npz"))
    with pytest.raises(InvalidInput, match="leave no training rows"):
        load_arrays(p("x.npy"), validation=0.5, test=0.5)
