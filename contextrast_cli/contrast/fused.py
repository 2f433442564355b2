"""One dense gradient pass per layer for the two ways CCL reads an embedding map.

An embedding map v (B, D, N) reaches the loss twice: through the class sums behind the
anchors and through the anchor-pixel similarities. Plain autograd writes a dense
(B, D, N) gradient for each and then adds them: three passes over the layer's largest
tensor. Both gradients are products with v's pixel axis,

    dL/dv = g_sums^T @ onehot^T  +  anchors^T @ g_sim,

so they fit one batched matmul with 2K rows. ``AnchorSimilarity.backward`` hands its
g_sim to the layer's ``GradLink``; ``ClassSums.backward``, which autograd runs later (the
sums feed the anchors, the anchors feed the similarities), writes the whole gradient
once. Float64 parity with plain autograd is tested.
"""

import torch


class GradLink:
    """Carries one layer's similarity gradient from AnchorSimilarity to ClassSums."""

    def __init__(self) -> None:
        self.grad_sim: torch.Tensor | None = None  # (B, K, N)
        self.anchors: torch.Tensor | None = None  # (K, D)
        self.closed = False


class ClassSums(torch.autograd.Function):
    """sums (K, D) = sum over the batch of onehot (B, K, N) @ v^T; the fused backward."""

    @staticmethod
    def forward(ctx, emb: torch.Tensor, one_hot: torch.Tensor, link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(one_hot)
        ctx.link = link
        return torch.bmm(one_hot, emb.transpose(1, 2)).sum(0)

    @staticmethod
    def backward(ctx, grad_sums: torch.Tensor):
        (one_hot,) = ctx.saved_tensors
        link = ctx.link
        left, right = grad_sums, one_hot  # (K, D), (B, K, N)
        if link.grad_sim is not None:
            left = torch.cat([grad_sums, link.anchors])
            right = torch.cat([one_hot, link.grad_sim], 1)
        link.grad_sim, link.anchors, link.closed = None, None, True
        grad = torch.bmm(left.T.expand(one_hot.shape[0], *left.T.shape), right)  # (B, D, N), one pass
        return grad, None, None


class AnchorSimilarity(torch.autograd.Function):
    """sim (B, K, N) = anchors @ v; passes dL/dv on to the layer's ClassSums."""

    @staticmethod
    def forward(ctx, anchors: torch.Tensor, emb: torch.Tensor, link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(anchors, emb)
        ctx.link = link
        return torch.bmm(anchors.expand(emb.shape[0], *anchors.shape), emb)

    @staticmethod
    def backward(ctx, grad_sim: torch.Tensor):
        anchors, emb = ctx.saved_tensors
        if ctx.link.closed:
            raise RuntimeError("GradLink: the class sums' gradient was computed before the similarities'")
        ctx.link.grad_sim, ctx.link.anchors = grad_sim, anchors
        grad_anchors = torch.bmm(grad_sim, emb.transpose(1, 2)).sum(0) if ctx.needs_input_grad[0] else None
        return grad_anchors, None, None
