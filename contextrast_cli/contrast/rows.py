"""The loss's two kernels over sampled pixels, as autograd functions that write each gradient once:
``sampled_layers`` (every layer's class sums and its sampled pixels' embeddings as rows of one
table) and ``row_cosines`` (those rows' cosines with their anchors). Float32 at least."""

from functools import partial

import torch

Reads = list[list[tuple[torch.Tensor, slice]]]  # per layer: (pixel indices, the rows they fill)


def sampled_layers(embs: list[torch.Tensor], bins: torch.Tensor, reads: Reads, rows: int,
                   num_classes: int, link: "RowGrads | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's class sums (I, K, D) and the sampled pixels' embeddings as rows (``rows``, D).

    Args:
        embs: per layer (B, D, ...) embeddings (a feature map, or one flattened); summed in float32 at least.
        bins: (P,) each pixel's class (K: ignored), the layers' pixels one after the other.
        reads: per layer, the (pixel indices within the layer, slice of the output rows) it fills.

    The backward writes each dL/demb once, in the map's own layout (``_SampledLayers``). With a
    ``link`` shared with ``row_cosines``, the rows' gradient arrives as its factors; an embedding
    made by a deferred projection head (``contrast.heads``) then gets a gradient that is built only
    when the head's replay needs it (the network's backward reaching the tapped feature), so no
    map-sized gradient is held from the loss's backward until then.
    """
    return _SampledLayers.apply(bins, reads, rows, num_classes, link, *embs)


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
    def forward(ctx, bins, reads, rows, num_classes, link, *embs):
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
        ctx.reads, ctx.pixels, ctx.link = reads, pixels, link
        ctx.meta = [(emb.shape, emb.dtype, _rows_layout(emb)) for emb in embs]
        ctx.deferred = [getattr(emb.grad_fn, "pending", None) if link is not None else None for emb in embs]
        if link is not None:  # factors only pay where a deferred head builds its gradient late
            link.wanted = any(pending is not None for pending in ctx.deferred)
        return sums[:, :num_classes], out

    @staticmethod
    def backward(ctx, grad_sums, grad_rows):
        (bins,) = ctx.saved_tensors
        table = torch.cat([grad_sums, grad_sums.new_zeros(grad_sums.shape[0], 1, grad_sums.shape[2])], 1)
        factored = ctx.link is not None and ctx.link.factors is not None
        if grad_rows is not None and factored and grad_rows.stride() == (0, 0):
            grad_rows = None  # row_cosines' placeholder: its part comes as factors
        sources: list | None = None  # per layer, each read's rows of dL/drows (made once, when needed)
        grads = []
        for layer_table, layer_bins, layer_reads, meta, pending in zip(
                table, _split(bins, ctx.pixels), ctx.reads, ctx.meta, ctx.deferred):
            if pending is not None:  # built when the head's replay needs it
                link = ctx.link if factored else None
                pending.hand(partial(_late_grad, layer_table, layer_bins, layer_reads, link, grad_rows, meta))
                grads.append(None)
                continue
            if sources is None:
                full = _rows_grad(ctx.link if factored else None, grad_rows, table.dtype)
                sources = [[None] * len(r) for r in ctx.reads] if full is None else _views(full, ctx.reads)
            grads.append(_dense_grad(layer_table, layer_bins, layer_reads, sources[len(grads)], meta))
        return None, None, None, None, None, *grads


def _rows_grad(link: "RowGrads | None", grad_rows: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """dL/drows as one table: built from the link's factors (plus any other gradient of the rows)."""
    if link is None:
        return grad_rows
    full = link.table().to(dtype)
    return full if grad_rows is None else full.add_(grad_rows)


def _read_grads(layer_reads, link: "RowGrads | None", grad_rows: torch.Tensor | None) -> list[torch.Tensor | None]:
    """dL/drows of each of one layer's reads alone: from the link's factors, plus any other gradient
    of the rows (None: no gradient reached them)."""
    out = []
    for _, where in layer_reads:
        piece = None if link is None else link.piece(where)
        if grad_rows is not None:
            piece = grad_rows[where] if piece is None else piece.add_(grad_rows[where])
        out.append(piece)
    return out


def _late_grad(layer_table: torch.Tensor, layer_bins: torch.Tensor, layer_reads, link: "RowGrads | None",
               grad_rows: torch.Tensor | None, meta) -> torch.Tensor:
    """``_dense_grad`` of one layer with its reads' rows built from thin factors only now."""
    return _dense_grad(layer_table, layer_bins, layer_reads, _read_grads(layer_reads, link, grad_rows), meta)


