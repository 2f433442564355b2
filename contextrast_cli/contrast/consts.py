"""Small tensors the loss reads every step, made once per value, dtype and device: no
host-to-device copy per step, and one operator less wherever a Python number would be wrapped
(``torch.where(mask, x, 0.0)`` dispatches a scalar tensor, then the where)."""

from functools import lru_cache

import torch


@lru_cache(maxsize=64)
def constant(values, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A tensor of ``values`` (a number: 0-dimensional; a tuple: 1-dimensional), made once."""
    return torch.tensor(values, dtype=dtype, device=device)


def fill(like: torch.Tensor, value) -> torch.Tensor:
    """``value`` as a 0-dimensional tensor of ``like``'s dtype and device (made once): the third
    argument of a ``torch.where`` that dispatches one operator, not two."""
    return constant(value, like.dtype, str(like.device))
