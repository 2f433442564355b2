"""The public library surface (``contextrast_cli.api``), used the way a researcher with their own
training loop would: the README's example run as it stands, torchvision and timm models, the
trainer's loss being the same object, argument checks, pickling and precision."""

import inspect
import pickle
import re
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torchvision.models.segmentation import fcn_resnet50

from contextrast_cli import api
from contextrast_cli.api import ContextrastLoss, PixelContrastLoss, sum_losses, synthetic_batch, tap_features
from contextrast_cli.config import ContrastConfig, resolve_config
from contextrast_cli.contrast.criterion import build_criterion
from contextrast_cli.train.trainer import Trainer
from tests.conftest import tiny_overrides

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first python block of the README's section on using the loss in your own loop."""
    section = README.read_text().split("## Use the loss in your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def backbone_grad(parameter: torch.nn.Parameter, loss_of) -> torch.Tensor:
    parameter.grad = None
    loss_of().backward()
    return parameter.grad.clone()


def test_the_readme_example_trains_and_its_contrastive_term_falls():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 30
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # verbatim: the README cannot drift from what runs
    tapped, criterion, images, labels, log = (scope[k] for k in ("tapped", "criterion", "images", "labels", "log"))
    assert len(log) == 3 and tapped.channels == (24, 40, 112, 960) and tapped.strides == (4, 8, 16, 16)
    # 4 images of 64x64: every pixel is sampled at every layer, so the term is a function of the weights
    with torch.no_grad():
        out, features = tapped(images)
        after = sum_losses(criterion(features, out, labels)).item()
    assert after < log[0]["contrast"] - 1e-3
    # the contrastive terms reach the backbone below every tap: gradients of CE + terms differ from CE's
    stem = next(tapped.module.parameters())

    def total(with_contrast: bool):
        def loss():
            out, features = tapped(images)
            ce = F.cross_entropy(out, labels, ignore_index=255)
            return ce + sum_losses(criterion(features, out, labels)) if with_contrast else ce
        return loss

    torch.manual_seed(1)
    with_terms = backbone_grad(stem, total(True))
    torch.manual_seed(1)
    ce_only = backbone_grad(stem, total(False))
    assert (with_terms - ce_only).abs().max() > 1e-6 * ce_only.abs().max()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in criterion.heads.parameters() if p.dim() > 1)


