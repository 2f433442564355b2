"""``sampled_layer``: its two exact paths (rows gathered channels first for few samples, one
transposed copy for many) against plain autograd on the same pixels, values and gradients."""

import pytest
import torch

from contextrast_cli.contrast.ccl import _SampledLayer, sampled_layer


def plain(emb, bins, index, k):
    """Class sums and sampled rows by plain indexing (autograd differentiates it)."""
    batch, dim, pixels = emb.shape
    rows = emb.permute(0, 2, 1).reshape(batch * pixels, dim)
    sums = torch.stack([rows[bins == c].sum(0) for c in range(k)])  # ignored pixels (bin k) left out
    return sums, rows[index]


@pytest.mark.parametrize("samples", [7, 200], ids=["few rows: channels first", "many rows: transposed copy"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_both_paths_equal_plain_autograd(samples, dtype):
    generator = torch.Generator().manual_seed(samples)
    batch, dim, pixels, k = 3, 5, 40, 4
    emb = torch.randn(batch, dim, pixels, generator=generator).to(dtype).requires_grad_()
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
    assert emb.grad.dtype == dtype and emb.grad.is_contiguous()
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
