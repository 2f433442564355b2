"""Contextrast wired into training: terms, diagnostics, checkpoints, and the CE baseline."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from contextrast_cli.config import resolve_config
from contextrast_cli.contrast import heads as heads_module
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.contrast.heads import ProjectionHead, l2_normalize
from contextrast_cli.models.checkpoint import load_checkpoint
from contextrast_cli.train.objective import segmentation_losses
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.errors import CheckpointError
from contextrast_cli.models.registry import build_model
from tests.conftest import tiny_overrides
from tests.models.small import SMALL_MODELS


def test_method_none_is_exactly_cross_entropy(tmp_path):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=none"])
    trainer = Trainer(cfg)
    assert trainer.criterion is None
    batch = next(trainer._batches())
    torch.manual_seed(0)
    terms = trainer._step(batch)
    assert set(terms) == {"loss", "loss_ce"} and torch.equal(terms["loss"], terms["loss_ce"])


def test_contextrast_terms_weights_and_diagnostics():
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=["contrast.method=contextrast"]).contrast
    model = build_model(resolve_config("toy").model, 4)
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes)
    images, target = torch.rand(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    outputs = model(images)
    terms = criterion(outputs["features"], outputs["out"], target)
    assert {f"loss_ccl_l{i}" for i in (1, 2, 3, 4)} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["ccl_l1_classes"] == 4  # all four classes present at stride 4
    # the deepest layer carries weight alpha * 1.0, the shallowest alpha * 0.1
    no_alpha = build_criterion(cfg.model_copy(update={"alpha": 1.0}), model.feature_channels, model.num_classes)
    no_alpha.heads = criterion.heads
    torch.manual_seed(0)
    terms_1 = no_alpha(outputs["features"], outputs["out"], target)
    assert math.isclose(terms["loss_ccl_l4"].detach().item(), 0.1 * terms_1["loss_ccl_l4"].detach().item(), rel_tol=1e-5)
    assert segmentation_losses(outputs, target)["loss_ce"].requires_grad
    loss = segmentation_losses(outputs, target)["loss_ce"] + sum(v for k, v in terms.items() if k.startswith("loss_"))
    loss.backward()  # the heads' deferred backward finishes by itself: nothing to call afterwards
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in criterion.parameters())


@pytest.mark.parametrize("method", ["contextrast", "contextrast++"])
def test_contextrast_run_logs_and_checkpoint_drops_heads(tmp_path, method):
    cfg = resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + [f"contrast.method={method}"])
    result = Trainer(cfg).run()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [record for record in records if "loss" in record][-1]  # the last step's terms
    assert {"loss_ccl_l1", "ccl_l4_bane", "ccl_l4_topup", "ccl_l1_pos_sim"} <= set(logged)
    plus = method == "contextrast++"
    extra = ["loss_aa"] if plus else []
    assert math.isclose(logged["loss"], logged["loss_ce"] + sum(logged[k] for k in [
        *(f"loss_ccl_l{i}" for i in (1, 2, 3, 4)), *extra]), rel_tol=1e-5)
    if plus:  # the AA loss and the bank's fill per class, logged with the other terms
        assert logged["loss_aa"] > 0 and logged["aa_fill_max"] == 2 and logged["aa_fill_min"] <= logged["aa_fill_mean"]
    # what the file holds: the network's tensors under "model", exactly the loss's state under "contrast"
    payload = torch.load(result.run_dir / "last.pt", map_location="cpu", weights_only=True)
    fresh = build_model(cfg.model, len(payload["dataset"]["classes"]))
    criterion = build_criterion(cfg.contrast, fresh.feature_channels, fresh.num_classes)
    state = criterion.state_dict()
    assert {k: v.shape for k, v in payload["model"].items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    assert payload["contrast"].keys() == state.keys()
    assert any(k.startswith("fusions.") for k in state) == plus and ("bank._extra_state" in state) == plus
    assert not set(payload["model"]) & set(state) and len(payload["contrast"]) > 0
    criterion.load_state_dict(payload["contrast"])  # the whole loss restores from it
    if plus:
        assert criterion.bank.filled.max() == 2 and torch.equal(criterion.bank.entries,
                                                                payload["contrast"]["bank._extra_state"]["entries"])


def test_resume_cannot_switch_method(tmp_path):
    result = Trainer(resolve_config("toy", overrides=tiny_overrides(tmp_path, 2) + ["contrast.method=none"])).run()
    payload = load_checkpoint(result.run_dir / "last.pt")
    cfg = resolve_config(base=payload["config"], overrides=["contrast.method=contextrast"])
    with pytest.raises(CheckpointError, match="resume with the same method"):
        Trainer(cfg, resume=payload, run_dir=result.run_dir)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_deferred_heads_give_the_plain_gradients(name, monkeypatch):
    """The deferred head backward (replayed when the network's backward reaches each tapped
    feature) gives the gradients of plain autograd through the heads, float64, for every
    registered network (HRNet's features are crops of padded maps: the view case). Each head
    replays once, when the network's backward reaches its feature."""
    check_deferred_heads(name, "cpu", monkeypatch)


def check_deferred_heads(name: str, device: str, monkeypatch) -> None:
    """``test_deferred_heads_give_the_plain_gradients`` on ``device`` (tests/gpu runs it on CUDA)."""
    seen, lazy = [], []
    replay = heads_module._Deferred.replay

    def spy(self, grad_target=None):
        if self.parts:
            seen.append(grad_target is not None)  # reached through the feature's hook
            # the loss handed its part as a function, run only now (no map-sized gradient held before)
            lazy.append(all(callable(part) for part in self.parts))
        return replay(self, grad_target)

    monkeypatch.setattr(heads_module._Deferred, "replay", spy)
    torch.manual_seed(0)
    model = build_model(SMALL_MODELS[name], 4).double().to(device).train()
    criteria = {}
    for deferred in (True, False):  # the contrast.deferred_heads switch, the same initial weights
        cfg = resolve_config("toy", overrides=["contrast.method=contextrast",
                                               f"contrast.deferred_heads={str(deferred).lower()}"]).contrast
        torch.manual_seed(0)
        criteria[deferred] = build_criterion(cfg, model.feature_channels, model.num_classes).double().to(device)
        assert all(head.deferred is deferred for head in criteria[deferred].heads)
    images = torch.rand(2, 3, 64, 96, dtype=torch.float64).to(device)
    target = torch.randint(0, 4, (2, 64, 96)).to(device)
    grads = {}
    for mode in ("deferred", "plain", "ce"):
        net, loss = copy.deepcopy(model), copy.deepcopy(criteria[mode != "plain"]).train()
        torch.manual_seed(1)
        outputs = net(images)
        terms = segmentation_losses(outputs, target)
        if mode != "ce":
            terms.update(loss(outputs["features"], outputs["out"], target))
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
        grads[mode] = [p.grad for p in [*net.parameters(), *(loss.parameters() if mode != "ce" else [])]]
    assert seen == [True] * len(criteria[True].heads)  # every head replayed inside the network's backward
    assert lazy == seen
    assert len(grads["deferred"]) == len(grads["plain"])
    for deferred, plain in zip(grads["deferred"], grads["plain"]):
        assert (deferred is None) == (plain is None)
        if plain is not None:
            assert torch.allclose(deferred, plain, rtol=1e-9, atol=1e-12)
    # and the contrastive part did reach the network
    moved = max(float((a - b).abs().max()) for a, b in zip(grads["plain"], grads["ce"]) if a is not None)
    assert moved > 1e-6


def test_deferred_contrastive_backward_without_the_network_loss_says_so():
    """The trainer's deferred heads need the network's loss in the same backward; without it the
    backward says so (the library default, plain autograd, needs nothing: the next tests)."""
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=["contrast.method=contextrast"]).contrast
    model = build_model(SMALL_MODELS["deeplabv3"], 4).train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).train()
    images, target = torch.rand(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    outputs = model(images)
    terms = criterion(outputs["features"], outputs["out"], target)
    with pytest.raises(RuntimeError, match="backpropagate the network's loss together"):
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in criterion.parameters())  # the heads' own part is kept


