"""``sampled_layers``: a channels-last map read as rows where it lies, a channels-first one through
one transposed copy, several layers in one call, against plain autograd on the same pixels, values
and gradients; ``row_cosines`` likewise."""

import pytest
import torch

from contextrast_cli.contrast.rows import row_cosines, sampled_layer, sampled_layers


def plain(emb, bins, index, k):
    """Class sums and sampled rows by plain indexing (autograd differentiates it)."""
    batch, dim, pixels = emb.shape
    rows = emb.permute(0, 2, 1).reshape(batch * pixels, dim)
    sums = torch.stack([rows[bins == c].sum(0) for c in range(k)])  # ignored pixels (bin k) left out
    return sums, rows[index]


@pytest.mark.parametrize("samples, layout", [(7, "channels first"), (200, "channels first"), (7, "channels last")],
                         ids=["few rows: transposed copy", "many rows: transposed copy", "channels last: rows as they lie"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_every_path_equals_plain_autograd(samples, layout, dtype):
    generator = torch.Generator().manual_seed(samples)
    batch, dim, pixels, k = 3, 5, 40, 4
    emb = torch.randn(batch, dim, pixels, generator=generator).to(dtype)
    if layout == "channels last":  # (B, D, N) whose D values are adjacent per pixel, as the heads make
        emb = emb.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    emb.requires_grad_()
    returned = []  # the gradient as the function returns it (.grad itself is re-strided to the leaf's layout)
    emb.register_hook(lambda grad: returned.append(grad.stride()))
    bins = torch.randint(0, k + 1, (batch * pixels,), generator=generator)  # k: ignored
    index = torch.randint(0, batch * pixels, (samples,), generator=generator)  # duplicates included
    sums, rows = sampled_layer(emb, bins, index, k)
    reference = emb.detach().double().requires_grad_()
    ref_sums, ref_rows = plain(reference, bins, index, k)
    assert sums.dtype == rows.dtype == torch.promote_types(dtype, torch.float32)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(sums.double(), ref_sums, rtol=0, atol=tolerance)
    torch.testing.assert_close(rows.double(), ref_rows, rtol=0, atol=0)
    weights = torch.randn(k, dim, generator=generator, dtype=torch.float64), \
        torch.randn(samples, dim, generator=generator, dtype=torch.float64)
    ((sums.double() * weights[0]).sum() + (rows.double() * weights[1]).sum()).backward()
    ((ref_sums * weights[0]).sum() + (ref_rows * weights[1]).sum()).backward()
    assert emb.grad.dtype == dtype
    # the gradient comes back in the map's own layout: no transposed copy either way
    assert returned == [emb.stride()]
    torch.testing.assert_close(emb.grad.double(), reference.grad.to(dtype).double(), rtol=0,
                               atol=1e-12 if dtype == torch.float64 else 0.05)


def test_several_layers_in_one_call_equal_each_layer_alone():
    """Three layers of different sizes, each reading rows into two places of the one output (as the
    loss reads its pairs and its pool): the sums and rows are each layer's own, the gradients too."""
    generator = torch.Generator().manual_seed(3)
    k, dim, sizes = 4, 5, (40, 12, 3)
    embs = [torch.randn(2, dim, n, generator=generator, dtype=torch.float64).requires_grad_() for n in sizes]
    bins = [torch.randint(0, k + 1, (2 * n,), generator=generator) for n in sizes]
    indices = [(torch.randint(0, 2 * n, (5,), generator=generator), torch.randint(0, 2 * n, (3,), generator=generator))
               for n in sizes]
    reads = [[(first, slice(5 * layer, 5 * layer + 5)), (second, slice(15 + 3 * layer, 18 + 3 * layer))]
             for layer, (first, second) in enumerate(indices)]
    sums, rows = sampled_layers(embs, torch.cat(bins), reads, 24, k)
    weights = torch.randn(3, k, dim, generator=generator, dtype=torch.float64), \
        torch.randn(24, dim, generator=generator, dtype=torch.float64)
    ((sums * weights[0]).sum() + (rows * weights[1]).sum()).backward()
    for layer, (emb, layer_bins, (first, second)) in enumerate(zip(embs, bins, indices)):
        reference = emb.detach().clone().requires_grad_()
        ref_sums, ref_rows = plain(reference, layer_bins, torch.cat([first, second]), k)
        torch.testing.assert_close(sums[layer], ref_sums, rtol=0, atol=1e-12)
        got = torch.cat([rows[5 * layer:5 * layer + 5], rows[15 + 3 * layer:18 + 3 * layer]])
        torch.testing.assert_close(got, ref_rows, rtol=0, atol=0)
        row_weights = torch.cat([weights[1][5 * layer:5 * layer + 5], weights[1][15 + 3 * layer:18 + 3 * layer]])
        ((ref_sums * weights[0][layer]).sum() + (ref_rows * row_weights).sum()).backward()
        torch.testing.assert_close(emb.grad, reference.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pairs, pool, layers", [(9, 6, 1), (9, 0, 1), (0, 6, 1), (9, 6, 3)],
                         ids=["pairs and pool", "pairs only", "pool only", "three layers"])
def test_row_cosines_equal_plain_autograd(pairs, pool, layers):
    """Each pair row's dot with its anchor and each pool's dots with every anchor of its layer,
    values and gradients (into the rows and the anchors), as the products give under autograd."""
    generator = torch.Generator().manual_seed(pairs + pool + layers)
    k, dim = 4, 5
    anchors = torch.randn(layers * k, dim, generator=generator, dtype=torch.float64).requires_grad_()
    rows = torch.randn(pairs + layers * pool, dim, generator=generator, dtype=torch.float64).requires_grad_()
    pair_anchor = torch.randint(0, layers * k, (pairs,), generator=generator)  # repeated anchors included
    pair_cos, pool_cos = row_cosines(anchors, rows, pair_anchor, layers)
    ref_anchors, ref_rows = anchors.detach().clone().requires_grad_(), rows.detach().clone().requires_grad_()
    ref_pair = torch.stack([ref_rows[m] @ ref_anchors[int(a)] for m, a in enumerate(pair_anchor)]) if pairs \
        else ref_rows.new_zeros(0)
    ref_pool = torch.stack([torch.stack([torch.stack([ref_anchors[i * k + n] @ ref_rows[pairs + i * pool + j]
                                                      for j in range(pool)]) if pool else ref_rows.new_zeros(0)
                                         for n in range(k)]) for i in range(layers)])
    torch.testing.assert_close(pair_cos, ref_pair, rtol=0, atol=1e-12)
    torch.testing.assert_close(pool_cos, ref_pool, rtol=0, atol=1e-12)
    weights = torch.randn(pairs, generator=generator, dtype=torch.float64), \
        torch.randn(layers, k, pool, generator=generator, dtype=torch.float64)
    ((pair_cos * weights[0]).sum() + (pool_cos * weights[1]).sum()).backward()
    ((ref_pair * weights[0]).sum() + (ref_pool * weights[1]).sum()).backward()
    torch.testing.assert_close(rows.grad, ref_rows.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(anchors.grad, ref_anchors.grad, rtol=0, atol=1e-12)
