"""One small, CPU-cheap configuration per registered network, shared by every test that
parametrises over the registry (forward sizes, short training, ONNX export)."""

from contextrast_cli.config import ModelConfig

SMALL_MODELS: dict[str, ModelConfig] = {
    "deeplabv3": ModelConfig(name="deeplabv3", backbone="resnet18", output_stride=8),
    "deeplabv3plus": ModelConfig(name="deeplabv3plus", backbone="resnet18", output_stride=16),
}
