"""A folder of PNG / JPEG images as one array, read with Pillow; class labels from subfolders.

Layouts (the convention of torchvision's ``ImageFolder``)::

    faces/a.png, faces/b.png, …              unconditional
    pets/cat/1.png, pets/dog/7.jpg, …        classes = sorted subfolder names

Every image is decoded by Pillow. Images are grayscale (one channel) when
every file is grayscale, else RGB (an alpha channel is dropped); all must
have the same width and height.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probgen.core import InvalidInput
from probgen.data.files import CorruptDataFile, MissingDataFile

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "read_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Files of a folder read as images (any case); other files are ignored."""

_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass(frozen=True)
class ImageFolder:
    """The images of a folder.

    Attributes:
        pixels: ``(N, C, H, W)`` uint8, C = 1 (grayscale) or 3 (RGB).
        labels: ``(N,)`` int64 class ids (index into ``classes``), or None
            when the images are not in class subfolders.
        classes: the subfolder names, sorted; ``classes[k]`` is label k.
        files: the image files, in the order of the rows.
    """

    pixels: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    files: tuple[Path, ...]


def read_image_folder(folder: Path) -> ImageFolder:
    """Read every image of ``folder`` (or of its class subfolders) with Pillow.

    Raises ``MissingDataFile`` for a missing folder, ``InvalidInput`` for a
    folder without images, images both at the top and in subfolders, or
    images of mixed sizes (naming two files and their sizes), and
    ``CorruptDataFile`` naming a file Pillow cannot decode.
    """
    if not folder.is_dir():
        raise MissingDataFile(f"{folder}: no such folder")
    top = _images(folder)
    subfolders = sorted(d for d in folder.iterdir() if d.is_dir() and _images(d))
    if top and subfolders:
        raise InvalidInput(
            f"{folder}: images both in the folder ({top[0].name}) and in class subfolders "
            f"({subfolders[0].name}/); put every image in a class subfolder, or none"
        )
    if not top and not subfolders:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise InvalidInput(f"{folder}: no images ({suffixes}) in it or its subfolders")
    if top:
        files, labels = top, None
    else:
        per_class = [_images(d) for d in subfolders]
        files = [f for group in per_class for f in group]
        labels = np.repeat(np.arange(len(subfolders)), [len(g) for g in per_class])
    decoded = [_open(f) for f in files]
    mode = "L" if all(img.mode in _GRAY_MODES for img in decoded) else "RGB"
    size = decoded[0].size
    for f, img in zip(files, decoded, strict=True):
        if img.size != size:
            raise InvalidInput(
                f"{folder}: images of mixed sizes: {files[0].name} is {size[0]}×{size[1]}, "
                f"{f.relative_to(folder)} is {img.size[0]}×{img.size[1]} (width×height)"
            )
    pixels = np.stack([np.asarray(img.convert(mode), dtype=np.uint8) for img in decoded])
    pixels = pixels[:, None] if mode == "L" else pixels.transpose(0, 3, 1, 2)  # (N, C, H, W)
    classes = tuple(d.name for d in subfolders)
    return ImageFolder(np.ascontiguousarray(pixels), labels, classes, tuple(files))


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Image:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise CorruptDataFile(f"{path}: not a readable image ({e})") from e
