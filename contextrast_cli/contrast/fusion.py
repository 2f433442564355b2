"""Contextrast++'s adaptive anchor fusion (METHOD.md section 6.1): one ``AnchorFusion`` per
layer but the deepest, trained through L_PA, and ``fused_anchors``, the cross-layer update of every
layer and class at once. Training only: never exported. The plain form is
``contrast.plain.adaptive_update``."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ChannelAttention(nn.Module):
    """F(a) = softmax(q k^T / sqrt(d)) v, q, k, v = W_q a, W_k a, W_v a: single-head self-attention
    over the d channels of one anchor vector (a sequence of d tokens of width 1), computed by
    ``scaled_dot_product_attention`` (memory-efficient kernels need no (d, d) matrix).
    Our reading of the paper, which gives no sizes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))

    def forward(self, anchors: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, d)."""
        n, d = anchors.shape
        q, k, v = (layer(anchors).view(n, 1, d, 1) for layer in (self.query, self.key, self.value))
        return F.scaled_dot_product_attention(q, k, v, scale=d ** -0.5).view(n, d)


class AnchorFusion(nn.Module):
    """M_i: â_i = MLP(F_h(a_I) ⊕ F_l(a_i)), F_h and F_l with their own weights. ``mlp_layers``:
    2 (our reading: Linear(2d, d) - ReLU - Linear(d, d)) or 1 (Linear(2d, d): three modules then
    add 1.578M parameters at d = 256, the paper's +1.58M on HRNetV2-W48)."""

    def __init__(self, dim: int, mlp_layers: int = 2) -> None:
        super().__init__()
        if mlp_layers not in (1, 2):
            raise ValueError(f"fusion_mlp_layers must be 1 or 2, got {mlp_layers}")
        self.high, self.low = ChannelAttention(dim), ChannelAttention(dim)
        layers = [nn.Linear(2 * dim, dim)] + ([nn.ReLU(), nn.Linear(dim, dim)] if mlp_layers == 2 else [])
        self.mlp = nn.Sequential(*layers)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Fused anchors (N, d) from a shallow layer's (N, d) and the deepest layer's (N, d)."""
        return self.mlp(torch.cat([self.high(high), self.low(low)], dim=-1))


def build_fusions(layers: int, dim: int, mlp_layers: int = 2) -> nn.ModuleList:
    """One ``AnchorFusion`` per used layer but the deepest."""
    return nn.ModuleList(AnchorFusion(dim, mlp_layers) for _ in range(max(layers - 1, 0)))


def fused_anchors(means: torch.Tensor, counts: torch.Tensor, fusions: Sequence[AnchorFusion],
                  stop_grad: bool = False, compact: bool = False) -> torch.Tensor:
    """The adaptive cross-layer update, then unit length, every layer at once: for a layer i < I
    and a class present at both i and I, M_i(a_i, a_I); otherwise a_i.

    Args:
        means: (I, K, D) class means, shallow to deep; counts: (I, K) pixel counts.
        fusions: I - 1 modules.
        stop_grad: detach a_I inside the shallower layers' anchors.
        compact: run the modules on the updated classes alone (their indices read on the host:
            free on the CPU, where a class's (D x D) attention is the cost); otherwise on every
            class, ``torch.where`` keeping the updated ones (fixed shapes, no host synchronisation).

    Returns:
        (I, K, D) unit anchors.
    """
    deep = means[-1].detach() if stop_grad else means[-1]
    both = (counts[:-1] > 0) & (counts[-1] > 0)  # (I - 1, K)
    if compact:
        shallow = []
        for fusion, low, updated in zip(fusions, means[:-1], both):
            rows = updated.nonzero().flatten()
            shallow.append(low.index_copy(0, rows, fusion(low[rows], deep[rows]).to(low.dtype)))
        shallow = torch.stack(shallow) if shallow else means[:-1]
    else:
        fused = torch.stack([fusion(low, deep) for fusion, low in zip(fusions, means[:-1])]) if len(fusions) else \
            means[:-1]
        shallow = torch.where(both[..., None], fused.to(means.dtype), means[:-1])
    return F.normalize(torch.cat([shallow, means[-1:]]), dim=-1)
