"""The preset schema (pydantic v2): every section, validated once and frozen. No torch import here."""

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from contextrast_cli.config.base_size import BaseSize
from contextrast_cli.config.contrast import ContrastConfig
from contextrast_cli.config.datasets import DATASETS
from contextrast_cli.config.section import PosFloat, PosInt, Section as _Section, Unit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SyntheticData(_Section):
    """How the synthetic scenes of the ``synthetic`` dataset are generated."""

    num_train: PosInt = 200
    """Training scenes."""
    num_val: PosInt = 40
    """Validation scenes."""
    size: tuple[PosInt, PosInt] = (120, 160)
    """Scene size (height, width) in pixels."""
    seed: int = 0
    """Generator seed; the scenes are a pure function of (seed, index)."""


class ColorJitter(_Section):
    """Photometric augmentation (torchvision ColorJitter); 0 disables a term."""

    brightness: Unit = 0.25
    contrast: Unit = 0.25
    saturation: Unit = 0.25
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0


class DataConfig(_Section):
    """Dataset, augmentation and loading."""

    dataset: str
    """Dataset name: synthetic, camvid, cityscapes, ade20k, pascal-context, coco-stuff, folder (your own)."""
    root: Path | None = None
    """Prepared dataset folder. Default: $CONTEXTRAST_DATA/<dataset>, else data/<dataset>."""
    base_size: BaseSize | None = None
    """Resize each image first to fit inside {long, short} (aspect kept, small images enlarged), as
    mmsegmentation's Resize(scale=(long, short), keep_ratio=True); without short the long side
    becomes long (HRNet-Semantic-Segmentation's base_size). scale_range then applies to that size,
    and the test scales to eval.base_size (default: this). null: each image's own size."""
    crop_size: tuple[PosInt, PosInt]
    """Training crop (height, width); labels are padded with 255 where the image is smaller."""
    scale_range: tuple[PosFloat, PosFloat] = (0.5, 2.0)
    """Random rescaling factor range applied before cropping, relative to base_size when set (paper: 0.5-2.0)."""
    hflip: bool = True
    """Random horizontal flip with probability 0.5."""
    color_jitter: ColorJitter = ColorJitter()
    """Colour jitter strengths."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean of RGB in [0, 1], subtracted before the network."""
    std: tuple[PosFloat, PosFloat, PosFloat] = IMAGENET_STD
    """Per-channel standard deviation of RGB in [0, 1]."""
    workers: Annotated[int, Field(ge=0)] = 4
    """DataLoader worker processes (0 loads in the training process)."""
    synthetic: SyntheticData | None = None
    """Generation settings; only for dataset ``synthetic``, generated on first use."""

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in DATASETS:
            raise ValueError(f"unknown dataset {value!r}; choose one of: {', '.join(DATASETS)}")
        return value

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"scale_range must be (low, high) with low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _synthetic_only(self) -> "DataConfig":
        if self.synthetic is not None and self.dataset != "synthetic":
            raise ValueError("data.synthetic is only valid with dataset: synthetic")
        return self


class ModelConfig(_Section):
    """The segmentation network (see ``contextrast presets`` and the README for names)."""

    name: str = "deeplabv3"
    """Registered segmentor: hrnet, ocrnet, deeplabv3, deeplabv3plus, segformer, upernet."""
    backbone: str = "resnet50"
    """Backbone for the segmentor: hrnet_w48 / hrnet_w18 / hrnet_w18_small_v2 (hrnet, ocrnet);
    resnet18 / resnet34 / resnet50 / resnet101 / mobilenetv2_100 (deeplabv3, deeplabv3plus);
    mit-b0 / mit-b1 (segformer); swin_tiny_patch4_window7_224 (upernet)."""
    output_stride: Literal[8, 16, 32] | None = None
    """Backbone output stride of dilated ResNets (the paper: 8); null = the network's default
    (deeplabv3: 8, deeplabv3plus: 16). HRNet and OCRNet have fixed strides and take none."""
    pretrained: bool = False
    """Start from ImageNet weights, through timm's / Hugging Face's / torchvision's own download and
    cache (HF_HOME, HF_HUB_OFFLINE); without network access they must be in the cache."""
    weights: Path | None = None
    """Local backbone weights file (a state dict), loaded with weights_only=True."""
    options: dict[str, Any] = {}
    """Extra keyword arguments for the segmentor builder."""


class OptimConfig(_Section):
    """SGD with a poly learning-rate schedule (paper: momentum 0.9, wd 5e-4, power 0.9), or AdamW
    with a linear / poly schedule (SegFormer, Swin: lr 6e-5, betas 0.9/0.999, wd 0.01)."""

    name: Literal["sgd", "adamw"] = "sgd"
    """sgd (torch.optim.SGD with ``momentum``) or adamw (torch.optim.AdamW with ``betas``)."""
    lr: PosFloat = 0.01
    """Base learning rate."""
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    """SGD's momentum (unused by adamw)."""
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    """AdamW's (beta1, beta2) (unused by sgd)."""
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    schedule: Literal["poly", "linear"] = "poly"
    """poly: lr = base_lr * (1 - it / iterations) ** poly_power; linear: the same with power 1."""
    poly_power: Annotated[float, Field(ge=0)] = 0.9
    """The poly schedule's power (unused by linear)."""
    warmup_iters: Annotated[int, Field(ge=0)] = 0
    """Linear warm-up iterations (default, not in paper)."""
    head_lr_mult: PosFloat = 1.0
    """Learning-rate multiplier of the decode head (SegFormer's mmsegmentation configs: 10); the
    encoder and the contrastive heads keep ``lr``."""
    no_decay_norms: bool = False
    """No weight decay on normalisation layers and position tables (mmsegmentation's SegFormer and
    Swin configs: ``decay_mult=0`` for ``norm``, ``relative_position_bias_table``, ...)."""


