"""The loss's named terms: per layer from the fast kernels' (I,) outputs (``layer_terms``), and the
whole ``contrast.implementation: plain`` path (``plain_terms``: ``contrast.plain_sampling``, then
``contrast.plain``), with the same keys."""

import torch
import torch.distributed as dist

from contextrast_cli.contrast import plain
from contextrast_cli.contrast.consts import constant
from contextrast_cli.contrast.grids import predict_at, resize_labels
from contextrast_cli.contrast.plain_sampling import sample_layer
from contextrast_cli.contrast.sampling import choose_anchors

COLUMNS = ("loss_ccl_l{}", "ccl_l{}_classes", "ccl_l{}_bane", "ccl_l{}_topup", "ccl_l{}_pos_sim", "ccl_l{}_neg_sim")


def layer_terms(loss, out: dict, used: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per layer: the weighted loss and the diagnostics, from the (I,) vectors of ``sampled_loss``."""
    weights = constant(tuple(loss.alpha * w for w in loss.lambdas), out["loss"].dtype, str(out["loss"].device))
    classes = used.sum(1).to(out["loss"].dtype)
    per_class = classes.clamp_min(1)
    columns = (out["loss"] * weights, classes, out["bane"] / per_class, out["topup"] / per_class,
               out["pos_sim"], out["neg_sim"])
    return _named(loss.layers, columns)


def _named(layers, columns) -> dict[str, torch.Tensor]:
    terms = {}
    for layer_values in zip(layers, *(values.unbind() for values in columns)):
        terms.update({name.format(layer_values[0]): value for name, value in zip(COLUMNS, layer_values[1:])})
    return terms


def plain_terms(loss, embs: list[torch.Tensor], logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``ContextrastLoss``'s terms computed by the plain forms (slow; the same law and keys)."""
    group, k = loss._group(), loss.num_classes
    labels = [resize_labels(target, emb.shape[-2:]) for emb in embs]
    counts = torch.stack([((lab.reshape(-1, 1) == torch.arange(k, device=lab.device)).sum(0)) for lab in labels])
    if group is not None:
        dist.all_reduce(counts, group=group)
    present = counts.sum(0) > 0
    anchored = choose_anchors(present, loss.max_anchors, group)
    drawn = [sample_layer(lab, None if loss.bane_ratio is None else predict_at(logits.detach(), lab.shape[-2:]), k,
                          anchored & (c > 0), max_positives=loss.max_positives, max_negatives=loss.max_negatives,
                          bane_ratio=loss.bane_ratio, ignore_index=loss.ignore_index) for lab, c in zip(labels, counts)]
    samples = [d for d, _ in drawn]
    with torch.autocast(logits.device.type, enabled=False):
        embs = [e.to(torch.promote_types(e.dtype, torch.float32)) for e in embs]
        losses, anchors, global_counts = plain.contextrast_losses(
            embs, labels, samples, k, tau=loss.tau, w_low=loss.anchor_weights[0], w_high=loss.anchor_weights[1],
            stop_grad=loss.anchor_stop_grad, fusions=loss.fusions if loss.fusion == "adaptive" else None, group=group)
        terms = {"ccl_present": present.sum().float(), "ccl_anchored": anchored.sum().float()}
        terms.update(_named(loss.layers, _diagnostics(loss, losses, anchors, embs, samples, [b for _, b in drawn])))
        if loss.aa:
            S, chosen = plain.representatives(anchors, global_counts, loss.aa_selection)
            terms.update(loss.aa_terms(S, chosen, plain.anchor_to_anchor_loss))
    return terms


@torch.no_grad()
def _layer_diagnostics(anchors: torch.Tensor, rows: torch.Tensor, samples: plain.LayerSamples,
                       bane: list[int]) -> list[float]:
    """One layer's diagnostics as ``layer_terms`` reports them: the classes with positives; BANE
    picks and top-up negatives per such class; the mean cosine of the positives and of the
    negatives with their anchor."""
    classes = sum(1 for pos in samples.positives if pos.numel())
    negatives = sum(neg.numel() for neg in samples.negatives)
    cosines = [[anchors[n] @ rows[index].T for n, index in enumerate(part) if index.numel()]
               for part in (samples.positives, samples.negatives)]
    pos_sim, neg_sim = (float(torch.cat(c).mean()) if c else 0.0 for c in cosines)
    per_class = max(classes, 1)
    return [classes, sum(bane) / per_class, (negatives - sum(bane)) / per_class, pos_sim, neg_sim]


def _diagnostics(loss, losses, anchors, embs, samples, bane) -> list[torch.Tensor]:
    """The columns of ``layer_terms`` for the plain path, (I,) each."""
    weighted = torch.stack([loss.alpha * w * layer for w, layer in zip(loss.lambdas, losses)])
    values = [_layer_diagnostics(a, plain.rows_of(e), s, b) for a, e, s, b in zip(anchors, embs, samples, bane)]
    return [weighted, *(weighted.new_tensor(column) for column in zip(*values))]