def _three_steps(tapped, logits_of, num_classes: int) -> list[float]:
    """Three SGD steps of CE + Contextrast on a fixed synthetic batch; the contrastive term of each."""
    torch.manual_seed(0)
    images, labels = synthetic_batch(2, 64, 64, seed=3)
    criterion = ContextrastLoss(num_classes, tapped.channels)
    optimizer = torch.optim.SGD([*tapped.parameters(), *criterion.parameters()], lr=0.01, momentum=0.9)
    values = []
    for _ in range(3):
        out, features = tapped(images)
        logits = logits_of(out, features, images)
        terms = criterion(features, logits, labels)
        loss = F.cross_entropy(logits, labels, ignore_index=255) + sum_losses(terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(sum_losses(terms).item())
    grads = [p.grad for p in tapped.parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    return values


def test_a_torchvision_fcn_resnet50_taps_its_stages_and_trains():
    model = fcn_resnet50(weights=None, weights_backbone=None, num_classes=8)
    tapped = tap_features(model, [f"backbone.layer{i}" for i in range(1, 5)], output="interpolate").train()
    assert tapped.channels == (256, 512, 1024, 2048) and tapped.strides == (4, 8, 8, 8)  # dilated layers 3-4
    values = _three_steps(tapped, lambda out, features, images: out, 8)
    assert values[-1] < values[0]  # the contrastive term falls on the repeated batch


def test_a_timm_features_only_backbone_with_its_own_head_trains():
    backbone = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    tapped = tap_features(backbone).train()
    assert tapped.channels == (64, 128, 256, 512) and tapped.strides == (4, 8, 16, 32)
    head = torch.nn.Conv2d(512, 8, 1)
    tapped.add_module("head", head)  # the user's decoder, trained with the rest

    def logits_of(out, features, images):
        assert out is None  # a features_only model has no output of its own
        return F.interpolate(head(features[-1]), size=images.shape[-2:], mode="bilinear", align_corners=False)

    values = _three_steps(tapped, logits_of, 8)
    assert values[-1] < values[0]  # the contrastive term falls on the repeated batch


# METHOD.md's values, written out here (paper: alpha, lambdas, layers; the project's documented
# defaults for the rest), not read from the code under test
PAPER = dict(layers=(1, 2, 3, 4), lambdas=(0.1, 0.4, 0.7, 1.0), alpha=0.1, tau=0.1, embed_dim=256, hidden_cap=512,
             anchor_weights=(0.7, 0.3), anchor_stop_grad=False, max_positives=1024, max_negatives=2048,
             bane_ratio=0.5, max_anchors=None, sync_anchors=True)  # None: every present class


def test_the_trainer_uses_the_public_loss_with_the_papers_defaults(tiny_config):
    trainer = Trainer(tiny_config)  # toy preset: contextrast on four ResNet-18 stages
    assert type(trainer.criterion) is api.ContextrastLoss
    defaults = {k: p.default for k, p in inspect.signature(ContextrastLoss).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert {k: defaults[k] for k in PAPER} == PAPER
    schema = ContrastConfig(method="contextrast").resolved().model_dump()
    schema["bane_ratio"] = schema["bane"]["ratio"]
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in schema.items() if k in PAPER} == PAPER


SETTINGS = dict(layers=(2, 3, 4), lambdas=(0.3, 0.6, 1.0), alpha=0.2, tau=0.15, embed_dim=32, hidden_cap=16,
                anchor_weights=(0.6, 0.4), anchor_stop_grad=True, max_positives=200, max_negatives=300,
                bane_ratio=0.3, max_anchors=4, deferred_heads=True)


def test_public_and_trainer_loss_give_identical_terms_in_float64(tmp_path):
    """Every setting away from its default, so the config -> keyword mapping is checked too."""
    overrides = [f"contrast.{key}={list(value) if isinstance(value, tuple) else value}"
                 for key, value in SETTINGS.items() if key != "bane_ratio"] + ["contrast.bane.ratio=0.3"]
    trainer = Trainer(resolve_config("toy", overrides=[*tiny_overrides(tmp_path), *overrides]))
    built = trainer.criterion.double().train()
    public = ContextrastLoss(trainer.model.num_classes, trainer.model.feature_channels, **SETTINGS).double().train()
    assert public.config == built.config
    public.load_state_dict(built.state_dict())
    generator = torch.Generator().manual_seed(0)
    channels, k = trainer.model.feature_channels, trainer.model.num_classes
    features = [torch.randn(2, c, 32 // s, 48 // s, generator=generator, dtype=torch.float64)
                for c, s in zip(channels, (4, 8, 16, 32))]
    logits = torch.randn(2, k, 32, 48, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, k, (2, 32, 48), generator=generator)
    labels[:, :4] = 255
    results = []
    for criterion in (built, public):
        torch.manual_seed(5)
        results.append(criterion(features, logits, labels))
    assert results[0].keys() == results[1].keys() and any(k.startswith("loss_ccl") for k in results[0])
    for key, value in results[0].items():
        assert value.dtype in (torch.float64, torch.float32) and torch.equal(value, results[1][key]), key


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lambdas": (0.1, 0.4, 1.0)}, "lambdas has 3 entries"),
    ({"ignore_index": 3}, "ignore_index 3 is a class id"),
    ({"layers": (1, 5)}, "in_channels lists only 4 tapped maps"),
    ({"layers": (2, 1)}, "layers must be distinct, ascending"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"anchor_weights": (0.7, 0.4)}, "anchor_weights must be two weights"),
    ({"bane_ratio": 1.5}, "bane_ratio must be in"),
    ({"max_negatives": 0}, "max_positives and max_negatives must be >= 1"),
    ({"alpha": -1.0}, "alpha must be >= 0"),
])
def test_each_bad_argument_is_one_value_error(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ContextrastLoss(5, [8, 8, 8, 8], **kwargs)


def test_bad_constructor_and_call_inputs_of_both_losses():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        PixelContrastLoss(1, [8, 8, 8, 8])
    with pytest.raises(ValueError, match=re.escape("in_channels lists only 2 tapped maps")):
        PixelContrastLoss(5, [8, 8])  # the default layer is 4
    criterion = ContextrastLoss(5, [8, 8, 8, 8])
    features = [torch.randn(1, 8, 8, 8) for _ in range(4)]
    with pytest.raises(ValueError, match=re.escape("expected (B, 5, H, W)")):
        criterion(features, torch.randn(1, 6, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("features[2] has shape (1, 9, 8, 8)")):
        criterion([*features[:2], torch.randn(1, 9, 8, 8), features[3]], torch.randn(1, 5, 8, 8),
                  torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="target must be integer class ids"):
        criterion(features, torch.randn(1, 5, 8, 8), torch.zeros(1, 8, 8))


def test_settings_show_in_repr_and_the_loss_pickles_after_a_step():
    criterion = PixelContrastLoss(5, [4, 8], layer=2, tau=0.2)
    assert "layer=2" in repr(criterion) and "tau=0.2" in repr(criterion)
    criterion = ContextrastLoss(5, [8, 8, 8, 8], tau=0.2, bane_ratio=None, layers=(2, 4), lambdas=(0.5, 1.0))
    assert "tau=0.2" in repr(criterion) and "bane_ratio=None" in repr(criterion)
    features = [torch.randn(2, 8, 8, 8, requires_grad=True) for _ in range(4)]
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    network_loss = sum(f.sum() for f in features) + logits.sum()  # what reaches the features, made first
    terms = criterion(features, logits, torch.randint(0, 5, (2, 8, 8)))
    (sum_losses(terms) + network_loss).backward()
    copy = pickle.loads(pickle.dumps(criterion))
    assert repr(copy) == repr(criterion) and copy.config == criterion.config
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), criterion.state_dict().values()))
    assert repr(type(criterion)(**criterion.config)) == repr(criterion)