def _dense_grad(layer_table: torch.Tensor, layer_bins: torch.Tensor, layer_reads, pieces: list, meta) -> torch.Tensor:
    """One layer's dL/demb: each pixel's share of its class sum, plus each read's rows of dL/drows
    (``pieces``, None for none) added at its pixels, in the map's layout."""
    shape, dtype, rows_layout = meta
    grad = layer_table.index_select(0, layer_bins)  # (P, D)
    for (index, _), piece in zip(layer_reads, pieces):
        if piece is not None:
            grad.index_add_(0, index, piece.to(grad.dtype))  # the sampled pixels' own terms
    grad = grad.view(shape[:1] + shape[2:] + shape[1:2]).movedim(-1, 1).to(dtype)
    return grad if rows_layout else grad.contiguous()


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
                layers: int = 1, link: "RowGrads | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines of sampled rows with the unit ``anchors`` (I x K, D), layer l's anchors l x K .. :
    the first ``pair_anchor.numel()`` rows each with its one anchor (``pair_anchor`` (M,)) -> (M,);
    the rest, ``layers`` pools of L rows, each with every anchor of its layer -> (I, K, L). What
    the products would give under autograd, with dL/drows written once, in place; with a ``link``
    (``rows`` made by ``sampled_layers`` with the same link), handed over as its factors instead."""
    return _RowCosines.apply(anchors, rows, pair_anchor, layers, link)


class RowGrads:
    """dL/drows carried from ``row_cosines`` to ``sampled_layers`` as its factors, never as an
    (M + I x L, D) tensor unless one is asked for: the pairs' dL/dcos (M,) with their anchors, each
    pool's dL/dcos (K, L) with its layer's anchors (``factors``, set by the backward of
    ``row_cosines`` when ``wanted``: some map of ``sampled_layers`` comes from a deferred head;
    otherwise the rows' gradient is one plain tensor)."""

    def __init__(self) -> None:
        self.factors: tuple | None = None
        self.wanted = True  # sampled_layers says whether any of its maps takes its gradient late

    def table(self) -> torch.Tensor:
        """The whole (M + I x L, D) dL/drows."""
        grad_pair, pair_anchor, grad_pool, anchors, layers = self.factors
        pairs = pair_anchor.numel()
        out = anchors.new_empty(pairs + grad_pool.shape[0] * grad_pool.shape[2], anchors.shape[1])
        torch.index_select(anchors, 0, pair_anchor, out=out[:pairs]).mul_(grad_pair[:, None])
        stacked = anchors.view(layers, -1, anchors.shape[1])
        torch.bmm(grad_pool.transpose(1, 2), stacked, out=out[pairs:].view(layers, -1, anchors.shape[1]))
        return out

    def piece(self, where: slice) -> torch.Tensor:
        """dL/drows[where] for a range of pair rows or one layer's whole pool."""
        grad_pair, pair_anchor, grad_pool, anchors, layers = self.factors
        pairs, width = pair_anchor.numel(), grad_pool.shape[2]
        if where.stop <= pairs:
            return anchors.index_select(0, pair_anchor[where]).mul_(grad_pair[where, None])
        layer, offset = divmod(where.start - pairs, width)
        if offset == 0 and where.stop - where.start == width:
            return grad_pool[layer].t() @ anchors.view(layers, -1, anchors.shape[1])[layer]
        return self.table()[where]


class _RowCosines(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, rows, pair_anchor, layers, link):
        pairs = pair_anchor.numel()
        pair_cos = anchors.index_select(0, pair_anchor).mul_(rows[:pairs]).sum(1)
        stacked, pool = _per_layer(anchors, rows, pairs, layers)
        ctx.save_for_backward(anchors, rows, pair_anchor)
        ctx.layers, ctx.link = layers, link
        return pair_cos, torch.bmm(stacked, pool.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_pair, grad_pool):
        anchors, rows, pair_anchor = ctx.saved_tensors
        pairs, grad_anchors, grad_rows = pair_anchor.numel(), None, None
        stacked, pool = _per_layer(anchors, rows, pairs, ctx.layers)
        linked = ctx.link is not None and ctx.link.wanted and ctx.needs_input_grad[1]
        # without a link, one (M + I x L, D) buffer: its pair rows first hold the pairs' terms of
        # dL/danchors, then dL/drows
        buffer = rows.new_empty(pairs, rows.shape[1]) if linked else torch.empty_like(
            rows, memory_format=torch.contiguous_format)
        if ctx.needs_input_grad[0]:
            grad_anchors = torch.bmm(grad_pool, pool).view_as(anchors)
            grad_anchors.index_add_(0, pair_anchor, torch.mul(rows[:pairs], grad_pair[:, None], out=buffer[:pairs]))
        if linked:  # sampled_layers builds dL/drows from these where it needs it
            ctx.link.factors = (grad_pair, pair_anchor, grad_pool, anchors, ctx.layers)
            grad_rows = rows.new_zeros(()).expand(rows.shape)
        elif ctx.needs_input_grad[1]:
            grad_rows = buffer
            torch.index_select(anchors, 0, pair_anchor, out=grad_rows[:pairs]).mul_(grad_pair[:, None])
            torch.bmm(grad_pool.transpose(1, 2), stacked, out=grad_rows[pairs:].view_as(pool))
        return grad_anchors, grad_rows, None, None, None


def _per_layer(anchors: torch.Tensor, rows: torch.Tensor, pairs: int, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views: the anchors as (I, K, D), the pool rows after the ``pairs`` as (I, L, D)."""
    dim = anchors.shape[1]
    return (anchors.view(layers, anchors.shape[0] // layers, dim),
            rows[pairs:].view(layers, (rows.shape[0] - pairs) // layers, dim))
