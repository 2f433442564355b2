"""``sampled_layer``: its exact paths (a channels-last map read as rows where it lies; a
channels-first map's rows gathered where they lie for few samples, one transposed copy for many)
against plain autograd on the same pixels, values and gradients."""

import pytest
import torch

from contextrast_cli.contrast.rows import _SampledLayer, row_cosines, sampled_layer


def plain(emb, bins, index, k):
    """Class sums and sampled rows by plain indexing (autograd differentiates it)."""
    batch, dim, pixels = emb.shape
    rows = emb.permute(0, 2, 1).reshape(batch * pixels, dim)
    sums = torch.stack([rows[bins == c].sum(0) for c in range(k)])  # ignored pixels (bin k) left out
    return sums, rows[index]


@pytest.mark.parametrize("samples, layout", [(7, "channels first"), (200, "channels first"), (7, "channels last")],
                         ids=["few rows: channels first", "many rows: transposed copy", "channels last: rows as they lie"])
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


def test_the_path_follows_the_sample_count():
    emb, bins = torch.zeros(2, 3, 10), torch.zeros(20, dtype=torch.long)

    class Ctx:
        def save_for_backward(self, *tensors):
            pass

    for samples, as_rows in ((5, False), (6, True)):  # 4 x 5 = 20 pixels: channels first; 24 > 20: rows
        ctx = Ctx()
        _SampledLayer.forward(ctx, emb, bins, torch.zeros(samples, dtype=torch.long), 2)
        assert ctx.as_rows is as_rows
    ctx = Ctx()  # channels last: rows whatever the count
    _SampledLayer.forward(ctx, emb.permute(0, 2, 1).contiguous().permute(0, 2, 1), bins, torch.zeros(1, dtype=torch.long), 2)
    assert ctx.as_rows and ctx.rows_layout


@pytest.mark.parametrize("pairs, pool", [(9, 6), (9, 0), (0, 6)], ids=["pairs and pool", "pairs only", "pool only"])
def test_row_cosines_equal_plain_autograd(pairs, pool):
    """Each pair row's dot with its anchor and the pool's dots with every anchor, values and
    gradients (into the rows and the anchors), as the products and a split give under autograd."""
    generator = torch.Generator().manual_seed(pairs + pool)
    k, dim = 4, 5
    anchors = torch.randn(k, dim, generator=generator, dtype=torch.float64).requires_grad_()
    rows = torch.randn(pairs + pool, dim, generator=generator, dtype=torch.float64).requires_grad_()
    pair_anchor = torch.randint(0, k, (pairs,), generator=generator)  # repeated anchors included
    pair_cos, pool_cos = row_cosines(anchors, rows, pair_anchor)
    ref_anchors, ref_rows = anchors.detach().clone().requires_grad_(), rows.detach().clone().requires_grad_()
    ref_pair = torch.stack([ref_rows[m] @ ref_anchors[int(a)] for m, a in enumerate(pair_anchor)]) if pairs \
        else ref_rows.new_zeros(0)
    ref_pool = torch.stack([torch.stack([ref_anchors[n] @ ref_rows[pairs + j] for j in range(pool)])
                            for n in range(k)]) if pool else ref_rows.new_zeros(k, 0)
    torch.testing.assert_close(pair_cos, ref_pair, rtol=0, atol=1e-12)
    torch.testing.assert_close(pool_cos, ref_pool, rtol=0, atol=1e-12)
    weights = torch.randn(pairs, generator=generator, dtype=torch.float64), \
        torch.randn(k, pool, generator=generator, dtype=torch.float64)
    ((pair_cos * weights[0]).sum() + (pool_cos * weights[1]).sum()).backward()
    ((ref_pair * weights[0]).sum() + (ref_pool * weights[1]).sum()).backward()
    torch.testing.assert_close(rows.grad, ref_rows.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(anchors.grad, ref_anchors.grad, rtol=0, atol=1e-12)
