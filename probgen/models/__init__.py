"""Model families; ``build_model`` builds a registered one for a data set.

Each family lives in its own module (``vae``, ``flows``, ``autoregressive``,
``gan``, ``ebm``, ``diffusion``, ``gaussian``) and is imported on use.
``Dequantized`` turns any density model into a model of integer data.
"""

from probgen.models.dequantized import Dequantized, build_model

__all__ = ["Dequantized", "build_model"]
