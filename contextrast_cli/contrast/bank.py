"""Contextrast++'s class-balanced memory bank and anchor-to-anchor (AA) loss (METHOD.md section
6.2), vectorised over classes (the plain form is ``contrast.plain.anchor_to_anchor_loss``).

The bank is training state, kept outside the module's parameters and buffers: it travels in the
loss's ``state_dict`` (``get_extra_state``), so checkpoints save it and a resume continues it bit
for bit, while DistributedDataParallel, which broadcasts buffers, never sends it (every process
pushes the same global anchors, so the banks stay equal without communication).
"""

import torch
from torch import nn

from contextrast_cli.contrast.consts import fill
from contextrast_cli.contrast.plain import BankDraw


class AnchorBank(nn.Module):
    """One FIFO queue of ``size`` (K_M) unit anchors per class.

    Args:
        num_classes, size, dim: K, K_M and the anchors' width d.
        balanced: each class contributes ``size`` entries to a read, drawn with replacement while
            its queue holds fewer (default, not in paper); False: its queue as it is.
    """

    def __init__(self, num_classes: int, size: int, dim: int, balanced: bool = True) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"bank_size must be >= 1, got {size}")
        self.num_classes, self.size, self.dim, self.balanced = num_classes, size, dim, balanced
        self.entries = torch.zeros(num_classes, size, dim)  # (K, K_M, D)
        self.filled = torch.zeros(num_classes, dtype=torch.long)  # (K,) entries held
        self.head = torch.zeros(num_classes, dtype=torch.long)  # (K,) the slot the next push writes

    def push(self, anchors: torch.Tensor, chosen: torch.Tensor) -> None:
        """Append ``anchors`` (K, D) (detached) to the queues of the ``chosen`` (K,) classes, each
        replacing its oldest entry once full. No host synchronisation."""
        rows = torch.arange(self.num_classes, device=self.entries.device)
        current = self.entries[rows, self.head]
        new = torch.where(chosen[:, None], anchors.detach().to(self.entries.dtype), current)
        self.entries = self.entries.index_put((rows, self.head), new)  # a new tensor: a state_dict taken before stays
        step = chosen.long()
        self.head = (self.head + step) % self.size
        self.filled = (self.filled + step).clamp_max(self.size)

    def draw(self, generator: torch.Generator | None = None) -> BankDraw:
        """The entries a step reads: per class its whole queue once full; before, ``size`` draws
        with replacement from its entries (balanced) or its entries once each. One random draw a
        step whatever the fill, so the random stream does not depend on it."""
        k, size, device = self.num_classes, self.size, self.entries.device
        slots = torch.arange(size, device=device).expand(k, size)
        filled = self.filled[:, None]
        random = (torch.rand(k, size, device=device, generator=generator) * filled).long().clamp_max(size - 1)
        if self.balanced:
            index, valid = torch.where(filled >= size, slots, random), (filled > 0).expand(k, size)
        else:
            index, valid = slots, slots < filled
        return BankDraw(self.entries.gather(1, index[..., None].expand(k, size, self.dim)), valid)

    def fill_stats(self) -> dict[str, torch.Tensor]:
        """The queues' fill over the dataset's classes: ``aa_fill_min`` / ``_mean`` / ``_max``."""
        filled = self.filled.float()
        return {"aa_fill_min": filled.min(), "aa_fill_mean": filled.mean(), "aa_fill_max": filled.max()}

    def get_extra_state(self) -> dict:
        return {"entries": self.entries, "filled": self.filled, "head": self.head}

    def set_extra_state(self, state: dict) -> None:
        shape = (self.num_classes, self.size, self.dim)
        if tuple(state["entries"].shape) != shape:
            raise ValueError(f"the saved memory bank has shape {tuple(state['entries'].shape)}, this loss's {shape} "
                             f"(classes, contrast.aa.bank_size, contrast.embed_dim): resume with the same settings")
        device = self.entries.device
        self.entries = state["entries"].to(device, self.entries.dtype, copy=True)  # never the source's tensors
        self.filled, self.head = state["filled"].to(device, copy=True), state["head"].to(device, copy=True)

    def _apply(self, fn, recurse=True):
        """``.to()``, ``.cuda()``, ``.double()`` ... move the queues too."""
        super()._apply(fn, recurse)
        self.entries, self.filled, self.head = fn(self.entries), fn(self.filled), fn(self.head)
        return self

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, size={self.size}, dim={self.dim}, balanced={self.balanced}"


def representatives(anchors: torch.Tensor, counts: torch.Tensor, selection: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``contrast.plain.representatives`` for every class at once: S (K, D) and chosen (K,) from the
    (I, K, D) unit anchors and (I, K) counts."""
    present = counts > 0
    chosen = present[-1] if selection == "deepest" else present[0]
    if selection == "earliest":
        return anchors[0], chosen
    if selection == "deepest":
        return anchors[-1], chosen
    if selection == "average":
        weights = present.to(anchors.dtype)[..., None]
        return torch.nn.functional.normalize((anchors * weights).sum(0), dim=-1), chosen
    layers = torch.arange(1, present.shape[0] + 1, device=present.device)[:, None]
    deepest = ((present * layers).amax(0) - 1).clamp_min(0)  # (K,) the deepest layer where present
    return anchors[deepest, torch.arange(present.shape[1], device=present.device)], chosen


def aa_loss(S: torch.Tensor, chosen: torch.Tensor, bank: BankDraw, tau: float) -> torch.Tensor:
    """L_AA (``contrast.plain.anchor_to_anchor_loss``) for every class at once: the chosen classes'
    S (K, D) against every drawn entry, one (K, K, K_M) product; per class c the log-sum-exp of
    its negatives (the entries of every other class), then the mean over its positives of
    LSE(s+, negatives) - s+. Classes without a queue take no part."""
    k, size = bank.valid.shape
    logits = torch.einsum("cd,okd->cok", S, bank.entries.to(S.dtype)) / tau  # (K anchors, K classes, K_M)
    others = bank.valid[None] & ~torch.eye(k, dtype=torch.bool, device=S.device)[..., None]  # (K, K, K_M)
    none = fill(logits, float("-inf"))
    has = others.flatten(1).any(1)  # (K,) a negative exists
    masked = torch.where(others, logits, none).flatten(1)
    negatives = torch.where(has, torch.logsumexp(torch.where(has[:, None], masked, fill(masked, 0.0)), 1), none)
    positive = logits.diagonal(dim1=0, dim2=1).t()  # (K, K_M): class c's entries against S(c)
    own = bank.valid
    terms = torch.where(own, torch.logaddexp(positive, negatives[:, None]) - positive, fill(positive, 0.0))
    per_class = terms.sum(1) / own.sum(1).clamp_min(1)
    used = chosen & own.any(1)
    return (per_class * used).sum() / used.sum().clamp_min(1).to(per_class.dtype)
