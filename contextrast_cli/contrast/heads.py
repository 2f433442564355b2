"""Projection heads pi_i: training-only modules owned by the contrastive losses, never exported."""

import warnings
from collections.abc import Sequence

import torch
from torch import nn


def deferred_backward_available() -> bool:
    """Whether this torch has the private autograd-engine callback the deferred backward needs
    (``torch.autograd.Variable._execution_engine.queue_callback``)."""
    engine = getattr(getattr(torch.autograd, "Variable", None), "_execution_engine", None)
    return callable(getattr(engine, "queue_callback", None))


_FALLBACK_WARNED = False


def _deferred_or_fallback(deferred: bool) -> bool:
    """``deferred``, unless this torch lacks the private callback: then plain autograd, with one
    warning per process."""
    global _FALLBACK_WARNED
    if not deferred or deferred_backward_available():
        return deferred
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn(f"torch {torch.__version__} has no autograd-engine queue_callback: the projection heads "
                      f"run under plain autograd (deferred_heads has no effect; same gradients, more memory)",
                      RuntimeWarning, stacklevel=3)
    return False


class ProjectionHead(nn.Module):
    """Conv1x1(C -> h) - BN - ReLU - Conv1x1(h -> d), then L2 normalisation over channels.

    With ``deferred=False`` (the library default) the head is a plain module under autograd.
    With ``deferred=True`` (the trainer's default, ``contrast.deferred_heads``), while training
    with gradients the head's backward is *deferred*: the forward keeps no
    graph of the head (only its output), the loss's backward stops at the embedding and
    hands dL/demb over, and the head's backward is replayed (its forward recomputed from
    the input, as activation checkpointing does) when the network's own backward reaches
    the tapped feature, through a hook on that feature. Plain autograd would run the head's
    backward first (its nodes are the step's newest) and then hold the gradient it sends
    into the feature, as wide as the feature (up to 2048 channels on ResNet-50's last
    stage), from the start of the backward, when every activation of the step is still
    alive, until the backbone's backward consumes it; deferred, it exists only then. The
    gradients are the plain ones (tested against undeferred autograd on every registered
    network). The recomputation updates the BatchNorm running statistics a second time,
    which is harmless: the heads are dropped before inference.

    The replay needs the network's loss to reach the feature in the same backward, which
    the trainer's loss (cross-entropy plus the contrastive terms) always does; other training
    loops keep the plain default. It relies on torch's private autograd-engine callback; where a
    torch release lacks it, the head falls back to plain autograd with one warning. Nothing needs
    to be called after the backward: the first time the loss's gradient reaches a head, the
    head queues a callback on autograd's engine that runs when that backward ends; it
    finishes the head's own parameter gradients if the replay never ran (a frozen or
    detached feature) and raises when a feature's contrastive part was lost.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, deferred: bool = False) -> None:
        super().__init__()
        self.deferred = _deferred_or_fallback(deferred)
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                 nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1))
        self._pending: list[_Deferred] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.deferred and self.training and torch.is_grad_enabled()):
            return self._project(x)
        pending = _Deferred(self, x)
        self._pending = [pending]  # one forward per backward: an older, never-replayed one is dropped
        # the boundary's one input is a fresh leaf, not the parameters: autograd would otherwise call
        # their gradient hooks (DistributedDataParallel's among them) once more, with no gradient
        token = torch.ones((), device=x.device, requires_grad=True)
        out = _Boundary.apply(pending, token)
        return out

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """The unit embedding (B, d, h, w), laid out channels last (each pixel's d values adjacent):
        the losses read whole pixels (class sums, sampled rows) and write a whole-map gradient, which
        in that layout are row copies, not strided reads and transposes. The hidden map is converted
        (min(C, hidden_cap) channels, never the wider input); the output conv writes that layout."""
        conv, *rest = self.net
        hidden = conv(x).contiguous(memory_format=torch.channels_last)
        for module in rest:
            hidden = module(hidden)
        return l2_normalize(hidden)

    def __getstate__(self) -> dict:
        """Pickled and deep-copied without the pending replay (it holds tensors and a weak reference)."""
        state = super().__getstate__()  # a copy
        state["_pending"] = []
        return state


def l2_normalize(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(z, dim=1)`` (z / max(||z||, eps) over channels) computed in float32 at
    least, with a three-pass backward (see ``_L2Normalize``)."""
    return _L2Normalize.apply(z, eps)


class _L2Normalize(torch.autograd.Function):
    """y = z / max(||z||, eps) over dim 1; dz = (g - y <y, g>) / max(||z||, eps), where the
    <y, g> term drops for vectors shorter than eps (the clamp's gradient is zero there).

    Autograd through ``F.normalize`` differentiates the division and the norm separately:
    about eight passes over the embedding map against three here, on the largest tensors
    the heads make (B x 256 x H/4 x W/4 at the first tap).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.in_dtype = z.dtype
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        inv = norm.clamp_min(eps).reciprocal_()
        y = z * inv
        ctx.save_for_backward(y, inv, norm > eps)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y, inv, long_enough = ctx.saved_tensors
        dot = (y * grad).sum(1, keepdim=True).mul_(long_enough)
        return torch.addcmul(grad, y, dot, value=-1).mul_(inv).to(ctx.in_dtype), None


class _Deferred:
    """One deferred head backward: the input, where its gradient is hooked, the loss's dL/demb."""

    def __init__(self, head: ProjectionHead, x: torch.Tensor) -> None:
        self.head, self.x = head, x
        # a view (e.g. a feature cropped back from a padded map) takes no part in the network's
        # loss; its base does, so the hook goes there and the replay writes through the view
        self.target = x if x._base is None else x._base
        self.parts: list = []  # dL/demb: tensors, and makers of one (a loss builds it only when needed)
        self.hooked = self.target.requires_grad
        device = x.device.type
        self.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        if self.hooked:
            self.target.register_hook(self.replay)

    def hand(self, part) -> None:
        """Take a part of dL/demb (a tensor, or a function that makes one when the replay runs); the
        first part queues ``finish`` on autograd's engine, to run when this backward ends."""
        if not self.parts:  # runs after every hook (the replay) had its chance
            torch.autograd.Variable._execution_engine.queue_callback(self.finish)
        self.parts.append(part)

    def finish(self) -> None:
        """At the end of the backward that reached the head: replay what the network's backward did
        not (the head's own parameter gradients), and raise when a feature's part was lost.

        Raises:
            RuntimeError: the contrastive gradient of a feature that needs one was lost (the
                network's loss did not reach that feature in the same backward).
        """
        if not self.parts:  # replayed by the feature's hook
            return
        lost = self.hooked
        self.replay()
        if lost:  # raised from a callback queued behind the other heads' ones, so they all finish first
            torch.autograd.Variable._execution_engine.queue_callback(_raise_lost)

    def replay(self, grad_target: torch.Tensor | None = None) -> torch.Tensor | None:
        """The head's backward for ``grad_out``; returns ``grad_target`` plus the head's part of it."""
        if not self.parts:  # the contrastive loss took no part in this backward
            return grad_target
        parts, x, target = self.parts, self.x, self.target
        self.parts, self.x, self.target = [], None, None
        grad_out = None
        for part in parts:
            part = part() if callable(part) else part
            grad_out = part if grad_out is None else grad_out + part
        device, dtype, enabled = self.autocast
        with torch.enable_grad():
            base = target.detach().requires_grad_(grad_target is not None)
            inp = base if x is target else base.as_strided(x.size(), x.stride(), x.storage_offset())
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                emb = self.head._project(inp)
            inputs = [p for p in self.head.parameters() if p.requires_grad] + ([base] if base.requires_grad else [])
            if inputs:
                torch.autograd.backward(emb, grad_out, inputs=inputs)
        if grad_target is None:
            return None
        # base.grad is this replay's own tensor: adding into it saves a third feature-sized
        # tensor (177 MB on ResNet-50's last stage at batch 8) while the backward runs
        return base.grad.add_(grad_target)


def _raise_lost() -> None:
    raise RuntimeError("a projection head's gradient could not reach its feature: the heads replay "
                       "their backward when the network's backward reaches the tapped features, so "
                       "backpropagate the network's loss together with the contrastive terms")


class _Boundary(torch.autograd.Function):
    """The head's output without its graph; the backward hands dL/demb to the pending replay.
    ``ContextrastLoss`` finds the pending replay on the output's ``grad_fn`` (``pending``) and hands
    it a function that builds its part of dL/demb, so that map-sized gradient exists only during
    the replay."""

    @staticmethod
    def forward(ctx, pending: _Deferred, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.pending = pending  # a loss that finds it on the output's grad_fn may hand its gradient lazily
        ctx.set_materialize_grads(False)  # no map of zeros when the loss handed its part over that way
        return pending.head._project(pending.x)  # autograd.Function forwards run without a graph

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor | None):
        if grad_out is not None:
            ctx.pending.hand(grad_out)
        return (None,) * len(ctx.needs_input_grad)


def build_heads(in_channels: Sequence[int], layers: Sequence[int], hidden_cap: int, embed_dim: int,
                deferred: bool = False) -> nn.ModuleList:
    """One head per entry of ``layers`` (1-based tap indices into ``in_channels``), hidden width
    min(C_i, ``hidden_cap``), output ``embed_dim``; ``deferred``: see ``ProjectionHead``."""
    return nn.ModuleList(ProjectionHead(in_channels[i - 1], min(in_channels[i - 1], hidden_cap), embed_dim, deferred)
                         for i in layers)
