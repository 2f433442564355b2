"""The loss's two kernels over sampled pixels, as autograd functions that write each gradient once:
``sampled_layer`` (a layer's class sums and its sampled pixels' embeddings as rows) and
``row_cosines`` (those rows' cosines with their anchors). Layout-aware, float32 at least."""

import torch


def sampled_layer(emb: torch.Tensor, bins: torch.Tensor, index: torch.Tensor,
                  num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's class sums (K, D) and the embeddings of the sampled pixels ``index`` (M,) as rows
    (M, D), in float32 at least, from ``emb`` (B, D, N) and each pixel's class ``bins`` (P,) (K:
    ignored); its backward writes dL/demb once (``_SampledLayer``)."""
    return _SampledLayer.apply(emb, bins, index, num_classes)


class _SampledLayer(torch.autograd.Function):
    """Exact ways to one result, chosen by layout and shape (no data read). A map laid out channels
    last (what the projection heads make) is a (P, D) table of rows as it lies: the sums are one
    index_add of whole rows, the samples one index_select, and the gradient is built as rows and
    returned in that same layout (no copy either way). A channels-first map with few sampled rows
    is read where it lies (the sums by one scatter-add over the pixels, the rows gathered in memory
    order, the gradient gathered from a (D, K) table, returned contiguous); with rows numbering over
    a quarter of its pixels one transposed (P, D) copy serves as the table of rows and the gradient
    is transposed back. Either way dL/demb is written once."""

    @staticmethod
    def forward(ctx, emb, bins, index, num_classes):
        batch, dim, pixels = emb.shape
        dtype, ctx.in_dtype, ctx.shape = torch.promote_types(emb.dtype, torch.float32), emb.dtype, emb.shape
        ctx.rows_layout = emb.permute(0, 2, 1).is_contiguous()
        ctx.as_rows = ctx.rows_layout or 4 * index.numel() > batch * pixels
        if ctx.as_rows:
            flat = emb.permute(0, 2, 1).reshape(batch * pixels, dim).to(dtype)  # (P, D): a view, or one copy
            sums = flat.new_zeros(num_classes + 1, dim).index_add_(0, bins, flat)[:num_classes]
            ctx.save_for_backward(bins, index)
            return sums, flat.index_select(0, index)
        emb = emb.to(dtype)  # no copy in float32
        where = bins.view(batch, 1, pixels).expand(batch, dim, pixels)
        sums = emb.new_zeros(batch, dim, num_classes + 1).scatter_add_(2, where, emb).sum(0)
        order, perm = index.sort()  # reading the rows in memory order is ~3x faster than at random
        back = torch.empty_like(perm).index_put_((perm,), torch.arange(perm.numel(), device=perm.device))
        rows = emb[order // pixels, :, order % pixels].index_select(0, back)  # (M, D) in the order asked
        ctx.save_for_backward(bins, order, perm)
        return sums[:, :num_classes].t(), rows

    @staticmethod
    def backward(ctx, grad_sums, grad_rows):
        batch, dim, pixels = ctx.shape
        if ctx.as_rows:
            bins, index = ctx.saved_tensors
            table = torch.cat([grad_sums, grad_sums.new_zeros(1, dim)])  # ignored pixels: no gradient
            grad = table.index_select(0, bins)  # (P, D): every pixel's share of its class sum
            grad.index_add_(0, index, grad_rows.to(grad.dtype))  # the sampled pixels' own terms
            grad = grad.view(batch, pixels, dim).permute(0, 2, 1).to(ctx.in_dtype)
            return grad if ctx.rows_layout else grad.contiguous(), None, None, None
        bins, order, perm = ctx.saved_tensors
        table = torch.cat([grad_sums.t(), grad_sums.new_zeros(dim, 1)], 1)  # (D, K + 1): ignored pixels get none
        where = bins.view(batch, 1, pixels).expand(batch, dim, pixels)
        grad = torch.gather(table.expand(batch, dim, table.shape[1]), 2, where)  # (B, D, N), contiguous
        grad.permute(0, 2, 1).index_put_((order // pixels, order % pixels),
                                         grad_rows.index_select(0, perm).to(grad.dtype),
                                         accumulate=True)  # the sampled pixels' own terms
        return grad.to(ctx.in_dtype), None, None, None


def row_cosines(anchors: torch.Tensor, rows: torch.Tensor, pair_anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines of sampled rows (M, D) with the unit ``anchors`` (K, D): the first ``pair_anchor.numel()``
    rows each with its one anchor (``pair_anchor`` (M',)) -> (M',); the rest (the shared pool, L
    rows) with every anchor -> (K, L). What the products and a split would give under autograd, with
    dL/drows written once, in place, and no (M, D) temporary beyond one."""
    return _RowCosines.apply(anchors, rows, pair_anchor)


class _RowCosines(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, rows, pair_anchor):
        pairs = pair_anchor.numel()
        pair_cos = anchors.index_select(0, pair_anchor).mul_(rows[:pairs]).sum(1)
        ctx.save_for_backward(anchors, rows, pair_anchor)
        return pair_cos, anchors @ rows[pairs:].T

    @staticmethod
    def backward(ctx, grad_pair, grad_pool):
        anchors, rows, pair_anchor = ctx.saved_tensors
        pairs, grad_anchors, grad_rows = pair_anchor.numel(), None, None
        if ctx.needs_input_grad[1]:
            grad_rows = torch.empty_like(rows, memory_format=torch.contiguous_format)
            torch.index_select(anchors, 0, pair_anchor, out=grad_rows[:pairs]).mul_(grad_pair[:, None])
            torch.mm(grad_pool.T, anchors, out=grad_rows[pairs:])
        if ctx.needs_input_grad[0]:
            grad_anchors = (grad_pool @ rows[pairs:]).index_add_(0, pair_anchor, rows[:pairs] * grad_pair[:, None])
        return grad_anchors, grad_rows, None
