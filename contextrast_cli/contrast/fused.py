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

When the embedding map is a projection head's deferred output (``contrast.heads``), the
gradient is not written at all here: the two factors (2K rows of D and of N) go to the
head's pending replay, which writes dL/dv when the network's backward reaches the tapped
feature. The (B, D, N) gradient then exists only during that replay instead of from the
start of the backward, when every activation of the step is still alive.
"""

import torch


class GradLink:
    """Carries one layer's similarity gradient from AnchorSimilarity to ClassSums.

    Args:
        sink: where to hand dL/dv as factors instead of writing it (an object with
            ``defer_gradient(left, right, placeholder)``; see ``ClassSums.backward``), or None.
    """

    def __init__(self, sink=None) -> None:
        self.grad_sim: torch.Tensor | None = None  # (B, K, N)
        self.anchors: torch.Tensor | None = None  # (K, D)
        self.closed = False
        self.sink = sink


class ClassSums(torch.autograd.Function):
    """sums (K, D) = sum over the batch of onehot (B, K, N) @ v^T in one_hot's dtype (v is
    upcast: a bfloat16 map gets its gradient in bfloat16); the fused backward."""

    @staticmethod
    def forward(ctx, emb: torch.Tensor, one_hot: torch.Tensor, link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(one_hot)
        ctx.link = link
        ctx.emb_spec = (emb.shape, emb.dtype)
        return torch.bmm(one_hot, emb.transpose(1, 2).to(one_hot.dtype)).sum(0)

    @staticmethod
    def backward(ctx, grad_sums: torch.Tensor):
        (one_hot,) = ctx.saved_tensors
        link = ctx.link
        left, right = grad_sums, one_hot  # (K, D), (B, K, N)
        if link.grad_sim is not None:
            left = torch.cat([grad_sums, link.anchors])
            right = torch.cat([one_hot, link.grad_sim], 1)
        link.grad_sim, link.anchors, link.closed = None, None, True
        if link.sink is not None:
            # dL/dv = left^T @ right per image, written later by the sink; autograd gets a
            # zero of the right shape that occupies one element
            shape, dtype = ctx.emb_spec
            placeholder = torch.zeros((), dtype=dtype, device=right.device).expand(shape)
            link.sink.defer_gradient(left, right, placeholder)
            return placeholder, None, None
        return dense_gradient(left, right).to(ctx.emb_spec[1]), None, None


def dense_gradient(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(B, D, N) = left^T (D, R) @ right (B, R, N) per image: one pass writing the gradient."""
    return torch.bmm(left.T.expand(right.shape[0], *left.T.shape), right)


class AnchorSimilarity(torch.autograd.Function):
    """sim (B, K, N) = anchors @ v in the anchors' dtype (v is upcast, and kept in its own
    dtype for the backward); passes dL/dv on to the layer's ClassSums."""

    @staticmethod
    def forward(ctx, anchors: torch.Tensor, emb: torch.Tensor, link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(anchors, emb)
        ctx.link = link
        return torch.bmm(anchors.expand(emb.shape[0], *anchors.shape), emb.to(anchors.dtype))

    @staticmethod
    def backward(ctx, grad_sim: torch.Tensor):
        anchors, emb = ctx.saved_tensors
        if ctx.link.closed:
            raise RuntimeError("GradLink: the class sums' gradient was computed before the similarities'")
        ctx.link.grad_sim, ctx.link.anchors = grad_sim, anchors
        grad_anchors = None
        if ctx.needs_input_grad[0]:
            grad_anchors = torch.bmm(grad_sim, emb.transpose(1, 2).to(grad_sim.dtype)).sum(0)
        return grad_anchors, None, None
