"""ImageNet starts: the one place that knows which pretrained weights an encoder takes, where
they come from, and what to say when they cannot be had.

Weights come through the libraries' own download and cache, which users already know:

- timm encoders (ResNet-18/34, HRNet, MobileNetV2, Swin): ``timm.create_model(...,
  pretrained=True)``, i.e. the Hugging Face hub repo ``timm/<name>.<tag>``;
- SegFormer's MiT encoders: ``transformers.SegformerModel.from_pretrained("nvidia/mit-b0")``;
- torchvision ResNet-50/101: torchvision's weights enum (``$TORCH_HOME/hub/checkpoints``).

The hub cache is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub`` (default ``~/.cache/huggingface/hub``),
read when a model is built; ``HF_HUB_OFFLINE=1`` keeps the libraries off the network.
``check_available`` fetches (or finds) the files before anything else of a run happens, so a
missing file stops training with one line naming the weights, the cache and the two fixes.
"""

import os
from pathlib import Path

from contextrast_cli.errors import ConfigError

IMAGENET_TAGS = {
    "resnet18": "resnet18.a1_in1k",
    "resnet34": "resnet34.a1_in1k",
    "hrnet_w18_small_v2": "hrnet_w18_small_v2.ms_in1k",
    "hrnet_w18": "hrnet_w18.ms_in1k",
    "hrnet_w48": "hrnet_w48.ms_in1k",
    "mobilenetv2_100": "mobilenetv2_100.ra_in1k",
    "swin_tiny_patch4_window7_224": "swin_tiny_patch4_window7_224.ms_in1k",
}
"""timm name -> the ImageNet-1k weights (``name.tag``) an ImageNet start loads (mmsegmentation's
starts are ImageNet-1k classifiers)."""
MIT_REPOS = {"mit-b0": "nvidia/mit-b0", "mit-b1": "nvidia/mit-b1"}
"""SegFormer encoder -> its Hugging Face hub repo (NVIDIA's ImageNet-1k MiT weights)."""
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_cache() -> Path:
    """The Hugging Face hub cache the libraries use, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_cache() -> Path:
    """torch.hub's checkpoint cache (torchvision's weights)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_source(backbone: str) -> tuple[str, str]:
    """(library, weights) of ``backbone``'s ImageNet start: ``("timm", "mobilenetv2_100.ra_in1k")``,
    ``("transformers", "nvidia/mit-b0")`` or ``("torchvision", "ResNet50_Weights.IMAGENET1K_V2")``."""
    if backbone in MIT_REPOS:
        return "transformers", MIT_REPOS[backbone]
    if backbone in ("resnet50", "resnet101"):
        return "torchvision", f"ResNet{backbone[6:]}_Weights.IMAGENET1K_V2"
    return "timm", IMAGENET_TAGS.get(backbone, backbone)


def unavailable(weights: str, where: Path, why: str = "") -> ConfigError:
    """The one-line error for ImageNet weights that could not be had."""
    because = f" ({why})" if why else ""
    return ConfigError(f"model.pretrained: the ImageNet weights {weights} are not in the cache {where} and could "
                       f"not be downloaded{because}; fetch them into that cache on a machine with network access, "
                       f"or set model.weights: PATH to a local state dict, or train from scratch "
                       f"with --set model.pretrained=false")


def check_available(backbone: str) -> Path:
    """Find ``backbone``'s ImageNet weights in the cache, downloading them when allowed.

    Returns:
        the cached weights file.

    Raises:
        ConfigError: neither cached nor downloadable (one line: weights, cache, the fixes).
    """
    library, weights = imagenet_source(backbone)
    if library == "torchvision":
        return _torchvision_file(weights)
    repo = f"timm/{weights}" if library == "timm" else weights
    from huggingface_hub import hf_hub_download

    cache, why = hub_cache(), ""
    for filename in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, filename, cache_dir=cache))
        except OSError as exc:  # offline, not cached, no such file in the repo (all OSErrors)
            why = why or type(exc).__name__
    raise unavailable(f"{repo} ({library})", cache, why)


def _torchvision_file(weights: str) -> Path:
    from torchvision.models import resnet

    enum = getattr(resnet, weights.split(".")[0]).IMAGENET1K_V2
    torchvision_weights(enum, True)
    return torch_cache() / Path(enum.url).name


def initial_weights(backbone: str, pretrained: bool, weights: Path | None) -> str:
    """Where a new network's encoder weights come from, as a checkpoint records it:
    ``"scratch"``, ``"imagenet:<weights>@<cache>"`` or ``"file:<path>"`` (the file wins)."""
    if weights is not None:
        return f"file:{Path(weights).resolve()}"
    if not pretrained:
        return "scratch"
    library, source = imagenet_source(backbone)
    cache = torch_cache() if library == "torchvision" else hub_cache()
    return f"imagenet:{'timm/' if library == 'timm' else ''}{source}@{cache}"


def timm_encoder(name: str, pretrained: bool, **kwargs):
    """``timm.create_model(name, pretrained=..., **kwargs)`` with the ImageNet-1k tag of
    ``IMAGENET_TAGS`` and the hub cache of ``hub_cache``; a failed fetch is one ConfigError."""
    import timm

    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    tag = IMAGENET_TAGS.get(name, name)
    try:
        return timm.create_model(tag, pretrained=True, cache_dir=hub_cache(), **kwargs)
    except OSError as exc:
        raise unavailable(f"timm/{tag} (timm)", hub_cache(), type(exc).__name__) from None


def segformer_encoder(backbone: str, config, pretrained: bool):
    """A MiT encoder (``transformers.SegformerModel``): random weights from ``config``, or the
    ImageNet weights of ``MIT_REPOS[backbone]`` through ``from_pretrained`` (hub cache)."""
    from transformers import SegformerModel

    if not pretrained:
        return SegformerModel(config)
    repo = MIT_REPOS[backbone]
    try:
        return SegformerModel.from_pretrained(repo, config=config, cache_dir=hub_cache())
    except OSError as exc:
        raise unavailable(f"{repo} (transformers)", hub_cache(), type(exc).__name__) from None


def torchvision_weights(enum, pretrained: bool):
    """torchvision's weights enum when ``pretrained`` (checked in the cache first), else None."""
    if pretrained:
        try:
            enum.get_state_dict(progress=False)
        except OSError as exc:
            raise unavailable(f"{enum} (torchvision)", torch_cache(), type(exc).__name__) from None
    return enum if pretrained else None
