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
        pixels = [emb.shape.numel() // dim for emb in embs]
        targets = _views(out, reads)
        for emb, layer_sums, layer_bins, layer_reads, layer_out in zip(embs, sums, _split(bins, pixels), reads, targets):
            table = _as_rows(emb, dtype)
            layer_sums.index_add_(0, layer_bins, table)
            for (index, _), into in zip(layer_reads, layer_out):
                torch.index_select(table, 0, index, out=into)
        ctx.save_for_backward(bins)
        ctx.reads, ctx.pixels, ctx.meta = reads, pixels, [(emb.shape, emb.dtype, _rows_layout(emb)) for emb in embs]
        return sums[:, :num_classes], out

    @staticmethod
    def backward(ctx, grad_sums, grad_rows):
        (bins,) = ctx.saved_tensors
        table = torch.cat([grad_sums, grad_sums.new_zeros(grad_sums.shape[0], 1, grad_sums.shape[2])], 1)
        grads = []
        sources = _views(grad_rows, ctx.reads)
        for layer_table, layer_bins, layer_reads, layer_rows, (shape, dtype, rows_layout) in zip(
                table, _split(bins, ctx.pixels), ctx.reads, sources, ctx.meta):
            grad = layer_table.index_select(0, layer_bins)  # (P, D)
            for (index, _), source in zip(layer_reads, layer_rows):
                grad.index_add_(0, index, source.to(grad.dtype))  # the sampled pixels' own terms
            grad = grad.view(shape[:1] + shape[2:] + shape[1:2]).movedim(-1, 1).to(dtype)
            grads.append(grad if rows_layout else grad.contiguous())
        return None, None, None, None, *grads


def _split(flat: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``flat`` cut into consecutive pieces of ``sizes`` (one operator; the whole when one piece)."""
    return (flat,) if len(sizes) == 1 and sizes[0] == flat.shape[0] else flat.split(sizes)


def _views(table: torch.Tensor, reads: Reads) -> list[list[torch.Tensor]]:
    """The rows of ``table`` each read fills, per layer: one split when the reads' slices tile the
    table in some order (the loss's case), else a slice each."""
    where = sorted((w.start, w.stop, i, j) for i, layer in enumerate(reads) for j, (_, w) in enumerate(layer))
    tiled = all(a[1] == b[0] for a, b in zip(where, where[1:])) and where and where[0][0] == 0 \
        and where[-1][1] == table.shape[0]
    if not tiled:
        return [[table[w] for _, w in layer] for layer in reads]
    pieces = _split(table, [stop - start for start, stop, _, _ in where])
    out = [[None] * len(layer) for layer in reads]
    for piece, (_, _, i, j) in zip(pieces, where):
        out[i][j] = piece
    return out


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
