"""Normalizing flows: the transform contract, the layers, the Flow model and its families.

base          Transform (forward/inverse returning the log|det J|), Compose, Inverse
elementwise   univariate bijections: the contract, Affine
spline        RationalQuadraticSpline (with a closed-form gradient)
coupling      Coupling (RealNVP / Glow / coupling NSF)
autoregressive  MaskedAutoregressive (MAF; its Inverse is IAF)
linear        ActNorm, LULinear (1×1 convolution), Permutation
reshape       Reshape, Squeeze, FactorOut (multi-scale)
flow          Flow = base distribution + transform, exact log_prob and sample (of x or x | c)
prior         ConditionalNormal (Glow's class-conditional prior), MixtureNormal (EM-started)
builders      RealNVP, MAF, IAF, NSF on vectors
glow          Glow on images
"""

from probgen.models.flows.autoregressive import MaskedAutoregressive
from probgen.models.flows.base import Compose, Inverse, Transform
from probgen.models.flows.builders import IAF, MAF, NSF, RealNVP, VectorFlow, stack
from probgen.models.flows.coupling import Coupling, half_mask, with_context
from probgen.models.flows.elementwise import Affine, ElementwiseTransform
from probgen.models.flows.flow import Flow
from probgen.models.flows.glow import CouplingConvNet, Glow, glow_level
from probgen.models.flows.linear import ActNorm, LULinear, Permutation
from probgen.models.flows.prior import ConditionalNormal, MixtureNormal
from probgen.models.flows.reshape import FactorOut, Reshape, Squeeze
from probgen.models.flows.spline import RationalQuadraticSpline

__all__ = [
    "IAF",
    "MAF",
    "NSF",
    "ActNorm",
    "Affine",
    "Compose",
    "ConditionalNormal",
    "Coupling",
    "CouplingConvNet",
    "ElementwiseTransform",
    "FactorOut",
    "Flow",
    "Glow",
    "Inverse",
    "LULinear",
    "MaskedAutoregressive",
    "MixtureNormal",
    "Permutation",
    "RationalQuadraticSpline",
    "RealNVP",
    "Reshape",
    "Squeeze",
    "Transform",
    "VectorFlow",
    "glow_level",
    "half_mask",
    "stack",
    "with_context",
]
