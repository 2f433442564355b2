"""Backbones with multi-scale taps: ``forward(x) -> [F_1, ..., F_I]`` (F_I deepest).

Each backbone exposes ``channels`` and ``strides`` of its taps, which the heads
and the contrastive projection heads are built from.
"""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet

from contextrast_cli.errors import ConfigError
from contextrast_cli.models.pretrained import timm_encoder, torchvision_weights

TORCHVISION_RESNETS = {
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights.IMAGENET1K_V2),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights.IMAGENET1K_V2),
}
TIMM_RESNETS = ("resnet18", "resnet34", "mobilenetv2_100")
"""timm encoders with four taps at strides 4-32 that dilate to an output stride (MobileNetV2's taps:
24, 32, 96, 320 channels, as mmsegmentation's DeepLabV3+ on MobileNetV2 uses)."""
TIMM_HRNETS = ("hrnet_w18_small_v2", "hrnet_w18", "hrnet_w48")
DILATION = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


class Backbone(nn.Module):
    """Base class: ``channels`` and ``strides`` describe the taps, shallow to deep."""

    channels: list[int]
    strides: list[int]
    size_divisor: int = 1
    """Input height and width must be multiples of this; the segmentor pads and crops back."""
    fixed_size_export: str | None = None
    """Why the ONNX graph can only have one input size (None: dynamic height and width export)."""


class TorchvisionResNet(Backbone):
    """A torchvision ResNet-50/101, dilated to ``output_stride``, tapped after layer1..layer4."""

    def __init__(self, name: str, output_stride: int, pretrained: bool) -> None:
        super().__init__()
        builder, weights = TORCHVISION_RESNETS[name]
        net = builder(weights=torchvision_weights(weights, pretrained),
                      replace_stride_with_dilation=DILATION[output_stride])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [256, 512, 1024, 2048]
        self.strides = [4, 8, min(16, output_stride), output_stride]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class TimmBackbone(Backbone):
    """Any timm model with ``features_only``; taps = the last four feature levels."""

    def __init__(self, name: str, output_stride: int, pretrained: bool) -> None:
        super().__init__()
        kwargs = {"output_stride": output_stride} if output_stride != 32 else {}
        self.body = timm_encoder(name, pretrained, features_only=True, out_indices=(1, 2, 3, 4), **kwargs)
        self.channels = list(self.body.feature_info.channels())
        self.strides = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


class TimmHRNet(Backbone):
    """A timm HRNet; taps = the four raw branch outputs of the last stage (strides 4-32).

    ``feature_location=""`` keeps timm from building the classification "incre"
    modules (whose widened channels are not HRNetV2's features); the rest of the
    classification head (downsampling, final layer, classifier) is never built.
    The stages fuse branches by exact 2x upsampling, hence ``size_divisor = 32``.
    """

    size_divisor = 32

    def __init__(self, name: str, output_stride: int, pretrained: bool) -> None:
        super().__init__()
        self.body = timm_encoder(name, pretrained, features_only=True, feature_location="",
                                 out_indices=(1, 2, 3, 4))
        self.channels = list(self.body.feature_info.channels())
        self.strides = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def build_backbone(name: str, output_stride: int, pretrained: bool = False,
                   weights: Path | None = None) -> Backbone:
    """Build a tapped (dilatable) ResNet; ``weights`` is a local state dict (weights_only).

    Raises:
        ConfigError: unknown name, or pretrained weights that cannot be fetched.
    """
    if name in TORCHVISION_RESNETS:
        factory = TorchvisionResNet
    elif name in TIMM_RESNETS:
        factory = TimmBackbone
    else:
        choices = ", ".join([*TIMM_RESNETS, *TORCHVISION_RESNETS])
        raise ConfigError(f"model.backbone: unknown backbone {name!r}; choose one of: {choices}")
    return _instantiate(factory, name, output_stride, pretrained, weights)


def build_hrnet_backbone(name: str, pretrained: bool = False, weights: Path | None = None) -> Backbone:
    """Build a tapped HRNet (fixed strides 4, 8, 16, 32); ``weights`` as in ``build_backbone``.

    Raises:
        ConfigError: not an HRNet name, or pretrained weights that cannot be fetched.
    """
    if name not in TIMM_HRNETS:
        raise ConfigError(f"model.backbone: unknown HRNet backbone {name!r}; choose one of: {', '.join(TIMM_HRNETS)}")
    return _instantiate(TimmHRNet, name, 32, pretrained, weights)


def _instantiate(factory: type[Backbone], name: str, output_stride: int, pretrained: bool,
                 weights: Path | None) -> Backbone:
    backbone = factory(name, output_stride, pretrained)  # a failed ImageNet fetch: ConfigError (pretrained.py)
    if weights is not None:
        load_backbone_weights(backbone, Path(weights))
    return backbone


def load_backbone_weights(backbone: Backbone, path: Path) -> None:
    """Load a local state dict into ``backbone`` (tensor-only, never executes code)."""
    if not path.is_file():
        raise ConfigError(f"model.weights: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.weights: {path} is not a loadable state dict ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = backbone.state_dict()
    if isinstance(state, dict) and not set(state) & set(own) and any(f"body.{k}" in own for k in state):
        state = {f"body.{k}": v for k, v in state.items()}  # a plain timm checkpoint of a wrapped body
    if not isinstance(state, dict) or not set(state) & set(own):
        raise ConfigError(f"model.weights: no key of {path} matches the backbone; "
                          f"expected keys like {next(iter(own))!r}")
    backbone.load_state_dict(state, strict=False)
