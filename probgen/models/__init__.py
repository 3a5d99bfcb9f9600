"""Model families; ``build_model`` builds a registered one for a data set.

Each family lives in its own module (``vae``, ``flows``, ``autoregressive``,
``gan``, ``ebm``, ``diffusion``, ``gaussian``) and is imported on use.
``build_model`` wraps a family once where the data need it: ``Dequantized``
turns a density model into a model of integer data, ``Standardized`` makes
a model of continuous data independent of the data's units.
"""

from probgen.models.build import build_model
from probgen.models.dequantized import Dequantized
from probgen.models.standardize import Standardized, fit_standardization

__all__ = ["Dequantized", "Standardized", "build_model", "fit_standardization"]
