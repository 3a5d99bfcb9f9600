"""Data sets: toy 2-D shapes, digits, MNIST, text, simulators, your files; dequantization, bits/dim.

Conventions (docs/data.md): every data set has train / validation / test
splits and a ``DataSpec``; ordinal discrete data (pixels) are floating-point
tensors holding integers 0…K-1, text tokens are ``torch.long`` ids.
"""

from probgen.data.arrays import load_arrays
from probgen.data.base import SPLITS, ArrayDataset, Dataset
from probgen.data.dequantize import bits_per_dim, uniform_dequantize
from probgen.data.digits import Digits
from probgen.data.files import CorruptDataFile, MissingDataFile
from probgen.data.mnist import MNIST, FashionMNIST, download
from probgen.data.sampled import SampledDataset
from probgen.data.simulation import SimulationDataset
from probgen.data.text import TextCorpus, TinyShakespeare
from probgen.data.toy import ToyDataset
from probgen.data.userfiles import FileData, load_file

__all__ = [
    "MNIST",
    "SPLITS",
    "ArrayDataset",
    "CorruptDataFile",
    "Dataset",
    "Digits",
    "FashionMNIST",
    "FileData",
    "MissingDataFile",
    "SampledDataset",
    "SimulationDataset",
    "TextCorpus",
    "TinyShakespeare",
    "ToyDataset",
    "bits_per_dim",
    "download",
    "load_arrays",
    "load_file",
    "uniform_dequantize",
]
