"""One small, CPU-cheap configuration per registered network, shared by every test that
parametrises over the registry (forward sizes, short training, ONNX export)."""

from contextrast_cli.config import ModelConfig

SMALL_MODELS: dict[str, ModelConfig] = {
    "deeplabv3": ModelConfig(name="deeplabv3", backbone="resnet18", output_stride=8),
    "deeplabv3plus": ModelConfig(name="deeplabv3plus", backbone="resnet18", output_stride=16),
    "hrnet": ModelConfig(name="hrnet", backbone="hrnet_w18_small_v2"),
    "ocrnet": ModelConfig(name="ocrnet", backbone="hrnet_w18_small_v2", options={"channels": 64, "key_channels": 32}),
}