def test_the_loss_runs_under_autocast_and_keeps_float32_terms():
    torch.manual_seed(0)
    criterion = ContextrastLoss(5, [8, 16], layers=(1, 2), lambdas=(0.5, 1.0))
    features = [torch.randn(2, 8, 16, 16, requires_grad=True), torch.randn(2, 16, 8, 8, requires_grad=True)]
    logits = torch.randn(2, 5, 32, 32, requires_grad=True)
    network_loss = sum(f.sum() for f in features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = criterion(features, logits, torch.randint(0, 5, (2, 32, 32)))
    loss = sum_losses(terms)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    (loss + network_loss).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in criterion.parameters())


def test_tap_features_names_what_is_wrong():
    model = fcn_resnet50(weights=None, weights_backbone=None, num_classes=3)
    with pytest.raises(ValueError, match="node 'backbone.layer5' is not in the model; closest: backbone.layer"):
        tap_features(model, ["backbone.layer1", "backbone.layer5"])
    with pytest.raises(ValueError, match="nodes: name the maps to tap"):
        tap_features(model)
    with pytest.raises(ValueError, match="leave nodes and output unset"):
        tap_features(timm.create_model("resnet18", pretrained=False, features_only=True), ["layer1"])
    with pytest.raises(ValueError, match="no loss_\\* entry"):
        sum_losses({"ccl_l1_classes": torch.tensor(2.0)})


def test_build_criterion_maps_the_config_section_to_the_public_object():
    section = ContrastConfig(method="pixel-contrast", layers=(2,), lambdas=(1.0,))
    criterion = build_criterion(section, [4, 8], 6)
    assert type(criterion) is PixelContrastLoss and criterion.config["layer"] == 2
    assert criterion.config["num_classes"] == 6
    assert build_criterion(ContrastConfig(method="none"), [4, 8], 6) is None


def test_contextrast_plus_plus_in_your_own_loop_keeps_its_bank_across_steps(tmp_path):
    """Issue 34: ``ContextrastLoss.plus_plus`` in a user's loop: the bank fills one entry per step
    for every class present, the AA term joins once the bank holds anchors, the bank travels with
    ``state_dict`` (a resumed loop continues it), and it stays out of the parameters and buffers."""
    torch.manual_seed(0)
    images, labels = synthetic_batch(2, 64, 64, seed=3)
    backbone = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    tapped = tap_features(backbone).train()
    head = torch.nn.Conv2d(512, 8, 1)
    criterion = ContextrastLoss.plus_plus(8, tapped.channels, bank_size=5)
    assert criterion.lambdas == (0.1, 0.3, 0.7, 1.0) and criterion.fusion == "adaptive" and criterion.aa
    optimizer = torch.optim.SGD([*tapped.parameters(), *head.parameters(), *criterion.parameters()], lr=0.01)
    present = int((torch.bincount(labels[labels != 255], minlength=8) > 0).sum())
    aa = []
    for step in range(3):
        _, features = tapped(images)
        logits = F.interpolate(head(features[-1]), size=images.shape[-2:], mode="bilinear", align_corners=False)
        terms = criterion(features, logits, labels)
        loss = F.cross_entropy(logits, labels, ignore_index=255) + sum_losses(terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        aa.append(float(terms["loss_aa"]))
        assert int((criterion.bank.filled > 0).sum()) <= present and int(criterion.bank.filled.max()) == step + 1
    assert aa[0] == 0 and aa[1] > 0 and aa[2] > 0  # the first step read an empty bank
    assert all(p.grad is not None for p in criterion.fusions.parameters())
    torch.save(criterion.state_dict(), tmp_path / "loss.pt")
    again = ContextrastLoss.plus_plus(8, tapped.channels, bank_size=5)
    again.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    assert torch.equal(again.bank.entries, criterion.bank.entries) and torch.equal(again.bank.head, criterion.bank.head)
    assert not any("bank" in name for name, _ in criterion.named_buffers())
    assert pickle.loads(pickle.dumps(criterion)).bank.filled.tolist() == criterion.bank.filled.tolist()
