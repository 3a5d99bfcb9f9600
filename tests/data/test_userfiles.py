"""The ``file`` data set: every format read back exactly, every option, every bad file's error.

Ground truth: the real CSVs of ../shared/data are read independently with
``numpy.loadtxt`` (their README's loaders) and their published column means
(R's ``colMeans(faithful)``); files the tests write hold known arrays, which
must come back row for row (the union of the three splits is the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

from probgen.core import InvalidInput, ProbgenError
from probgen.data import FileData, load_file
from probgen.data.base import SPLITS
from probgen.data.files import CorruptDataFile, MissingDataFile
from probgen.data.text import TextCorpus
from probgen.data.userfiles import data_config
from probgen.registry import UnknownName

pd = pytest.importorskip("pandas")


def _in_file_order(parts: list[torch.Tensor]) -> torch.Tensor:
    """Rows of (validation, test, train) put back in the file's order.

    ``split_rows`` with seed 0 draws a permutation π and puts x[π[:n_v]] in
    validation, the next n_t rows in test, the rest in train: the three
    concatenated are x[π], so x = (x[π])[argsort π].
    """
    stacked = torch.cat(parts)
    order = np.argsort(np.random.default_rng(0).permutation(len(stacked)))
    return stacked[torch.from_numpy(order)]


def _rows(data: FileData) -> torch.Tensor:
    return _in_file_order([data.split(s) for s in ("validation", "test", "train")])


def _conditions(data: FileData) -> torch.Tensor:
    return _in_file_order([data.conditions(s) for s in ("validation", "test", "train")])


# ----------------------------------------------------------------------------- real CSVs


def test_old_faithful_is_read_as_r_reads_it(data_dir: Path) -> None:
    path = data_dir / "old_faithful" / "faithful.csv"
    data = load_file(path)
    assert data.columns == ("eruptions", "waiting")  # the row-name column "" is left out
    assert data.spec.event_shape == (2,) and data.spec.levels is None
    assert [len(data.split(s)) for s in SPLITS] == [218, 27, 27]  # ⌊0.1 · 272⌋ = 27
    expected = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2))
    assert torch.equal(_rows(data), torch.from_numpy(expected))
    # R's colMeans(faithful), quoted to 6 decimals in the data README
    means = _rows(data).mean(0)
    assert torch.allclose(means, torch.tensor([3.487783, 70.897059]), rtol=0, atol=5e-7)


def test_galaxies_are_one_column_of_velocities(data_dir: Path) -> None:
    path = data_dir / "galaxies" / "galaxies.csv"
    data = load_file(path, validation=0.0, test=0.25, seed=0)
    expected = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)
    assert data.spec.event_shape == (1,)
    assert [len(data.split(s)) for s in SPLITS] == [62, 0, 20]
    x = _rows(data)[:, 0]
    assert torch.equal(x, torch.from_numpy(expected))
    assert x.min() == 9172 and x.max() == 34279 and x[77] == 26690  # MASS's known typo kept


def test_the_split_is_seeded_disjoint_and_complete(data_dir: Path) -> None:
    path = data_dir / "old_faithful" / "faithful.csv"
    a, b, other = load_file(path, seed=3), load_file(path, seed=3), load_file(path, seed=4)
    for s in SPLITS:
        assert torch.equal(a.split(s), b.split(s))
    assert not torch.equal(a.split("test"), other.split("test"))
    rows = {tuple(r.tolist()) for s in SPLITS for r in a.split(s)}
    file_rows = {tuple(r) for r in np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2))}
    assert rows == file_rows


# ----------------------------------------------------------------------------- every format

X = np.arange(60, dtype=np.float64).reshape(20, 3) / 4  # 20 rows, columns a, b, c
Y = np.arange(20) % 3  # class labels 0, 1, 2


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y})


WRITERS = {
    "csv": lambda p: _frame().to_csv(p, index=False),
    "tsv": lambda p: _frame().to_csv(p, index=False, sep="\t"),
    "parquet": lambda p: _frame().to_parquet(p),
    "npy": lambda p: np.save(p, np.column_stack([X, Y])),
    "npz": lambda p: np.savez(p, x=X, y=Y),
    "safetensors": lambda p: save_file({"x": X, "y": Y.astype(np.int64)}, str(p)),
}
LABEL = {"csv": "y", "tsv": "y", "parquet": "y", "npy": 3, "npz": "y", "safetensors": "y"}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_every_table_format_gives_back_the_rows_and_labels(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data.{suffix}"
    WRITERS[suffix](path)
    data = load_file(path, label=LABEL[suffix])
    assert data.spec.event_shape == (3,) and data.spec.levels is None
    assert data.spec.condition is not None and data.spec.condition.classes == 3
    assert torch.equal(_rows(data), torch.from_numpy(X))
    assert torch.equal(_conditions(data), torch.from_numpy(Y))
    assert data.split("train").dtype == torch.float64


def test_columns_choose_x_and_a_condition_vector(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    WRITERS["csv"](path)
    data = load_file(path, columns=["c", "a"], condition=["b"])
    assert data.columns == ("c", "a")
    assert torch.equal(_rows(data), torch.from_numpy(X[:, [2, 0]]))
    assert data.spec.condition is not None and data.spec.condition.shape == (1,)
    assert torch.equal(_conditions(data), torch.from_numpy(X[:, [1]]))


def test_string_labels_are_numbered_in_sorted_order(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    species = np.array(["setosa", "virginica", "versicolor", "setosa"] * 5)
    pd.DataFrame({"x": X[:, 0], "species": species}).to_csv(path, index=False)
    data = load_file(path, label="species")
    assert data.class_names == ("setosa", "versicolor", "virginica")
    ids = np.searchsorted(data.class_names, species)
    assert torch.equal(_conditions(data), torch.from_numpy(ids))


def test_levels_and_header_false(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    counts = np.arange(40).reshape(20, 2) % 5
    np.savetxt(path, counts, delimiter=",", fmt="%d")  # no header line
    data = load_file(path, header=False, levels=5)
    assert data.spec.levels == 5 and data.columns == ("0", "1")
    assert torch.equal(_rows(data), torch.from_numpy(counts).double())


def test_npz_with_an_image_array_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "images.npz"
    pixels = np.arange(20 * 16, dtype=np.uint8).reshape(20, 1, 4, 4)
    np.savez(path, images=pixels, labels=Y)
    data = load_file(path, label="labels", levels=256)
    assert data.spec.event_shape == (1, 4, 4) and data.spec.levels == 256
    assert torch.equal(_rows(data), torch.from_numpy(pixels).double())


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_an_image_folder_with_class_subfolders(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)  # (N, H, W, RGB)
    for i, p in enumerate(pixels):
        folder = tmp_path / "pets" / ("cat" if i < 4 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p).save(folder / f"{i}{suffix}")
    data = load_file(tmp_path / "pets", validation=0.0, test=0.0)
    assert data.spec.event_shape == (3, 5, 4) and data.spec.levels == 256
    assert data.class_names == ("cat", "dog")
    assert data.spec.condition is not None and data.spec.condition.classes == 2
    # what Pillow decodes (JPEG is lossy), in file order: cat/0..3, dog/4..5
    files = sorted((tmp_path / "pets").glob(f"*/*{suffix}"))
    decoded = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    expected = torch.from_numpy(decoded.transpose(0, 3, 1, 2)).double()
    assert torch.equal(_rows(data), expected)
    assert torch.equal(_conditions(data), torch.tensor([0, 0, 0, 0, 1, 1]))
    if suffix == ".png":  # lossless
        assert torch.equal(expected, torch.from_numpy(pixels.transpose(0, 3, 1, 2)).double())
    unlabelled = load_file(tmp_path / "pets", label=None, validation=0.0, test=0.0)
    assert unlabelled.spec.condition is None


def test_a_flat_grayscale_folder_is_unconditional(tmp_path: Path) -> None:
    for i in range(5):
        Image.fromarray(np.full((3, 2), 50 * i, dtype=np.uint8), mode="L").save(
            tmp_path / f"{i}.png"
        )
    data = load_file(tmp_path, validation=0.0, test=0.0)
    assert data.spec.event_shape == (1, 3, 2) and data.spec.condition is None
    assert sorted(_rows(data)[:, 0, 0, 0].tolist()) == [0, 50, 100, 150, 200]


def test_a_text_file_is_characters_as_tokens(tmp_path: Path) -> None:
    path = tmp_path / "poem.txt"
    text = "the cat sat on the mat. " * 20  # 480 characters
    path.write_text(text)
    data = load_file(path, context=8)
    assert isinstance(data, TextCorpus) and data.vocab == sorted(set(text))
    assert [len(data.tokens(s)) for s in SPLITS] == [384, 48, 48]  # train | validation | test
    assert data.decode(torch.cat([data.tokens(s) for s in SPLITS])) == text


# ----------------------------------------------------------------------------- bad files


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_CSV = {
    "non-numeric": (
        "a,b\n1,2\n3,oops\n",
        r"column 'b' is not numeric: row 1 \(line 3\) holds 'oops'",
    ),
    "short row": ("a,b,c\n1,2,3\n4,5\n", r"ragged rows: line 3 has 2 fields, the header 3"),
    "long row": ("a,b\n1,2\n3,4,5\n", r"ragged rows: line 3 has 3 fields, the header 2"),
    "nan and inf": (
        "a,b\n1,2\n3,nan\ninf,4\n5,\n",
        r"3 NaN or infinite value\(s\) in columns a, b; the first at row 1 \(line 3\), column 'b'",
    ),
    "empty": ("", r"the file is empty"),
    "header only": ("a,b\n", r"the file holds no rows"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_a_bad_csv_gets_one_line_naming_the_file_and_the_place(tmp_path: Path, case: str) -> None:
    text, message = BAD_CSV[case]
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ProbgenError, match=message) as info:
        load_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_nan_in_a_parquet_column_names_the_count_and_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"a": [1.0, 2.0, np.nan, np.nan], "b": [0.0, np.inf, 1.0, 2.0]}).to_parquet(path)
    with pytest.raises(InvalidInput, match=r"3 NaN .* first at row 1, column 'b'"):
        load_file(path)


def test_labels_out_of_range_name_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.csv", "x,y\n0.5,0\n0.1,1\n0.7,4\n0.2,1\n")
    with pytest.raises(
        InvalidInput,
        match=r"label column 'y' out of range: row 2 \(line 4\) holds 4; "
        r"labels must lie in 0..2 \(classes=3\)",
    ):
        load_file(path, label="y", classes=3)
    negative = _write(tmp_path / "n.csv", "x,y\n0.5,0\n0.1,-1\n")
    with pytest.raises(InvalidInput, match=r"out of range: row 1 \(line 3\) holds -1"):
        load_file(negative, label="y")
    fractional = _write(tmp_path / "f.csv", "x,y\n0.5,0\n0.1,1.5\n")
    with pytest.raises(InvalidInput, match=r"1 label\(s\) not an integer .* row 1"):
        load_file(fractional, label="y")


def test_values_outside_the_levels_name_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.csv", "a,b\n0,1\n2,7\n")
    with pytest.raises(
        InvalidInput, match=r"1 value\(s\) not an integer in 0..4 .* row 1 \(line 3\), column 'b'"
    ):
        load_file(path, levels=5)


def test_ragged_arrays_of_an_npz_name_both(tmp_path: Path) -> None:
    path = tmp_path / "r.npz"
    np.savez(path, x=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(InvalidInput, match=r"ragged rows: array 'y' has 4 rows, array 'x' has 5"):
        load_file(path, label="y")


def test_a_ragged_list_saved_as_npy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.npy"
    np.save(path, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptDataFile, match=r"holds Python objects \(ragged rows\?\)"):
        load_file(path)


def test_an_empty_npy_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.npy"
    np.save(path, np.zeros((0, 3)))
    with pytest.raises(CorruptDataFile, match=r"e.npy: the file holds no rows"):
        load_file(path)


def test_images_of_mixed_sizes_name_two_files(tmp_path: Path) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    Image.new("L", (5, 4)).save(tmp_path / "b.png")
    with pytest.raises(InvalidInput, match=r"images of mixed sizes: a.png is 4×4, b.png is 5×4"):
        load_file(tmp_path)


def test_a_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("no pictures")
    with pytest.raises(InvalidInput, match=r"no images \(.png, .jpg, .jpeg\)"):
        load_file(tmp_path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet", ".safetensors", ".png"])
def test_an_unreadable_file_names_itself(tmp_path: Path, suffix: str) -> None:
    if suffix == ".png":
        (tmp_path / "img").mkdir()
        path = _write(tmp_path / "img" / "broken.png", "not a picture")
        target = tmp_path / "img"
    else:
        path = target = _write(tmp_path / f"broken{suffix}", "definitely not this format")
    with pytest.raises(CorruptDataFile, match="broken") as info:
        load_file(target)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of any permission")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = _write(tmp_path / "secret.csv", "a\n1\n")
    path.chmod(0)
    with pytest.raises(CorruptDataFile, match=r"secret.csv: cannot be read"):
        load_file(path)


def test_unknown_suffix_missing_file_and_misplaced_options(tmp_path: Path) -> None:
    sheet = _write(tmp_path / "data.xlsx", "binary")
    with pytest.raises(
        InvalidInput, match=r"data.xlsx: unknown file type '.xlsx'; probgen reads .csv"
    ):
        load_file(sheet)
    with pytest.raises(CorruptDataFile, match=r"fake.npy: not a NumPy .npy/.npz file"):
        load_file(_write(tmp_path / "fake.npy", "1,2,3"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,b\n1,\xe9\n")
    with pytest.raises(CorruptDataFile, match=r"latin.csv: not UTF-8 text \(byte 0xe9\)"):
        load_file(latin)
    with pytest.raises(InvalidInput, match=r"a.png: a single image: give the folder of images"):
        load_file(_write(tmp_path / "a.png", "x"))
    with pytest.raises(MissingDataFile, match=r"nope.csv: no such file"):
        load_file(tmp_path / "nope.csv")
    text = _write(tmp_path / "t.txt", "abc" * 50)
    with pytest.raises(InvalidInput, match=r"option 'label' does not apply to a text file"):
        load_file(text, label="y")
    table = _write(tmp_path / "t.csv", "a,b\n1,2\n3,4\n")
    with pytest.raises(InvalidInput, match=r"columns: no column 'z'; it has a, b"):
        load_file(table, columns=["z"])
    with pytest.raises(InvalidInput, match=r"option 'context' does not apply to a .csv file"):
        load_file(table, context=8)


# ----------------------------------------------------------------------------- --data routing


def test_data_config_tells_names_from_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()  # a folder named like a data set: the name wins
    assert data_config("digits") == {"name": "digits"}
    assert data_config("./digits") == {
        "name": "file",
        "options": {"path": str(tmp_path / "digits")},
    }
    assert data_config("my.csv") == {"name": "file", "options": {"path": str(tmp_path / "my.csv")}}
    with pytest.raises(UnknownName, match=r"--data 'digitz': no such file or folder"):
        data_config("digitz")
