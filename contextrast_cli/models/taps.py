"""Multi-scale features of any torchvision or timm model, for the contrastive losses of
``contextrast_cli.api``: torchvision's ``create_feature_extractor`` (FX) for a model and the
node names to tap, timm's ``features_only`` models as they are."""

import difflib
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


class Tapped(NamedTuple):
    """What a ``FeatureTap`` returns: the model's output node (None when none was asked for) and
    the tapped maps [F_1 .. F_I], shallow to deep."""

    out: torch.Tensor | None
    features: list[torch.Tensor]


class FeatureTap(nn.Module):
    """A model whose forward returns ``Tapped(out, features)`` (see ``tap_features``).

    Attributes:
        channels: channels of each tapped map, the losses' ``in_channels``.
        strides: input size / map size of each tapped map.
        nodes: what was tapped (node names, or timm's feature module names).
    """

    def __init__(self, module: nn.Module, nodes: Sequence[str], output: str | None, timm_features: bool) -> None:
        super().__init__()
        self.module, self.nodes, self.output, self._timm = module, tuple(nodes), output, timm_features
        self.channels: tuple[int, ...] = ()
        self.strides: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> Tapped:
        if self._timm:
            return Tapped(None, list(self.module(x)))
        found = self.module(x)
        return Tapped(found.get("out"), [found[f"f{i}"] for i in range(len(self.nodes))])

    def extra_repr(self) -> str:
        return f"nodes={self.nodes}, output={self.output!r}, channels={self.channels}, strides={self.strides}"


def tap_features(model: nn.Module, nodes: Sequence[str] | None = None, *, output: str | None = None,
                 probe_size: tuple[int, int] = (128, 128), in_chans: int = 3) -> FeatureTap:
    """Wrap ``model`` so that one forward returns its output and its multi-scale features.

    A timm model created with ``features_only=True`` is used as it is (its ``feature_info``
    gives the channels and strides; leave ``nodes`` and ``output`` unset). Any other model is
    traced with torchvision's ``create_feature_extractor``: ``nodes`` names the maps to tap,
    shallow to deep, and ``output`` the node whose value is the logits (for torchvision's
    segmentation models, ``"interpolate"``); list a model's node names with
    ``torchvision.models.feature_extraction.get_graph_node_names(model)``. Channels and
    strides are then read from one forward of a ``probe_size`` input without gradients, in
    eval mode (the model's mode is restored).

    Raises:
        ValueError: no nodes for a model that is not a timm ``features_only`` one; a node that
            is not in the model (the closest names are suggested).
    """
    if _is_timm_features(model):
        if nodes is not None or output is not None:
            raise ValueError("a timm features_only model taps the maps it was created with (out_indices=...): "
                             "leave nodes and output unset")
        tap = FeatureTap(model, model.feature_info.module_name(), None, timm_features=True)
        tap.channels = tuple(model.feature_info.channels())
        tap.strides = tuple(model.feature_info.reduction())
        return tap
    if not nodes:
        raise ValueError("nodes: name the maps to tap, shallow to deep (see torchvision.models.feature_extraction."
                         "get_graph_node_names(model)), or pass a timm model created with features_only=True")
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    known = set(get_graph_node_names(model)[0])
    for node in [*nodes, *([output] if output else [])]:
        if node not in known and not any(name.startswith(f"{node}.") for name in known):  # a module: its last node
            close = difflib.get_close_matches(node, sorted(known), n=3)
            raise ValueError(f"node {node!r} is not in the model; closest: {', '.join(close) or 'none'} "
                             "(all names: torchvision.models.feature_extraction.get_graph_node_names(model))")
    return_nodes = {node: f"f{i}" for i, node in enumerate(nodes)} | ({output: "out"} if output else {})
    tap = FeatureTap(create_feature_extractor(model, return_nodes), nodes, output, timm_features=False)
    tap.channels, tap.strides = _probe(tap, probe_size, in_chans)
    return tap


def _is_timm_features(model: nn.Module) -> bool:
    """A timm ``features_only`` network: its forward returns the maps its ``feature_info`` describes."""
    info = getattr(model, "feature_info", None)
    return hasattr(info, "channels") and hasattr(info, "reduction") and hasattr(info, "module_name")


def _probe(tap: FeatureTap, size: tuple[int, int], in_chans: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(channels, strides) of the tapped maps from one forward of a zero image of ``size``."""
    reference = next(tap.parameters(), None)
    device, dtype = (reference.device, reference.dtype) if reference is not None else ("cpu", torch.float32)
    was_training = tap.training
    tap.eval()
    try:
        with torch.no_grad():
            features = tap(torch.zeros(1, in_chans, *size, device=device, dtype=dtype)).features
    finally:
        tap.train(was_training)
    channels = tuple(int(f.shape[1]) for f in features)
    strides = tuple(max(1, round(size[0] / f.shape[-2])) for f in features)
    return channels, strides