class TrainConfig(_Section):
    """The training loop."""

    iterations: PosInt
    """Optimizer steps."""
    batch_size: PosInt
    """Images per step over all processes (the global batch, as the paper counts it): under
    torchrun / srun each of W processes takes batch_size / W."""
    eval_interval: PosInt = 1000
    """Validate every N iterations and at the end; best.pt follows val mIoU."""
    checkpoint_interval: PosInt = 500
    """Write last.pt and iter_<N>.pt every N iterations (last.pt also at the end and when stopped)."""
    log_interval: PosInt = 20
    """Append to metrics.jsonl every N iterations."""
    seed: int = 0
    """Seeds weights, data order and augmentation."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bfloat16 autocast on GPUs with native bfloat16 (compute capability 8.0+: A100, H100,
    RTX 30xx and later), float16 autocast with a gradient scaler on older GPUs (V100, T4), float32
    on the CPU. The contrastive loss is computed in float32 under every setting."""
    sync_bn: bool = True
    """With several GPUs, the network's BatchNorm layers normalise over the global batch
    (SyncBatchNorm); the CPU (gloo) has none and keeps per-process statistics."""
    output_dir: Path = Path("runs")
    """Run folders are created as <output_dir>/<preset name>/<timestamp>/ (``--runs-dir``)."""
    keep_checkpoints: Annotated[int, Field(ge=0)] = 2
    """Interval checkpoints (iter_000500.pt ...) kept besides last.pt and best.pt; 0 keeps none."""
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    """Experiment trackers beside metrics.jsonl and curves.png (any subset): tensorboard
    (<run>/tensorboard/), mlflow (MLFLOW_TRACKING_URI, else a local store in ./mlruns/), wandb
    (WANDB_MODE=offline works without a network). Extras: pip install 'contextrast[mlflow]' ..."""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        """Older names (old checkpoints, scripts): ``train.amp`` true -> precision auto, false ->
        fp32; ``train.tensorboard: true`` -> ``tensorboard`` in ``loggers``."""
        if isinstance(data, dict) and ("amp" in data or "tensorboard" in data):
            data = dict(data)
            if "amp" in data:
                data.setdefault("precision", "auto" if data.pop("amp") in (True, "true", "True", 1) else "fp32")
            if data.pop("tensorboard", False) in (True, "true", "True", 1):
                data["loggers"] = [*data.get("loggers", []), "tensorboard"]
        return data

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        head, _, index = value.partition(":")
        if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class EvalConfig(_Section):
    """Validation and ``contextrast evaluate``."""

    split: str = "val"
    """Split folder evaluated during training."""
    batch_size: PosInt = 1
    """Images per forward pass (images of one batch must share a size)."""
    scales: tuple[PosFloat, ...] = (1.0,)
    """Test scales, relative to base_size when set; several give multi-scale testing (paper: 0.75-2.0 step 0.25)."""
    base_size: BaseSize | None = None
    """Each image is resized to this base size (both bounds times the scale) for every test scale,
    and the logits back to the label's size; default: data.base_size. null: its own size."""
    flip: bool = False
    """Also average the horizontally flipped prediction."""
    amp: bool = False
    """Evaluate under the training precision (bfloat16 autocast where native); off: float32 metrics."""
    mode: Literal["whole", "slide"] = "whole"
    """whole: the network sees each (scaled) image at once; slide: windows of ``crop`` every
    ``stride`` pixels, overlapping logits averaged (for images larger than the training crop,
    e.g. Cityscapes 1024x2048 with 512x1024 windows)."""
    crop: tuple[PosInt, PosInt] | None = None
    """Sliding-window size (H, W); default: the training crop, data.crop_size."""
    stride: tuple[PosInt, PosInt] | None = None
    """Sliding-window step (H, W); default: two thirds of the crop."""
    boundary: bool = True
    """Also measure boundary IoU and the boundary F-score (``--no-boundary`` to skip)."""
    boundary_width: Annotated[float, Field(gt=0, lt=1)] = 0.02
    """Boundary IoU band width as a fraction of the image diagonal (Cheng et al., CVPR 2021: 0.02)."""
    boundary_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.0075
    """Boundary F-score matching distance as a fraction of the image diagonal (Csurka et al., BMVC 2013: 0.0075)."""


class Config(_Section):
    """A complete, validated run configuration."""

    name: str
    """Preset name; run folders are grouped by it."""
    description: str = ""
    """One line shown by ``contextrast presets``."""
    data: DataConfig
    model: ModelConfig = ModelConfig()
    contrast: ContrastConfig = ContrastConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _eval_defaults(self) -> "Config":
        """``eval.crop`` defaults to the training crop and ``eval.base_size`` to ``data.base_size``
        (after validation, so a bad data value is reported once, under its own name)."""
        update = {"crop": self.data.crop_size} if self.eval.crop is None else {}
        if self.eval.base_size is None and self.data.base_size is not None:
            update["base_size"] = self.data.base_size
        if update:
            object.__setattr__(self, "eval", self.eval.model_copy(update=update))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-friendly dict (paths as strings)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The resolved config as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
