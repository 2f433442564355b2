"""The contrastive losses as objects: settings fixed at construction, projection heads owned,
tensors in, named and already-weighted terms plus diagnostics out.

Both are ``nn.Module``s called as ``terms = criterion(features, logits, target)``; add the
``loss_*`` terms to whatever else is minimised and call ``backward()``. With
``deferred_heads=True`` the heads' deferred backward (``contrast.heads``) finishes by itself
when that backward ends.
"""

import inspect
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from contextrast_cli.contrast.arguments import check, check_common, check_contextrast, check_inputs, check_labels
from contextrast_cli.contrast.bane import count_ids
from contextrast_cli.contrast.ccl import Pairs, means_of, pixel_bins, process_group, sampled_loss, stacked_anchors
from contextrast_cli.contrast.consts import constant
from contextrast_cli.contrast.grids import predict_at, resize_labels, stacked_labels, stacked_predictions
from contextrast_cli.contrast.heads import build_heads
from contextrast_cli.contrast.layout import layout
from contextrast_cli.contrast.pixel_contrast import pixel_contrast_loss
from contextrast_cli.contrast.rows import RowGrads, sampled_layers
from contextrast_cli.contrast.sampling import choose_anchors, sample_stacked
from contextrast_cli.config.datasets import IGNORE_INDEX


