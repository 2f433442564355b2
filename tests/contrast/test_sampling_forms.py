"""The sampling laws of METHOD.md sections 2-3, checked on both forms of the sampler: the fast one
(``contrast.sampling``: one sort for every class) and the plain one (``contrast.plain_sampling``:
a loop over classes). Each draw is read as ``contrast.plain.LayerSamples``."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from contextrast_cli.contrast.plain_sampling import sample_layer
from contextrast_cli.contrast.sampling import sample_layers
from tests.contrast.test_sampling import error_regions, reference_picks

DRAWS = 600


def draw(form: str, labels, pred, k: int, max_positives: int, max_negatives: int, ratio, seed: int):
    """One layer's samples by ``form``, and its BANE picks per class."""
    generator = torch.Generator().manual_seed(seed)
    if form == "plain":
        anchored = torch.ones(k, dtype=torch.bool)
        return sample_layer(labels, pred, k, anchored, max_positives=max_positives, max_negatives=max_negatives,
                            bane_ratio=ratio, generator=generator)
    samples = sample_layers([labels], None if pred is None else [pred], k, max_positives, max_negatives, ratio,
                            generator=generator)
    return samples.as_plain()[0], samples.bane_counts.tolist()


FORMS = pytest.mark.parametrize("form", ["fast", "plain"])


@FORMS
def test_positives_are_uniform_over_their_class_without_repeats(form):
    labels = torch.tensor([0] * 30 + [1] * 4 + [255] * 5 + [2] * 12).view(1, 1, -1)
    hits = np.zeros(labels.numel())
    for seed in range(DRAWS):
        samples, _ = draw(form, labels, None, 3, 10, 5, None, seed)
        for n, pos in enumerate(samples.positives):
            assert pos.numel() == [10, 4, 10][n] and pos.unique().numel() == pos.numel()
            assert (labels.reshape(-1)[pos] == n).all()
            hits[pos.numpy()] += 1
    assert (hits[30:34] == DRAWS).all() and (hits[34:39] == 0).all()
    assert chisquare(hits[:30]).pvalue > 1e-3 and chisquare(hits[39:]).pvalue > 1e-3


@FORMS
@pytest.mark.parametrize("ratio", [0.25, 1.0])
def test_bane_takes_the_nearest_share_of_each_error_region(form, ratio):
    pred, labels = error_regions()
    samples, bane = draw(form, labels, pred, 3, 1, 10**4, ratio, 0)
    for n in (0, 1, 2):
        nearest, dist = reference_picks(pred, labels, n, ratio)
        picks = samples.negatives[n][:bane[n]].tolist()
        assert len(picks) == len(nearest) and np.allclose([dist[p] for p in picks], nearest, atol=1e-4)


@FORMS
def test_top_up_is_uniform_over_other_labelled_pixels_at_any_class_share(form):
    """Class 0 holds 90% of the layer: its 8 top-up negatives are still 8, uniform over the 100
    other-class pixels, never its own class or void, never twice."""
    labels = torch.tensor([0] * 1000 + [1] * 64 + [2] * 36 + [255] * 20).view(1, 40, 28)
    flat = labels.reshape(-1)
    hits = np.zeros(flat.numel())
    for seed in range(DRAWS):
        samples, _ = draw(form, labels, None, 3, 1, 8, None, seed)
        for n, neg in enumerate(samples.negatives):
            assert neg.numel() == 8 and neg.unique().numel() == 8
            assert ((flat[neg] != n) & (flat[neg] != 255)).all()
        hits[samples.negatives[0].numpy()] += 1
    assert hits[:1000].sum() == 0 and hits[1100:].sum() == 0
    assert hits[1000:1100].sum() == 8 * DRAWS and chisquare(hits[1000:1100]).pvalue > 1e-3


@FORMS
def test_bane_picks_then_top_up_fill_max_negatives_without_repeats(form):
    pred, labels = error_regions()
    samples, bane = draw(form, labels, pred, 3, 1, 60, 0.5, 3)
    flat = labels.reshape(-1)
    for n, neg in enumerate(samples.negatives):
        assert neg.numel() == 60 and neg.unique().numel() == 60
        assert ((flat[neg] != n) & (flat[neg] != 255)).all() and bane[n] > 0
