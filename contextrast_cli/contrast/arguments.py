"""Argument checks of the public losses: one ``ValueError`` each, naming the argument, the value
and what it must be; and the checks of a call's tensors against the settings (shapes only, so
no host synchronisation)."""

from collections.abc import Sequence

import torch


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def check_common(num_classes: int, in_channels: Sequence[int], layers: Sequence[int], alpha: float,
                 tau: float, embed_dim: int, hidden_cap: int, ignore_index: int) -> None:
    """The settings both losses share.

    Raises:
        ValueError: the first argument that is out of range, with its value.
    """
    check(isinstance(num_classes, int) and num_classes >= 2,
          f"num_classes must be an integer >= 2, got {num_classes!r}")
    check(len(in_channels) > 0 and all(isinstance(c, int) and c > 0 for c in in_channels),
          f"in_channels must list the tapped maps' channel counts (positive integers), got {list(in_channels)}")
    check(len(layers) > 0 and all(isinstance(i, int) for i in layers) and list(layers) == sorted(set(layers))
          and layers[0] >= 1, f"layers must be distinct, ascending, 1-based tap indices, got {list(layers)}")
    check(layers[-1] <= len(in_channels), f"layers {list(layers)} but in_channels lists only "
          f"{len(in_channels)} tapped maps ({list(in_channels)}): a layer index is 1..{len(in_channels)}")
    check(alpha >= 0, f"alpha must be >= 0, got {alpha}")
    check(tau > 0, f"tau must be > 0, got {tau}")
    check(embed_dim >= 1 and hidden_cap >= 1, f"embed_dim and hidden_cap must be >= 1, got {embed_dim}, {hidden_cap}")
    check(not 0 <= ignore_index < num_classes, f"ignore_index {ignore_index} is a class id (0..{num_classes - 1}): "
          "pick a value outside the classes, such as 255")


def check_contextrast(layers: Sequence[int], lambdas: Sequence[float], anchor_weights: Sequence[float],
                      max_positives: int, max_negatives: int, bane_ratio: float | None, max_anchors: int | None) -> None:
    """The settings of ``ContextrastLoss`` alone.

    Raises:
        ValueError: the first argument that is out of range, with its value.
    """
    check(len(lambdas) == len(layers), f"lambdas has {len(lambdas)} entries ({list(lambdas)}) but layers has "
          f"{len(layers)} ({list(layers)}): give one weight per layer")
    check(all(w >= 0 for w in lambdas), f"lambdas must be >= 0, got {list(lambdas)}")
    check(len(anchor_weights) == 2 and all(0 <= w <= 1 for w in anchor_weights)
          and abs(sum(anchor_weights) - 1.0) <= 1e-6,
          f"anchor_weights must be two weights (w_l, w_h) in [0, 1] summing to 1, got {list(anchor_weights)}")
    check(max_positives >= 1 and max_negatives >= 1,
          f"max_positives and max_negatives must be >= 1, got {max_positives}, {max_negatives}")
    check(bane_ratio is None or 0 < bane_ratio <= 1, f"bane_ratio must be in (0, 1] or None, got {bane_ratio}")
    check(max_anchors is None or max_anchors >= 1, f"max_anchors must be None or >= 1, got {max_anchors}")


def check_plus_plus(fusion: str, fusion_mlp_layers: int, bank_size: int, aa_selection: str,
                    implementation: str) -> None:
    """Contextrast++'s settings and the implementation.

    Raises:
        ValueError: the first argument that is out of range, with its value.
    """
    check(fusion in ("static", "adaptive"), f"fusion must be 'static' or 'adaptive', got {fusion!r}")
    check(fusion_mlp_layers in (1, 2), f"fusion_mlp_layers must be 1 or 2, got {fusion_mlp_layers!r}")
    check(isinstance(bank_size, int) and bank_size >= 1, f"bank_size must be an integer >= 1, got {bank_size!r}")
    check(aa_selection in AA_SELECTIONS, f"aa_selection must be one of {', '.join(AA_SELECTIONS)}, got {aa_selection!r}")
    check(implementation in ("fast", "plain"), f"implementation must be 'fast' or 'plain', got {implementation!r}")


AA_SELECTIONS = ("prioritized", "deepest", "earliest", "average")


def check_inputs(features: Sequence[torch.Tensor], logits: torch.Tensor, target: torch.Tensor,
                 num_classes: int, in_channels: Sequence[int], layers: Sequence[int]) -> None:
    """A call's tensors against the loss's settings (shapes and dtypes only).

    Raises:
        ValueError: what does not match, and what was expected.
    """
    check(len(features) >= layers[-1], f"features has {len(features)} maps but the loss uses layer "
          f"{layers[-1]}: pass every tapped map [F_1 .. F_I], shallow to deep")
    for layer in layers:
        feature = features[layer - 1]
        check(feature.dim() == 4 and feature.shape[1] == in_channels[layer - 1],
              f"features[{layer - 1}] has shape {tuple(feature.shape)}, expected (B, {in_channels[layer - 1]}, h, w) "
              f"(in_channels {list(in_channels)})")
    check(logits.dim() == 4 and logits.shape[1] == num_classes,
          f"logits have shape {tuple(logits.shape)}, expected (B, {num_classes}, H, W): num_classes is {num_classes}")
    check(target.dim() == 3 and not target.is_floating_point(),
          f"target must be integer class ids of shape (B, H, W), got {target.dtype} {tuple(target.shape)}")
    shapes = {f"features[{layer - 1}]": features[layer - 1].shape for layer in layers}
    shapes.update(logits=logits.shape, target=target.shape)
    check(len({shape[0] for shape in shapes.values()}) == 1, "the batch sizes differ: " + ", ".join(
        f"{name} {tuple(shape)}" for name, shape in shapes.items()) + "; pass one batch's features, logits and target")


def check_labels(target: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Every id of ``target`` a class (0..K-1) or ``ignore_index``. Reads one value back from the
    device: the losses call it on their first call, and on every call only where that is free.

    Raises:
        ValueError: the first id that is neither, and how to fix it.
    """
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(f"target holds label {value}, outside 0..{num_classes - 1} and not ignore_index "
                         f"{ignore_index}: map it to a class id or to {ignore_index} (prepare-data does)")
