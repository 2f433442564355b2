"""The base size every image is resized to before the random scale (training) and the test scales
(evaluation): ``data.base_size`` and ``eval.base_size``. No torch import here.

Two conventions of the codebases the paper builds on, one rule:

- mmsegmentation's ``Resize(scale=(2048, 512), keep_ratio=True)`` (mmcv ``rescale_size``): the
  largest size with the long side <= 2048 and the short side <= 512, aspect kept (small images
  are enlarged): ``{long: 2048, short: 512}``.
- HRNet-Semantic-Segmentation's ``base_size: 520`` (``BaseDataset.multi_scale_aug``): the long
  side becomes 520, aspect kept: ``{long: 520}``. Equal to mmcv's ``scale=(520, 520)``: the short
  side is never longer than the long one, so 520 / short >= 520 / long and the long side's bound
  is always the one that binds.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BaseSize(BaseModel):
    """Resize to fit inside ``long`` x ``short`` (long side <= ``long``, short side <= ``short``),
    as large as fits, aspect ratio kept; without ``short`` the long side becomes ``long``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    long: Annotated[int, Field(gt=0)]
    """Bound on the long side in pixels (mmsegmentation ADE20K / COCO-Stuff: 2048; HRNet: 520)."""
    short: Annotated[int, Field(gt=0)] | None = None
    """Bound on the short side in pixels (mmsegmentation ADE20K / COCO-Stuff: 512); null: the long
    side alone decides, as HRNet-Semantic-Segmentation's base_size."""

    @model_validator(mode="after")
    def _short_not_longer(self) -> "BaseSize":
        if self.short is not None and self.short > self.long:
            raise ValueError(f"short ({self.short}) must not exceed long ({self.long})")
        return self

    def fit(self, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
        """(H, W) of a ``height`` x ``width`` image resized to this base size with both bounds
        times ``scale`` (a test scale), aspect kept.

        The factor is ``scale * min(long / max(H, W), short / min(H, W))``; each side becomes
        ``int(side * factor + 0.5)`` (mmcv ``rescale_size``), at least 1.
        """
        factor = self.long / max(height, width)
        if self.short is not None:
            factor = min(factor, self.short / min(height, width))
        factor *= scale
        return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))
