"""One dense gradient pass per layer for the two ways CCL reads an embedding map.

An embedding map v (B, D, N) reaches the loss twice: through the class sums behind the
anchors and through the anchor-pixel similarities. Their gradients are

    dL/dv[b, :, n] = g_sums[label(b, n)]  +  (anchors^T @ g_sim[b])[:, n],

a gather of the class sums' gradient rows by each pixel's label plus one batched matmul with
K rows. With up to ``ONE_HOT_MAX_CLASSES`` classes the class sums and their gradient run as
matmuls with a (B, K, N) one-hot matrix (one batched matmul of 2K rows writes the whole
gradient), the fastest kernels for few classes; with more (ADE20K, COCO-Stuff) as a
scatter-add and a gather, whose cost does not grow with the class count. ``AnchorSimilarity.backward`` hands its g_sim to the
layer's ``GradLink``; ``ClassSums.backward``, which autograd runs later (the sums feed the
anchors, the anchors feed the similarities), writes the whole gradient once. Float64
parity with plain autograd is tested.

When the embedding map is a projection head's deferred output (``contrast.heads``), the
gradient is not written at all here: its ``GradientFactors`` (K + 1 rows of D, the labels,
K rows of D and of N) go to the head's pending replay, which writes dL/dv when the network's
backward reaches the tapped feature. The (B, D, N) gradient then exists only during that
replay instead of from the start of the backward, when every activation of the step is alive.
"""

from dataclasses import dataclass

import torch

ONE_HOT_MAX_CLASSES = 32  # measured on the CPU: one-hot matmuls win below, scatter/gather above


class GradLink:
    """Carries one layer's similarity gradient from AnchorSimilarity to ClassSums.

    Args:
        sink: where to hand dL/dv as ``GradientFactors`` instead of writing it (an object with
            ``defer_gradient(factors, placeholder)``; see ``ClassSums.backward``), or None.
    """

    def __init__(self, sink=None) -> None:
        self.grad_sim: torch.Tensor | None = None  # (B, K, N)
        self.anchors: torch.Tensor | None = None  # (K, D)
        self.closed = False
        self.sink = sink


@dataclass
class GradientFactors:
    """dL/dv (B, D, N) = rows[bins]^T per pixel (+ left^T @ right per image), not yet written.

    Attributes:
        rows: (K + 1, D) gradient of each class sum, a zero row last (ignored pixels' bin).
        bins: (B, N) int64 class of each pixel, K for ignored ones.
        left, right: (K, D) anchors and (B, K, N) similarity gradient, or None.
    """

    rows: torch.Tensor
    bins: torch.Tensor
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None

    def dense(self) -> torch.Tensor:
        """The (B, D, N) gradient: one batched matmul with the one-hot rows (few classes), or a
        gather plus one batched matmul added in place."""
        batch, pixels = self.bins.shape
        classes, dim = self.rows.shape[0] - 1, self.rows.shape[1]
        if classes <= ONE_HOT_MAX_CLASSES:
            left, right = self.rows[:classes], one_hot(self.bins, classes, self.rows.dtype)
            if self.left is not None:
                left, right = torch.cat([left, self.left]), torch.cat([right, self.right], 1)
            return torch.bmm(left.T.expand(batch, *left.T.shape), right)
        table = self.rows.T.expand(batch, dim, classes + 1)  # (B, D, K + 1), no copy
        out = table.gather(2, self.bins[:, None, :].expand(batch, dim, pixels))
        if self.left is not None:
            out.baddbmm_(self.left.T.expand(batch, *self.left.T.shape), self.right)
        return out


def one_hot(bins: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, K, N) one-hot of ``bins`` (B, N) by comparison (``F.one_hot`` reads the values' range
    back to the host); bin K (ignored) is all zeros."""
    classes = torch.arange(num_classes, device=bins.device)
    return (bins[:, None, :] == classes[None, :, None]).to(dtype)


def class_sums(emb: torch.Tensor, bins: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(K, D) sums over the batch of the embeddings (B, D, N) of each class, in ``dtype``: a
    one-hot matmul for few classes, else a scatter-add over the pixels' ``bins`` (B, N) (K = ignored)."""
    if num_classes <= ONE_HOT_MAX_CLASSES:
        return torch.bmm(one_hot(bins, num_classes, dtype), emb.transpose(1, 2).to(dtype)).sum(0)
    batch, dim, pixels = emb.shape
    sums = torch.zeros(batch, dim, num_classes + 1, dtype=dtype, device=emb.device)
    sums.scatter_add_(2, bins[:, None, :].expand(batch, dim, pixels), emb.to(dtype))
    return sums.sum(0)[:, :num_classes].T


class ClassSums(torch.autograd.Function):
    """``class_sums`` (v is upcast to ``dtype``: a bfloat16 map gets its gradient in bfloat16) with
    the fused backward."""

    @staticmethod
    def forward(ctx, emb: torch.Tensor, bins: torch.Tensor, num_classes: int, dtype: torch.dtype,
                link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(bins)
        ctx.link = link
        ctx.emb_spec = (emb.shape, emb.dtype)
        return class_sums(emb, bins, num_classes, dtype)

    @staticmethod
    def backward(ctx, grad_sums: torch.Tensor):
        (bins,) = ctx.saved_tensors
        link = ctx.link
        rows = torch.cat([grad_sums, grad_sums.new_zeros(1, grad_sums.shape[1])])
        factors = GradientFactors(rows, bins, link.anchors, link.grad_sim)
        link.grad_sim, link.anchors, link.closed = None, None, True
        if link.sink is not None:
            # the sink writes dL/dv later; autograd gets a zero of the right shape that occupies one element
            shape, dtype = ctx.emb_spec
            placeholder = torch.zeros((), dtype=dtype, device=bins.device).expand(shape)
            link.sink.defer_gradient(factors, placeholder)
            return placeholder, None, None, None, None
        return factors.dense().to(ctx.emb_spec[1]), None, None, None, None


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
