"""The model registry (a small explicit registry: name -> builder, loud on duplicates and misses)
and the one place config -> builder keywords happens.

Builders register themselves when ``contextrast_cli.models`` is imported (its ``__init__``
imports every model module); this module never imports them back.
"""

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from contextrast_cli.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from contextrast_cli.errors import ConfigError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Maps names to builders.

    Args:
        kind: what the registry holds, used in messages (``"model"``).
        field: the config field that names an entry (``"model.name"``).
    """

    def __init__(self, kind: str, field: str) -> None:
        self.kind = kind
        self.field = field
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``fn`` under ``name``; raises on duplicates."""

        def add(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        """The entry for ``name``; a ConfigError listing the choices on a miss."""
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries))
            raise ConfigError(
                f"{self.field}: unknown {self.kind} {name!r}; choose one of: {choices}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


MODELS = Registry("model", "model.name")


def accepts(name: str, keyword: str) -> bool:
    """Whether the builder registered as ``name`` takes ``keyword``."""
    return keyword in inspect.signature(MODELS.get(name)).parameters


def builder_kwargs(cfg: ModelConfig, num_classes: int) -> dict:
    """The keyword arguments ``cfg`` gives the builder of ``cfg.name``.

    Raises:
        ConfigError: unknown name, or a setting the builder does not take.
    """
    builder = MODELS.get(cfg.name)
    kwargs = dict(num_classes=num_classes, backbone=cfg.backbone, weights=cfg.weights,
                  pretrained=cfg.pretrained and cfg.weights is None,  # a local file wins over ImageNet
                  **cfg.options)
    accepted = inspect.signature(builder).parameters
    if cfg.output_stride is not None:
        if "output_stride" not in accepted:
            raise ConfigError(f"model.output_stride: {cfg.name} has fixed strides and takes no "
                              f"output_stride; remove it (--set model.output_stride=null)")
        kwargs["output_stride"] = cfg.output_stride
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model.options: {cfg.name} does not take {', '.join(unknown)}; "
                          f"it takes: {', '.join(k for k in accepted if k != 'num_classes')}")
    return kwargs


def build_model(cfg: ModelConfig, num_classes: int, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD):
    """Build the registered segmentor named by ``cfg.name``.

    Args:
        mean, std: the input normalisation (RGB in [0, 1] units, ``data.mean`` / ``data.std``),
            kept by the segmentor as its ``pixel_mean`` / ``pixel_std`` buffers.

    Raises:
        ConfigError: unknown name or a setting the builder does not take.
    """
    model = MODELS.get(cfg.name)(**builder_kwargs(cfg, num_classes))
    model.set_normalization(mean, std)
    return model
