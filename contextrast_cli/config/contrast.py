"""The ``contrast`` section: the training-only contrastive loss (METHOD.md sections 2, 3 and 6).
No torch."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from contextrast_cli.config.section import PosFloat, PosInt, Section, Unit

PAPER_LAMBDAS = (0.1, 0.4, 0.7, 1.0)  # layers 1-4, shallow to deep (METHOD.md 2.6)
PLUS_PLUS_LAMBDAS = (0.1, 0.3, 0.7, 1.0)  # Contextrast++ (METHOD.md 6.3)


class BaneConfig(Section):
    """Boundary-aware negative sampling (METHOD.md section 3)."""

    enabled: bool = True
    """Take hard negatives from the boundaries of wrongly predicted regions."""
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Share of each error region taken, nearest its boundary first (the follow-up paper's value; METHOD.md calls it K)."""


class PixelContrastConfig(Section):
    """The pixel-to-pixel baseline of Wang et al., ICCV 2021 (their published values)."""

    base_tau: PosFloat = 0.07
    """Base temperature: the loss is scaled by tau / base_tau (paper)."""
    max_samples: PosInt = 1024
    """Pixels sampled over all qualifying (image, class) pairs (paper)."""
    max_views: PosInt = 100
    """Pixels per (image, class) pair at most; a pair qualifies with more pixels than this (paper)."""


class AAConfig(Section):
    """Contextrast++'s anchor-to-anchor loss over a class-balanced memory bank (METHOD.md 6.2)."""

    enabled: bool | None = None
    """null: on under contextrast++ (the follow-up's), off under contextrast (where it cannot be on)."""
    bank_size: PosInt = 100
    """K_M, the anchors kept per class (paper: 100, its Fig. 13b peak)."""
    selection: Literal["prioritized", "deepest", "earliest", "average"] = "prioritized"
    """The anchor each class gives the bank: prioritized (paper: the classes present at the
    shallowest layer, each from the deepest layer where it is present), deepest (the classes at the
    deepest layer, from it), earliest (from the shallowest), average (the unit mean over the layers
    where it is present); Tables XII and XIV (their readings of 'earliest' and 'average': ours)."""
    balanced: bool = True
    """Each class contributes bank_size entries to a read, drawn with replacement while its queue
    holds fewer (default, not in paper: "an equal number of anchors is sampled for each class");
    false: each queue as it is."""
    read_before_push: bool = True
    """The loss reads the bank before this step's anchors enter it (default, not in paper)."""


