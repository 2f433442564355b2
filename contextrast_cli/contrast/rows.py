"""The loss's two kernels over sampled pixels, as autograd functions that write each gradient once:
``sampled_layers`` (every layer's class sums and its sampled pixels' embeddings as rows of one
table) and ``row_cosines`` (those rows' cosines with their anchors). Float32 at least."""

import torch

Reads = list[list[tuple[torch.Tensor, slice]]]  # per layer: (pixel indices, the rows they fill)


def sampled_layers(embs: list[torch.Tensor], bins: torch.Tensor, reads: Reads, rows: int,
                   num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's class sums (I, K, D) and the sampled pixels' embeddings as rows (``rows``, D).

    Args:
        embs: per layer (B, D, ...) embeddings (a feature map, or one flattened); summed in float32 at least.
        bins: (P,) each pixel's class (K: ignored), the layers' pixels one after the other.
        reads: per layer, the (pixel indices within the layer, slice of the output rows) it fills.

    The backward writes each dL/demb once, in the map's own layout (``_SampledLayers``).
    """
    return _SampledLayers.apply(bins, reads, rows, num_classes, *embs)


def sampled_layer(emb: torch.Tensor, bins: torch.Tensor, index: torch.Tensor,
                  num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sampled_layers`` of one layer: its class sums (K, D) and the rows (M, D) of ``index`` (M,)."""
    sums, rows = sampled_layers([emb], bins, [[(index, slice(0, index.numel()))]], index.numel(), num_classes)
    return sums[0], rows


def _as_rows(emb: torch.Tensor, dtype) -> torch.Tensor:
    """(B, D, ...) as a (P, D) table of rows: a view of a map laid out channels last (what the
    projection heads make), else one transposed copy."""
    return emb.movedim(1, -1).reshape(-1, emb.shape[1]).to(dtype)


def _rows_layout(emb: torch.Tensor) -> bool:
    """Whether (B, D, ...) ``emb`` is laid out as rows (channels last), read off its strides."""
    expected = 1
    for size, stride in reversed(list(zip(emb.shape[:1] + emb.shape[2:] + emb.shape[1:2],
                                          emb.stride()[:1] + emb.stride()[2:] + emb.stride()[1:2]))):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


class _SampledLayers(torch.autograd.Function):
    """Per layer: the class sums by one ``index_add`` of whole rows, the samples by ``index_select``
    into their rows of the output; backward: each pixel's share of its class sum gathered from a
    (K + 1, D) table (ignored pixels: a zero row), the sampled rows' own terms added in place, the
    gradient returned in the map's layout (channels last: no copy)."""

    @staticmethod
    def forward(ctx, bins, reads, rows, num_classes, *embs):
        dtype = torch.promote_types(embs[0].dtype, torch.float32)
        dim = embs[0].shape[1]
        sums = embs[0].new_zeros(len(embs), num_classes + 1, dim, dtype=dtype)
        out = embs[0].new_empty(rows, dim, dtype=dtype)
        start = 0
        for emb, layer_sums, layer_reads in zip(embs, sums, reads):
            table = _as_rows(emb, dtype)
            layer_sums.index_add_(0, bins[start:start + table.shape[0]], table)
            for index, where in layer_reads:
                torch.index_select(table, 0, index, out=out[where])
            start += table.shape[0]
        ctx.save_for_backward(bins)
        ctx.reads, ctx.meta = reads, [(emb.shape, emb.dtype, _rows_layout(emb)) for emb in embs]
        return sums[:, :num_classes], out

    @staticmethod
    def backward(ctx, grad_sums, grad_rows):
        (bins,) = ctx.saved_tensors
        table = torch.cat([grad_sums, grad_sums.new_zeros(grad_sums.shape[0], 1, grad_sums.shape[2])], 1)
        grads, start = [], 0
        for layer_table, layer_reads, (shape, dtype, rows_layout) in zip(table, ctx.reads, ctx.meta):
            pixels = shape.numel() // shape[1]
            grad = layer_table.index_select(0, bins[start:start + pixels])  # (P, D)
            for index, where in layer_reads:
                grad.index_add_(0, index, grad_rows[where].to(grad.dtype))  # the sampled pixels' own terms
            grad = grad.view(shape[:1] + shape[2:] + shape[1:2]).movedim(-1, 1).to(dtype)
            grads.append(grad if rows_layout else grad.contiguous())
            start += pixels
        return None, None, None, None, *grads


def row_cosines(anchors: torch.Tensor, rows: torch.Tensor, pair_anchor: torch.Tensor,
                layers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines of sampled rows with the unit ``anchors`` (I x K, D), layer l's anchors l x K .. :
    the first ``pair_anchor.numel()`` rows each with its one anchor (``pair_anchor`` (M,)) -> (M,);
    the rest, ``layers`` pools of L rows, each with every anchor of its layer -> (I, K, L). What
    the products would give under autograd, with dL/drows written once, in place."""
    return _RowCosines.apply(anchors, rows, pair_anchor, layers)


class _RowCosines(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, rows, pair_anchor, layers):
        pairs = pair_anchor.numel()
        pair_cos = anchors.index_select(0, pair_anchor).mul_(rows[:pairs]).sum(1)
        stacked, pool = _per_layer(anchors, rows, pairs, layers)
        ctx.save_for_backward(anchors, rows, pair_anchor)
        ctx.layers = layers
        return pair_cos, torch.bmm(stacked, pool.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_pair, grad_pool):
        anchors, rows, pair_anchor = ctx.saved_tensors
        pairs, grad_anchors, grad_rows = pair_anchor.numel(), None, None
        stacked, pool = _per_layer(anchors, rows, pairs, ctx.layers)
        # one (M + I x L, D) buffer: its pair rows first hold the pairs' terms of dL/danchors, then dL/drows
        buffer = torch.empty_like(rows, memory_format=torch.contiguous_format)
        if ctx.needs_input_grad[0]:
            grad_anchors = torch.bmm(grad_pool, pool).view_as(anchors)
            grad_anchors.index_add_(0, pair_anchor, torch.mul(rows[:pairs], grad_pair[:, None], out=buffer[:pairs]))
        if ctx.needs_input_grad[1]:
            grad_rows = buffer
            torch.index_select(anchors, 0, pair_anchor, out=grad_rows[:pairs]).mul_(grad_pair[:, None])
            torch.bmm(grad_pool.transpose(1, 2), stacked, out=grad_rows[pairs:].view_as(pool))
        return grad_anchors, grad_rows, None, None


def _per_layer(anchors: torch.Tensor, rows: torch.Tensor, pairs: int, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views: the anchors as (I, K, D), the pool rows after the ``pairs`` as (I, L, D)."""
    dim = anchors.shape[1]
    return (anchors.view(layers, anchors.shape[0] // layers, dim),
            rows[pairs:].view(layers, (rows.shape[0] - pairs) // layers, dim))