def test_heads_finish_their_backward_when_the_feature_needs_no_gradient():
    """A frozen network (features without gradient): no hook fires, and the end of the backward
    still gives every deferred head its parameter gradients, equal to plain autograd's (float64)."""
    torch.manual_seed(0)
    cfg = resolve_config("toy", overrides=["contrast.method=contextrast"]).contrast
    model = build_model(SMALL_MODELS["deeplabv3"], 4).double().train()
    criterion = build_criterion(cfg, model.feature_channels, model.num_classes).double().train()
    images, target = torch.rand(2, 3, 64, 64, dtype=torch.float64), torch.randint(0, 4, (2, 64, 64))
    with torch.no_grad():
        outputs = model(images)
    grads = []
    for plain in (False, True):
        loss = copy.deepcopy(criterion)
        for head in loss.heads:
            head.deferred = not plain
        torch.manual_seed(1)
        terms = loss(outputs["features"], outputs["out"], target)
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
        grads.append([p.grad for p in loss.parameters()])
    assert all(g is not None for g in grads[0])
    for deferred, plain in zip(*grads):
        assert torch.allclose(deferred, plain, rtol=1e-9, atol=1e-12)


def test_l2_normalize_equals_f_normalize():
    """Values and gradients of the heads' normalisation equal F.normalize's (float64), also
    for an all-zero vector (shorter than eps: the clamp's branch), and pass gradcheck."""
    torch.manual_seed(0)
    z = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    z[0, :, 1, 2] = 0.0
    z[1, :, 0, 0] *= 1e-14  # shorter than eps, not zero
    grad = torch.randn_like(z)
    ours, ref = z.clone().requires_grad_(), z.clone().requires_grad_()
    y = l2_normalize(ours)
    y.backward(grad)
    F.normalize(ref, dim=1).backward(grad)
    assert torch.allclose(y, F.normalize(z, dim=1), rtol=1e-12, atol=0)
    assert torch.allclose(ours.grad, ref.grad, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(l2_normalize, (torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True),))
    half = l2_normalize(z.to(torch.bfloat16).requires_grad_())
    assert half.dtype == torch.float32  # computed in float32 at least