class ContrastConfig(Section):
    """The contrastive loss, training only (METHOD.md sections 2, 3 and 6).

    Paper values: alpha 0.1, lambdas (0.1, 0.4, 0.7, 1.0), embed_dim 256 (follow-up);
    Contextrast++: lambdas (0.1, 0.3, 0.7, 1.0), aa.bank_size 100.
    Our defaults, not in the paper: tau, anchor_weights, the sampling caps, BANE top-up, the
    fusion modules' sizes, aa.balanced, aa.read_before_push.
    """

    method: Literal["none", "contextrast", "contextrast++", "pixel-contrast"] = "none"
    """none: cross-entropy only; contextrast: CCL + BANE on every entry of ``layers``;
    contextrast++: the follow-up (adaptive anchor fusion and the AA loss, each switchable: see
    fusion and aa); pixel-contrast: the Wang et al. (ICCV 2021) baseline on the last entry of ``layers``."""
    implementation: Literal["fast", "plain"] = "fast"
    """fast: the fused kernels; plain: the method as written (contrast/plain.py and
    contrast/plain_sampling.py: loops over classes, slow), the same law and terms, for reading,
    checking and prototyping."""
    alpha: Annotated[float, Field(ge=0)] = 0.1
    """Weight of L_PA (+ L_AA) in L = L_CE + alpha * (L_PA + L_AA) (paper; also pixel-contrast's published weight)."""
    tau: PosFloat = 0.1
    """Temperature (default, not in paper; pixel-contrast: its paper's value)."""
    layers: tuple[PosInt, ...] = (1, 2, 3, 4)
    """Tapped encoder layers used, 1 = shallowest (paper: all four HRNet stages)."""
    lambdas: tuple[Annotated[float, Field(ge=0)], ...] | None = None
    """Per-layer weights, one per entry of ``layers``; null: the paper's weight of each layer
    (contextrast 0.1, 0.4, 0.7, 1.0; contextrast++ 0.1, 0.3, 0.7, 1.0 for layers 1-4), so varying
    ``layers`` or ``method`` keeps every layer's weight."""
    embed_dim: PosInt = 256
    """Projection output width d."""
    hidden_cap: PosInt = 512
    """Projection hidden width h_i = min(C_i, hidden_cap) (default, not in paper)."""
    anchor_weights: tuple[Unit, Unit] = (0.7, 0.3)
    """(w_l, w_h) of the static cross-layer anchor update; must sum to 1 (default, not in paper)."""
    anchor_stop_grad: bool = False
    """Detach the deepest layer's anchors inside shallower layers' anchors."""
    fusion: Literal["static", "adaptive"] | None = None
    """The cross-layer anchor update: static (the weighted sum of anchor_weights, METHOD.md 2.4) or
    adaptive (contextrast++: a module per shallow layer, self-attention over the anchor's channels
    then an MLP, METHOD.md 6.1). null: static under contextrast, adaptive under contextrast++."""
    fusion_mlp_layers: Literal[1, 2] = 2
    """Depth of the fusion MLP: 2 (Linear(2d, d) - ReLU - Linear(d, d), our reading) or 1
    (Linear(2d, d): +1.58M parameters over three modules at d = 256, the paper's count)."""
    aa: AAConfig = AAConfig()
    max_positives: PosInt = 1024
    """Positives sampled per class and layer (default, not in paper)."""
    max_negatives: PosInt = 2048
    """Negatives per anchor and layer, BANE picks first then random top-up (default, not in paper).
    The top-up is uniform over the other classes' pixels and reaches this cap whenever they are
    enough, whatever the class shares."""
    max_anchors: PosInt | None = None
    """null (the default): every class present in the batch gets an anchor, at any class count
    (ADE20K 150, COCO-Stuff 171). A number caps them, as a memory bound: with more classes
    present, that many are drawn at random each step, each present class equally often over
    steps whatever its pixel count (logged as ccl_present and ccl_anchored). Default, not in paper."""
    warmup_iters: Annotated[int, Field(ge=0)] = 0
    """Iterations of plain cross-entropy before the contrastive loss switches on."""
    sync_anchors: bool = True
    """With several processes, the class means behind the anchors (and which classes get one)
    are taken over the global batch by a differentiable all-reduce: anchors and their gradients
    are those of one process holding the whole batch, and the memory bank stays the same on
    every process. Positives and negatives stay per process."""
    deferred_heads: bool = True
    """Replay the projection heads' backward when the network's backward reaches their features
    (less memory: the gradient into a wide feature exists only then; relies on a private torch
    callback and falls back to plain autograd, with a warning, where a torch release lacks it).
    false: plain autograd through the heads. Both give the same gradients."""
    bane: BaneConfig = BaneConfig()
    pixel_contrast: PixelContrastConfig = PixelContrastConfig()

    @property
    def used_layers(self) -> tuple[int, ...]:
        """The tapped layers that get a projection head under ``method``."""
        if self.method == "pixel-contrast":
            return self.layers[-1:]
        return self.layers if self.method in ("contextrast", "contextrast++") else ()

    def resolved(self) -> "ContrastConfig":
        """This section with every method-dependent default filled in (lambdas, fusion,
        aa.enabled). The section itself keeps them null, so a saved config that changes method
        later (``--set contrast.method=...`` over a run's config) takes the new method's defaults."""
        plus = self.method == "contextrast++"
        update = {}
        if self.fusion is None:
            update["fusion"] = "adaptive" if plus else "static"
        if self.aa.enabled is None:
            update["aa"] = self.aa.model_copy(update={"enabled": plus})
        if self.lambdas is None:
            defaults = PLUS_PLUS_LAMBDAS if plus else PAPER_LAMBDAS
            update["lambdas"] = tuple(defaults[i - 1] for i in self.layers)
        return self.model_copy(update=update) if update else self

    @model_validator(mode="after")
    def _consistent(self) -> "ContrastConfig":
        if self.method != "contextrast++" and (self.fusion == "adaptive" or self.aa.enabled):
            raise ValueError(f"contrast.fusion: adaptive and contrast.aa.enabled: true are Contextrast++'s; set "
                             f"contrast.method=contextrast++ (now {self.method})")
        if self.lambdas is None and max(self.layers) > len(PAPER_LAMBDAS):
            raise ValueError(f"contrast.layers {list(self.layers)} goes beyond the paper's four layers; give "
                             f"contrast.lambdas, one weight per layer")
        if self.lambdas is not None and len(self.lambdas) != len(self.layers):
            raise ValueError(f"contrast.lambdas has {len(self.lambdas)} entries but contrast.layers "
                             f"has {len(self.layers)}; give one weight per layer")
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"contrast.layers must be distinct and ascending, got {list(self.layers)}")
        if abs(sum(self.anchor_weights) - 1.0) > 1e-6:
            raise ValueError(f"contrast.anchor_weights must sum to 1, got {list(self.anchor_weights)}")
        return self
