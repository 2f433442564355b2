"""One small, CPU-cheap configuration per registered network, shared by every test that
parametrises over the registry (forward sizes, short training, ONNX export)."""

from contextrast_cli.config import ModelConfig

SMALL_MODELS: dict[str, ModelConfig] = {
    "deeplabv3": ModelConfig(name="deeplabv3", backbone="resnet18", output_stride=8),
    "deeplabv3plus": ModelConfig(name="deeplabv3plus", backbone="resnet18", output_stride=16),
    "hrnet": ModelConfig(name="hrnet", backbone="hrnet_w18_small_v2"),
    "ocrnet": ModelConfig(name="ocrnet", backbone="hrnet_w18_small_v2", options={"channels": 64, "key_channels": 32}),
    "deeplabv3plus-mobilenetv2": ModelConfig(name="deeplabv3plus", backbone="mobilenetv2_100", output_stride=16,
                                             options={"channels": 32}),
    "segformer": ModelConfig(name="segformer", backbone="mit-b0", options={"channels": 32}),
    "upernet": ModelConfig(name="upernet", backbone="swin_tiny_patch4_window7_224",
                           options={"channels": 32, "depths": [2, 2, 2, 1], "img_size": [64, 96]}),
}
"""Keyed by network (a registered name, or name-backbone for a second backbone of one name)."""

DOCUMENTED_TAPS: dict[str, tuple[list[int], list[int]]] = {
    "deeplabv3plus-mobilenetv2": ([24, 32, 96, 320], [4, 8, 16, 32]),
    "segformer": ([32, 64, 160, 256], [4, 8, 16, 32]),
    "segformer-b1": ([64, 128, 320, 512], [4, 8, 16, 32]),
    "upernet": ([96, 192, 384, 768], [4, 8, 16, 32]),
}
"""(channels, strides) of the new networks' taps at full size, as their papers / timm document
them (MobileNetV2 at output stride 32; MiT-B0, MiT-B1 (SegFormer Table 6); Swin-T)."""