def test_the_head_lays_its_embedding_out_channels_last_with_the_plain_values_and_gradients():
    """The head's output has each pixel's channels adjacent (the losses read it as rows, no copy),
    and equals the plain Sequential + F.normalize on a channels-first map, values and gradients."""
    torch.manual_seed(0)
    head = ProjectionHead(6, 4, 5).double()
    x = torch.randn(2, 6, 3, 7, dtype=torch.float64)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = head(ours)
    assert out.shape == (2, 5, 3, 7) and out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    head_copy = copy.deepcopy(head)
    expected = F.normalize(head_copy.net(ref), dim=1)
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-14)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(ours.grad, ref.grad, rtol=1e-9, atol=1e-12)
    for mine, theirs in zip(head.parameters(), head_copy.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_public_loss_trains_on_its_terms_alone(frozen):
    """The library default (plain autograd): the contrastive terms backpropagated alone, without
    any network loss, from trainable or frozen (no-grad) features, reach every head and, when the
    features are trainable, the network; the gradients equal the deferred heads' where those work."""
    from contextrast_cli.api import ContextrastLoss, sum_losses

    torch.manual_seed(0)
    model = build_model(SMALL_MODELS["deeplabv3"], 4).double().train()
    criterion = ContextrastLoss(4, model.feature_channels, hidden_cap=16, embed_dim=8).double().train()
    assert criterion.deferred_heads is False and not any(head.deferred for head in criterion.heads)
    images, target = torch.rand(2, 3, 64, 64, dtype=torch.float64), torch.randint(0, 4, (2, 64, 64))
    with torch.set_grad_enabled(not frozen):
        outputs = model(images)
    terms = criterion(outputs["features"], outputs["out"], target)
    sum_losses(terms).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in criterion.parameters() if p.dim() > 1)
    touched = [p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.backbone.parameters()]
    assert any(touched) is (not frozen)


def test_deferred_heads_fall_back_to_plain_autograd_without_the_private_callback(monkeypatch):
    """A torch without ``Variable._execution_engine.queue_callback``: asking for deferred heads gives
    plain ones, one warning, and the same gradients."""
    from contextrast_cli.contrast import heads as heads_module

    monkeypatch.setattr(heads_module, "_FALLBACK_WARNED", False)
    torch.manual_seed(0)
    reference = ProjectionHead(6, 6, 5).double()
    engine = torch.autograd.Variable._execution_engine

    class WithoutCallback:  # the engine as a torch release without queue_callback would have it
        def __getattr__(self, name):
            if name == "queue_callback":
                raise AttributeError(name)
            return getattr(engine, name)

    monkeypatch.setattr(torch.autograd.Variable, "_execution_engine", WithoutCallback())
    assert not heads_module.deferred_backward_available()
    with pytest.warns(RuntimeWarning, match="plain autograd") as caught:
        head = ProjectionHead(6, 6, 5, deferred=True).double()
        ProjectionHead(6, 6, 5, deferred=True)  # warned once per process
    assert len(caught) == 1 and head.deferred is False
    head.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    grads = []
    for net in (reference, head):
        x.grad = None
        net.train()(x).pow(2).sum().backward()  # the head's output alone: plain autograd handles it
        grads.append([x.grad, *(p.grad for p in net.parameters())])
    for a, b in zip(*grads):
        assert torch.equal(a, b)
