"""Default encoder and decoder networks for a data set, chosen from its DataSpec."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.vae.conditional import concat_features, feature_channels
from probgen.models.vae.decoders import (
    BernoulliDecoder,
    CategoricalDecoder,
    Decoder,
    DiscretizedLogisticDecoder,
    GaussianDecoder,
)
from probgen.models.vae.encoders import GaussianEncoder
from probgen.nn.conv import ConvDecoder, ConvEncoder
from probgen.nn.mlp import MLP
from probgen.nn.skip import LinearSkip

__all__ = ["DECODERS", "build_networks"]


def _gaussian(net: nn.Module, spec: DataSpec) -> Decoder:
    return GaussianDecoder(net, spec.event_shape, std=None)


def _bernoulli(net: nn.Module, spec: DataSpec) -> Decoder:
    return BernoulliDecoder(net, spec.event_shape)


def _categorical(net: nn.Module, spec: DataSpec) -> Decoder:
    return CategoricalDecoder(net, spec.event_shape, levels=_levels(spec))


def _logistic(net: nn.Module, spec: DataSpec) -> Decoder:
    return DiscretizedLogisticDecoder(net, spec.event_shape, levels=_levels(spec))


def _levels(spec: DataSpec) -> int:
    if spec.levels is None:
        raise InvalidInput("a discrete decoder needs discrete data (spec.levels is None)")
    return spec.levels


DECODERS: dict[str, tuple[Callable[[nn.Module, DataSpec], Decoder], Callable[[DataSpec], int]]] = {
    "gaussian": (_gaussian, lambda spec: 2),
    "bernoulli": (_bernoulli, lambda spec: 1),
    "categorical": (_categorical, _levels),
    "logistic": (_logistic, lambda spec: 2),
}
"""Decoder names (configs, CLI) -> (builder from a network, parameters per entry)."""


def build_networks(
    spec: DataSpec,
    latent_dim: int = 16,
    decoder: str | None = None,
    hidden: Sequence[int] = (256, 256),
    channels: Sequence[int] = (32, 64),
    activation: Callable[[], nn.Module] = nn.SiLU,
    condition: ConditionSpec | None = None,
    skip: bool = False,
) -> tuple[GaussianEncoder, Decoder]:
    """An encoder and a decoder for data described by ``spec``.

    The decoder follows the data unless ``decoder`` names one of ``DECODERS``:
    continuous (levels None) -> Gaussian with a learned σ(z) per entry; binary
    (2 levels) -> Bernoulli; K levels -> discretised logistic. Images
    (C, H, W) get the convolutional networks of ``probgen.nn.conv`` with
    ``channels``; any other event shape is flattened through MLPs with ``hidden``.
    On data with levels the encoder sees them centred to [-1, 1] (``GaussianEncoder``).

    With a ``condition`` (features of width W) the networks are those of a
    CVAE: the decoder reads [z, h] (Z + W inputs); the MLP encoder reads
    [flatten(x), h], the convolutional one x with W constant channels h
    (``probgen.models.vae.conditional``).

    With ``skip`` (vector data only) each MLP starts at zero beside a learned
    affine map of its input (``LinearSkip``), so the networks start as that
    affine map (``IdentityStart`` makes it the identity).
    """
    if decoder is None:
        decoder = (
            "gaussian" if spec.levels is None else "bernoulli" if spec.levels == 2 else "logistic"
        )
    if decoder not in DECODERS:
        raise InvalidInput(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    make_decoder, n_params = DECODERS[decoder]
    p = n_params(spec)
    cw = 0 if condition is None else condition.width
    if skip and len(spec.event_shape) == 3:
        raise InvalidInput("build_networks: skip needs vector data (MLP networks), got images")
    if len(spec.event_shape) == 3:
        c, h, w = spec.event_shape
        join = feature_channels
        enc_net: nn.Module = ConvEncoder((c + cw, h, w), 2 * latent_dim, channels, activation)
        dec_net: nn.Module = ConvDecoder(latent_dim + cw, (p * c, h, w), channels[::-1], activation)
    else:
        join = concat_features
        enc_net = nn.Sequential(
            nn.Flatten(), MLP(spec.dim + cw, 2 * latent_dim, hidden, activation, zero_last=skip)
        )
        dec_net = MLP(latent_dim + cw, p * spec.dim, hidden[::-1], activation, zero_last=skip)
        if skip:
            enc_net = LinearSkip(enc_net, spec.dim + cw, 2 * latent_dim)
            dec_net = LinearSkip(dec_net, latent_dim + cw, p * spec.dim)
    encoder = GaussianEncoder(enc_net, latent_dim, spec.levels, None if condition is None else join)
    return encoder, make_decoder(dec_net, spec)
