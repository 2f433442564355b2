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

from contextrast_cli.contrast.arguments import (check, check_common, check_contextrast, check_inputs, check_labels,
                                                check_plus_plus)
from contextrast_cli.contrast.bane import count_ids
from contextrast_cli.contrast.bank import AnchorBank, aa_loss, representatives
from contextrast_cli.contrast.ccl import Pairs, means_of, pixel_bins, sampled_loss, stacked_anchors
from contextrast_cli.contrast.reduce import process_group
from contextrast_cli.contrast.fusion import build_fusions, fused_anchors
from contextrast_cli.contrast.grids import predict_at, resize_labels, stacked_labels, stacked_predictions
from contextrast_cli.contrast.heads import build_heads
from contextrast_cli.contrast.layout import layout
from contextrast_cli.contrast.pixel_contrast import pixel_contrast_loss
from contextrast_cli.contrast.plain_terms import layer_terms, plain_terms
from contextrast_cli.contrast.rows import RowGrads, sampled_layers
from contextrast_cli.contrast.sampling import choose_anchors, sample_stacked
from contextrast_cli.config.datasets import IGNORE_INDEX

PLUS_PLUS_LAMBDAS = (0.1, 0.3, 0.7, 1.0)  # Contextrast++'s layer weights (METHOD.md section 6.3)


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
    """CCL + BANE (METHOD.md sections 2-3), and Contextrast++ (section 6) with ``fusion="adaptive"``
    and ``aa=True`` (``ContextrastLoss.plus_plus`` sets its defaults): alpha * lambda_i * L_i for
    every layer, as ``loss_ccl_l{i}``, alpha * L_AA as ``loss_aa``, plus ``ccl_*`` / ``aa_*``
    diagnostics (classes present, BANE and top-up negatives per anchor, mean anchor-positive /
    anchor-negative similarity, the memory bank's fill per class).

    Args:
        num_classes: classes of the segmentation (the logits' channels); ids outside
            0..num_classes-1 in the target must be ``ignore_index`` (checked on the first call, and
            on every call where the samples are sized on the host: the CPU).
        in_channels: channels of the network's tapped maps [F_1 .. F_I], shallow to deep.
        layers: the taps used (1-based); one projection head each.
        lambdas: per-layer weights, one per entry of ``layers``.
        alpha: weight of the whole term in L = L_CE + alpha * (L_PA + L_AA).
        tau: temperature.
        embed_dim, hidden_cap: head output width d and hidden width cap.
        anchor_weights: (w_l, w_h) of the static cross-layer anchor update, summing to 1.
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
            and each process's term is the mean over its own classes, as DDP averages it. The
            memory bank then stays equal on every process without communication.
        deferred_heads: run the heads' backward deferred (``contrast.heads.ProjectionHead``): less
            memory, but only when the network's own loss is backpropagated in the same
            ``backward()`` (the trainer's case). False (plain autograd) works in any training loop.
        static_slots: the samples' buffers sized by what the shapes and settings allow (True: no
            host synchronisation, what a GPU needs) or by the batch's real counts (False: no
            padding rows, two reads of a count, free on the CPU). None (the default): False on the
            CPU, True on any other device. The samples and the loss are the same either way.
        fusion: "static" (section 2.4's weighted sum) or "adaptive" (section 6.1: one
            ``contrast.fusion.AnchorFusion`` per layer but the deepest, trained through L_PA).
        fusion_mlp_layers: the fusion MLP's depth, 2 (our reading) or 1 (the paper's +1.58M).
        aa: add the anchor-to-anchor loss over a class-balanced memory bank (section 6.2).
        bank_size: K_M, the entries per class in the bank.
        aa_selection: the anchor each class gives the bank: "prioritized" (the paper's: from the
            deepest layer where it is present), "deepest", "earliest" or "average".
        aa_balanced: each class contributes K_M entries to a read, with replacement while its
            queue holds fewer (default, not in paper); False: its queue as it is.
        aa_read_before_push: the AA loss reads the bank before this step's anchors enter it
            (default, not in paper); False: after.
        implementation: "fast" (the default) or "plain" (``contrast.plain`` and
            ``contrast.plain_sampling``: the equations as written, slow; the same law).
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int], *, layers: Sequence[int] = (1, 2, 3, 4),
                 lambdas: Sequence[float] = (0.1, 0.4, 0.7, 1.0), alpha: float = 0.1, tau: float = 0.1,
                 embed_dim: int = 256, hidden_cap: int = 512, anchor_weights: Sequence[float] = (0.7, 0.3),
                 anchor_stop_grad: bool = False, max_positives: int = 1024, max_negatives: int = 2048,
                 bane_ratio: float | None = 0.5, ignore_index: int = IGNORE_INDEX, max_anchors: int | None = None,
                 sync_anchors: bool = True, deferred_heads: bool = False, static_slots: bool | None = None,
                 fusion: str = "static", fusion_mlp_layers: int = 2, aa: bool = False, bank_size: int = 100,
                 aa_selection: str = "prioritized", aa_balanced: bool = True, aa_read_before_push: bool = True,
                 implementation: str = "fast") -> None:
        super().__init__()
        layers, lambdas, anchor_weights = tuple(layers), tuple(lambdas), tuple(anchor_weights)
        check_common(num_classes, in_channels, layers, alpha, tau, embed_dim, hidden_cap, ignore_index)
        check_contextrast(layers, lambdas, anchor_weights, max_positives, max_negatives, bane_ratio, max_anchors)
        check_plus_plus(fusion, fusion_mlp_layers, bank_size, aa_selection, implementation)
        self.num_classes, self.in_channels = num_classes, tuple(in_channels)
        self.layers, self.lambdas = layers, lambdas
        self.alpha, self.tau, self.embed_dim, self.hidden_cap = alpha, tau, embed_dim, hidden_cap
        self.anchor_weights, self.anchor_stop_grad = anchor_weights, anchor_stop_grad
        self.max_positives, self.max_negatives = max_positives, max_negatives
        self.bane_ratio, self.ignore_index, self.max_anchors = bane_ratio, ignore_index, max_anchors
        self.sync_anchors, self.deferred_heads, self.static_slots = sync_anchors, deferred_heads, static_slots
        self.fusion, self.fusion_mlp_layers, self.aa, self.bank_size = fusion, fusion_mlp_layers, aa, bank_size
        self.aa_selection, self.aa_balanced, self.aa_read_before_push = aa_selection, aa_balanced, aa_read_before_push
        self.implementation = implementation
        self.heads = build_heads(in_channels, layers, hidden_cap, embed_dim, deferred_heads)
        if fusion == "adaptive":
            self.fusions = build_fusions(len(layers), embed_dim, fusion_mlp_layers)
        if aa:
            self.bank = AnchorBank(num_classes, bank_size, embed_dim, aa_balanced)
        self._labels_checked = False

    @classmethod
    def plus_plus(cls, num_classes: int, in_channels: Sequence[int], **settings) -> "ContextrastLoss":
        """Contextrast++ with the follow-up's settings (adaptive fusion, the AA loss over a bank of
        100 anchors per class, lambdas (0.1, 0.3, 0.7, 1.0)); ``settings`` override any of them."""
        defaults = dict(fusion="adaptive", aa=True, bank_size=100, lambdas=PLUS_PLUS_LAMBDAS)
        return cls(num_classes, in_channels, **{**defaults, **settings})

    def forward(self, features: list[torch.Tensor], logits: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: features, the network's tapped maps [F_1 .. F_I]; logits (B, K, H, W), the
        current prediction (detached for BANE); target (B, H, W), ``ignore_index`` ignored.

        Raises:
            ValueError: tensors whose shapes do not match the settings, or a label id outside
                the classes that is not ``ignore_index``.
        """
        check_inputs(features, logits, target, self.num_classes, self.in_channels, self.layers)
        static = target.device.type != "cpu" if self.static_slots is None else self.static_slots
        if not static or not self._labels_checked:  # sized slots read counts back anyway; else once
            check_labels(target, self.num_classes, self.ignore_index)
            self._labels_checked = True
        embs = [head(features[layer - 1]) for layer, head in zip(self.layers, self.heads)]  # (B, D, h, w) each
        if self.implementation == "plain":
            return plain_terms(self, embs, logits, target)
        group, k = self._group(), self.num_classes
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
                                 used, static_slots=self.static_slots, class_counts=local)
        lay = samples.layout  # with slots of the batch's sizes where they are not static
        with torch.autocast(logits.device.type, enabled=False):  # the loss runs in float32 (float64 stays)
            pairs = samples.index.split([lay.layer_pairs(i) for i in range(len(embs))])
            reads = [[(index, pair_rows), (pool, pool_rows)]
                     for index, pool, pair_rows, pool_rows in zip(pairs, samples.pool.unbind(), *samples.row_slices())]
            link = RowGrads()  # the rows' gradient goes back to sampled_layers as factors
            sums, rows = sampled_layers(embs, bins, reads, samples.rows, k, link)
            anchors = self.cross_layer_anchors(means_of(sums, local, group)[0], counts, compact=not static)
            pairs = Pairs(samples.anchor, samples.valid, lay.slot_positive, lay.slot_group, samples.pos_counts,
                          samples.totals)
            out = sampled_loss(anchors.flatten(0, 1), rows, pairs, samples.topup, self.tau, link)
            terms.update(layer_terms(self, out, used))
            if self.aa:
                terms.update(self.aa_terms(*representatives(anchors, counts, self.aa_selection)))
        return terms

    def cross_layer_anchors(self, means: torch.Tensor, counts: torch.Tensor, compact: bool = False) -> torch.Tensor:
        """This loss's (I, K, D) unit anchors from class means (I, K, D) and counts (I, K): the static
        or the adaptive cross-layer update, then unit length (what the analyses read too).
        ``compact``: the fusion modules run on the updated classes alone, found by a host read."""
        if self.fusion == "adaptive":
            return fused_anchors(means, counts, self.fusions, self.anchor_stop_grad, compact)
        return stacked_anchors(means, counts, *self.anchor_weights, stop_grad=self.anchor_stop_grad)

    def aa_terms(self, S: torch.Tensor, chosen: torch.Tensor, compute=aa_loss) -> dict[str, torch.Tensor]:
        """``loss_aa`` (alpha x L_AA of this step's class anchors S (K, D), ``chosen`` (K,), against
        the bank, by ``compute``: the fast ``contrast.bank.aa_loss`` or the plain form) and the
        bank's fill; in training, S enters the bank (after the read, or before it)."""
        push = self.training and torch.is_grad_enabled()
        if push and not self.aa_read_before_push:
            self.bank.push(S, chosen)
        draw = self.bank.draw()
        loss = compute(S, chosen, draw, self.tau)
        if push and self.aa_read_before_push:
            self.bank.push(S, chosen)
        return {"loss_aa": self.alpha * loss, "aa_classes": (chosen & draw.available).sum().to(loss.dtype),
                **self.bank.fill_stats()}

    def _group(self):
        """The default process group when anchors are synchronised over several processes, else None."""
        return process_group() if self.sync_anchors else None


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