class _SettingsRepr:
    """``config`` (the constructor's keyword arguments as plain values: ``type(loss)(**loss.config)``
    builds an equal loss with fresh heads) and a ``repr`` that shows them. Every constructor
    argument is kept as the attribute of the same name."""

    @property
    def config(self) -> dict:
        """The settings as constructor keyword arguments (plain Python values, picklable)."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]  # after self
        return {name: getattr(self, name) for name in names}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items())


class ContextrastLoss(_SettingsRepr, nn.Module):
    """CCL + BANE (METHOD.md sections 2-3): alpha * lambda_i * L_i for every layer, as
    ``loss_ccl_l{i}``, plus ``ccl_*`` diagnostics (classes present, BANE and top-up negatives
    per anchor, mean anchor-positive / anchor-negative similarity).

    Args:
        num_classes: classes of the segmentation (the logits' channels); ids outside
            0..num_classes-1 in the target must be ``ignore_index``.
        in_channels: channels of the network's tapped maps [F_1 .. F_I], shallow to deep.
        layers: the taps used (1-based); one projection head each.
        lambdas: per-layer weights, one per entry of ``layers``.
        alpha: weight of the whole term in L = L_CE + alpha * L_PA.
        tau: temperature.
        embed_dim, hidden_cap: head output width d and hidden width cap.
        anchor_weights: (w_l, w_h) of the cross-layer anchor update, summing to 1.
        anchor_stop_grad: detach the deepest anchors inside shallower ones.
        max_positives, max_negatives: sampling caps per class / anchor and layer.
        bane_ratio: BANE's ratio (the share of each error region taken), or None for random negatives only.
        ignore_index: label value that takes no part.
        max_anchors: None (the default): every class present in the batch gets an anchor, at any
            class count. A number caps them (a memory bound): with more classes present, that many
            are drawn at random each step, each present class equally likely whatever its pixel
            count (``ccl_present`` and ``ccl_anchored`` report both counts).
        sync_anchors: when ``torch.distributed`` runs several processes (DDP), take the class means
            behind the anchors, and the classes that get one, over the global batch (one
            differentiable all-reduce per layer): anchors and their gradients are those of one
            process holding every process's images. Positives and negatives stay per process,
            and each process's term is the mean over its own classes, as DDP averages it.
        deferred_heads: run the heads' backward deferred (``contrast.heads.ProjectionHead``): less
            memory, but only when the network's own loss is backpropagated in the same
            ``backward()`` (the trainer's case). False (plain autograd) works in any training loop.
        static_slots: the samples' buffers sized by what the shapes and settings allow (True: no
            host synchronisation, what a GPU needs) or by the batch's real counts (False: no
            padding rows, two reads of a count, free on the CPU). None (the default): False on the
            CPU, True on any other device. The samples and the loss are the same either way.
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int], *, layers: Sequence[int] = (1, 2, 3, 4),
                 lambdas: Sequence[float] = (0.1, 0.4, 0.7, 1.0), alpha: float = 0.1, tau: float = 0.1,
                 embed_dim: int = 256, hidden_cap: int = 512, anchor_weights: Sequence[float] = (0.7, 0.3),
                 anchor_stop_grad: bool = False, max_positives: int = 1024, max_negatives: int = 2048,
                 bane_ratio: float | None = 0.5, ignore_index: int = IGNORE_INDEX, max_anchors: int | None = None,
                 sync_anchors: bool = True, deferred_heads: bool = False, static_slots: bool | None = None) -> None:
        super().__init__()
        layers, lambdas, anchor_weights = tuple(layers), tuple(lambdas), tuple(anchor_weights)
        check_common(num_classes, in_channels, layers, alpha, tau, embed_dim, hidden_cap, ignore_index)
        check_contextrast(layers, lambdas, anchor_weights, max_positives, max_negatives, bane_ratio, max_anchors)
        self.num_classes, self.in_channels = num_classes, tuple(in_channels)
        self.layers, self.lambdas = layers, lambdas
        self.alpha, self.tau, self.embed_dim, self.hidden_cap = alpha, tau, embed_dim, hidden_cap
        self.anchor_weights, self.anchor_stop_grad = anchor_weights, anchor_stop_grad
        self.max_positives, self.max_negatives = max_positives, max_negatives
        self.bane_ratio, self.ignore_index, self.max_anchors = bane_ratio, ignore_index, max_anchors
        self.sync_anchors, self.deferred_heads, self.static_slots = sync_anchors, deferred_heads, static_slots
        self.heads = build_heads(in_channels, layers, hidden_cap, embed_dim, deferred_heads)
        self._labels_checked = False

    def forward(self, features: list[torch.Tensor], logits: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: features, the network's tapped maps [F_1 .. F_I]; logits (B, K, H, W), the
        current prediction (detached for BANE); target (B, H, W), ``ignore_index`` ignored.

        Raises:
            ValueError: tensors whose shapes do not match the settings.
        """
        check_inputs(features, logits, target, self.num_classes, self.in_channels, self.layers)
        static = target.device.type != "cpu" if self.static_slots is None else self.static_slots
        if not static or not self._labels_checked:  # sized slots read counts back anyway; else once
            check_labels(target, self.num_classes, self.ignore_index)
            self._labels_checked = True
        group, k = self._group(), self.num_classes
        embs = [head(features[layer - 1]) for layer, head in zip(self.layers, self.heads)]  # (B, D, h, w) each
        shapes = tuple((target.shape[0], *emb.shape[-2:]) for emb in embs)
        lay = layout(shapes, k, self.max_positives, self.max_negatives, self.bane_ratio, None, str(target.device))
        bins = pixel_bins(stacked_labels(target, shapes), k)  # (P,) all layers, one gather
        local = count_ids(lay.layer * (k + 1) + bins, len(embs) * (k + 1)).view(len(embs), k + 1)[:, :k]  # (I, K)
        counts = local
        if group is not None:  # every process samples for the classes of the global batch
            counts = local.clone()
            dist.all_reduce(counts, group=group)
        present = counts.sum(0) > 0
        anchored = choose_anchors(present, self.max_anchors, group)
        terms = {"ccl_present": present.sum().float(), "ccl_anchored": anchored.sum().float()}
        used = anchored & (counts > 0)  # (I, K): the anchors the loss computes
        pred = None if self.bane_ratio is None else stacked_predictions(logits, shapes)  # one argmax
        samples = sample_stacked(shapes, bins, pred, k, self.max_positives, self.max_negatives, self.bane_ratio,
                                 used, static_slots=self.static_slots)
        lay = samples.layout  # with slots of the batch's sizes where they are not static
        with torch.autocast(logits.device.type, enabled=False):  # the loss runs in float32 (float64 stays)
            pairs = samples.index.split([lay.layer_pairs(i) for i in range(len(embs))])
            reads = [[(index, pair_rows), (pool, pool_rows)]
                     for index, pool, pair_rows, pool_rows in zip(pairs, samples.pool.unbind(), *samples.row_slices())]
            link = RowGrads()  # the rows' gradient goes back to sampled_layers as factors
            sums, rows = sampled_layers(embs, bins, reads, samples.rows, k, link)
            anchors = stacked_anchors(means_of(sums, local, group)[0], counts, *self.anchor_weights,
                                      stop_grad=self.anchor_stop_grad)
            pairs = Pairs(samples.anchor, samples.valid, lay.slot_positive, lay.slot_group, samples.pos_counts,
                          samples.totals)
            out = sampled_loss(anchors.flatten(0, 1), rows, pairs, samples.topup, self.tau, link)
        terms.update(self._layer_terms(out, used))
        return terms

    def _group(self):
        """The default process group when anchors are synchronised over several processes, else None."""
        return process_group() if self.sync_anchors else None

    def _layer_terms(self, out: dict, used: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per layer: the weighted loss and the diagnostics, from the (I,) vectors of ``sampled_loss``."""
        weights = constant(tuple(self.alpha * w for w in self.lambdas), out["loss"].dtype, str(out["loss"].device))
        classes = used.sum(1).to(out["loss"].dtype)
        per_class = classes.clamp_min(1)
        columns = {"loss_ccl_l{}": out["loss"] * weights, "ccl_l{}_classes": classes,
                   "ccl_l{}_bane": out["bane"] / per_class, "ccl_l{}_topup": out["topup"] / per_class,
                   "ccl_l{}_pos_sim": out["pos_sim"], "ccl_l{}_neg_sim": out["neg_sim"]}
        terms = {}
        for layer_values in zip(self.layers, *(values.unbind() for values in columns.values())):
            terms.update({name.format(layer_values[0]): value for name, value in zip(columns, layer_values[1:])})
        return terms


class PixelContrastLoss(_SettingsRepr, nn.Module):
    """The baseline of Wang et al. (ICCV 2021) on one tap: alpha * SupCon as ``loss_pc``, plus
    ``pc_pairs`` (qualifying image-class pairs) and ``pc_views`` (pixels per pair).

    Args:
        num_classes, in_channels: as ``ContextrastLoss``.
        layer: the tap used (1-based).
        tau, base_tau: temperature, and the base the loss is scaled by (tau / base_tau).
        max_samples, max_views: pixels sampled in all, and per (image, class) pair at most.
        Others as ``ContextrastLoss``.
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int], *, layer: int = 4, alpha: float = 0.1,
                 tau: float = 0.1, base_tau: float = 0.07, max_samples: int = 1024, max_views: int = 100,
                 embed_dim: int = 256, hidden_cap: int = 512, ignore_index: int = IGNORE_INDEX,
                 deferred_heads: bool = False) -> None:
        super().__init__()
        check_common(num_classes, in_channels, (layer,), alpha, tau, embed_dim, hidden_cap, ignore_index)
        check(base_tau > 0 and max_samples >= 1 and max_views >= 1, "base_tau must be > 0 and max_samples, "
              f"max_views >= 1, got {base_tau}, {max_samples}, {max_views}")
        self.num_classes, self.in_channels, self.layer, self.layers = num_classes, tuple(in_channels), layer, (layer,)
        self.alpha, self.tau, self.base_tau = alpha, tau, base_tau
        self.embed_dim, self.hidden_cap = embed_dim, hidden_cap
        self.max_samples, self.max_views, self.ignore_index = max_samples, max_views, ignore_index
        self.deferred_heads = deferred_heads
        self.heads = build_heads(in_channels, self.layers, hidden_cap, embed_dim, deferred_heads)
        self._labels_checked = False

    def forward(self, features: list[torch.Tensor], logits: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Arguments as ``ContextrastLoss.forward``."""
        check_inputs(features, logits, target, self.num_classes, self.in_channels, self.layers)
        if target.device.type == "cpu" or not self._labels_checked:  # on an accelerator: the first call
            check_labels(target, self.num_classes, self.ignore_index)
            self._labels_checked = True
        emb = self.heads[0](features[self.layers[0] - 1])
        labels = resize_labels(target, emb.shape[-2:])
        pred = predict_at(logits, emb.shape[-2:])
        with torch.autocast(emb.device.type, enabled=False):  # the loss runs in float32
            out = pixel_contrast_loss(emb.float(), labels, pred, self.num_classes, tau=self.tau,
                                      base_tau=self.base_tau, max_samples=self.max_samples,
                                      max_views=self.max_views, ignore_index=self.ignore_index)
        return {"loss_pc": self.alpha * out["loss"], "pc_pairs": out["pairs"], "pc_views": out["views"]}
