"""What each of 2 gloo processes does in tests/train/test_distributed.py, and the
single-process references they are compared with. Workers are spawned fresh (a new
interpreter each), join the group through ``setup_runtime(distributed=True)`` as torchrun's
variables tell them, run every task, and save what they computed."""

import contextlib
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world: int, port: int, out: str, data_root: str, run_dir: str) -> None:
    """One process of the group: every task, results to ``out/rank<r>.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from contextrast_cli.runtime.device import setup_runtime, shutdown_runtime

    runtime = setup_runtime("cpu", "fp32", seed=0, distributed=True)
    results = {"ce": ce_steps(runtime), "ce_uneven": ce_steps(runtime, uneven=True),
               "contrast": contrast_gradients(runtime),
               "anchors": anchors_and_gradients(runtime), "sampled": sampled_loss(runtime),
               "plus_plus": plus_plus(runtime),
               "validation": validation(runtime, Path(data_root))}
    results["trainer"] = trainer_agreement(Path(out), Path(run_dir))  # last: it leaves the process group
    torch.save(results, Path(out) / f"rank{rank}.pt")
    shutdown_runtime(runtime)


# (a) cross-entropy steps with frozen BatchNorm statistics ------------------------------------

def scenes(batch: int = 4, height: int = 32, width: int = 48,
           uneven: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic scenes without ignore pixels; ``uneven``: images 0 and 2 (process 0's share on 2
    processes) have 80% and 50% of their pixels ignored, images 1 and 3 none."""
    from contextrast_cli.data.synthetic import render_scene

    images, labels = zip(*(render_scene(7, i, height, width) for i in range(batch)))
    x, y = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(np.stack(labels)).long()
    if uneven:
        y[0, : int(0.8 * height)] = 255
        y[2, : height // 2] = 255
    return x, y


def small_network() -> nn.Module:
    from contextrast_cli.config import ModelConfig
    from contextrast_cli.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="deeplabv3plus", backbone="resnet18", output_stride=16), 8)
    model.train()
    for module in model.modules():  # frozen statistics: every image is normalised alike on any process;
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):  # no dropout (its masks
            module.eval()  # come from each process's own RNG)
    return model


def ce_steps(runtime, steps: int = 3, uneven: bool = False) -> dict[str, torch.Tensor]:
    """3 SGD steps of cross-entropy on this process's share of the global batch of 4 (every
    world_size-th sample, as InfiniteSampler deals them); the weights after. ``uneven``: the
    processes' shares have very different numbers of ignored pixels."""
    from contextrast_cli.runtime import collectives as ddp
    from contextrast_cli.train.objective import Objective
    from contextrast_cli.train.step import training_step

    model = small_network()
    objective = ddp.data_parallel(Objective(model), runtime, unused_parameters=False)
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images, labels = scenes(uneven=uneven)
    share = slice(runtime.rank, None, runtime.world_size)
    for _ in range(steps):
        training_step(model, optimizer, images[share], labels[share], contextlib.nullcontext, objective=objective)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def contrast_gradients(runtime) -> dict:
    """One Contextrast step's gradients on this process's share, computed twice from the same RNG
    state: without DDP (this process's own gradients, anchors synchronised) and through DDP
    (averaged over processes; the projection heads' come from their deferred replay)."""
    from contextrast_cli.config import ContrastConfig
    from contextrast_cli.contrast.criterion import build_criterion
    from contextrast_cli.runtime import collectives as ddp
    from contextrast_cli.train.objective import Objective

    model = small_network()
    criterion = build_criterion(ContrastConfig(method="contextrast"), model.feature_channels, model.num_classes)
    objective = Objective(model, criterion)
    wrapped = ddp.data_parallel(objective, runtime, unused_parameters=False)
    images, labels = scenes()
    share = slice(runtime.rank, None, runtime.world_size)
    state, grads = torch.get_rng_state(), {}
    for name, module in (("local", objective), ("ddp", wrapped)):
        torch.set_rng_state(state)
        objective.zero_grad(set_to_none=True)
        terms = module(images[share], labels[share])
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
        grads[name] = {k: p.grad.clone() for k, p in objective.named_parameters()}
    return grads


# (b) anchors over the global batch, and the gradients each process gets -----------------------

def embeddings() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two layers of float64 unit embeddings (B=4, D=6) and labels with ignored pixels."""
    generator = torch.Generator().manual_seed(11)
    embs, labels = [], []
    for pixels in (48, 12):
        embs.append(F.normalize(torch.randn(4, 6, pixels, generator=generator, dtype=torch.float64), dim=1))
        label = torch.randint(0, NUM_CLASSES, (4, pixels), generator=generator)
        label[torch.rand(4, pixels, generator=generator) < 0.1] = 255
        labels.append(label)
    return embs, labels


def every_pair(labels: torch.Tensor):
    """Positives (every pixel of each class) and negatives (every labelled pixel of the others, as
    a pool that every anchor takes whole): no sampling, so the terms do not depend on random draws."""
    from contextrast_cli.contrast.bane import BanePicks
    from contextrast_cli.contrast.sampling import NegativeSelection, Positives

    flat = labels.reshape(-1)
    labelled = flat != 255
    order = torch.argsort(torch.where(labelled, flat, NUM_CLASSES), stable=True)
    counts = torch.bincount(flat[labelled], minlength=NUM_CLASSES)
    positives = Positives(order, flat[order].clamp_max(NUM_CLASSES - 1), labelled[order], counts)
    pool = torch.arange(flat.numel())
    topup = labelled[None] & (flat[None] != torch.arange(NUM_CLASSES)[:, None])
    empty = flat.new_zeros(0)
    return positives, NegativeSelection(None, BanePicks(empty, empty, empty.bool(), counts * 0), pool, topup)


def ccl_terms(embs, labels, group):
    """Anchors (cross-layer update included) and the summed pixel-anchor loss of two layers."""
    from contextrast_cli.contrast.ccl import class_means, contextual_anchors, pixel_anchor_loss

    stats = [class_means(e, l, NUM_CLASSES, group) for e, l in zip(embs, labels)]
    anchors = contextual_anchors([m for m, _ in stats], [c for _, c in stats], 0.7, 0.3)
    loss = sum(pixel_anchor_loss(a, e, *every_pair(l), tau=0.1)["loss"] for a, e, l in zip(anchors, embs, labels))
    return anchors, loss


def anchors_and_gradients(runtime) -> dict:
    """This process's anchors and dL/demb (its share of the batch: images rank, rank + W, ...), and
    the anchor classes a cap of 3 draws (the same on every process)."""
    import torch.distributed as dist

    from contextrast_cli.contrast.sampling import choose_anchors, present_classes

    embs, labels = embeddings()
    share = slice(runtime.rank, None, runtime.world_size)
    local = [e[share].clone().requires_grad_(True) for e in embs]
    anchors, loss = ccl_terms(local, [l[share] for l in labels], dist.group.WORLD)
    loss.backward()
    torch.manual_seed(100 + runtime.rank)  # each process draws its own priorities
    present = present_classes(labels[0][share], NUM_CLASSES).long()
    dist.all_reduce(present)  # the global batch's classes, as class_means's counts give them
    present = present > 0
    anchored = choose_anchors(present, 3, group=dist.group.WORLD)
    return {"anchors": [a.detach() for a in anchors], "grads": [e.grad for e in local],
            "anchored": anchored, "present": present}


def reference_anchors_and_gradients(world: int) -> dict:
    """One process: anchors of the whole batch; the loss each process computes on its share,
    summed (DDP then averages parameter gradients over processes); dL/demb of the whole batch."""
    from contextrast_cli.contrast.ccl import class_means, contextual_anchors, pixel_anchor_loss

    embs, labels = embeddings()
    embs = [e.clone().requires_grad_(True) for e in embs]
    stats = [class_means(e, l, NUM_CLASSES) for e, l in zip(embs, labels)]
    anchors = contextual_anchors([m for m, _ in stats], [c for _, c in stats], 0.7, 0.3)
    loss = 0
    for rank in range(world):
        share = slice(rank, None, world)
        loss = loss + sum(pixel_anchor_loss(a, e[share], *every_pair(l[share]), tau=0.1)["loss"]
                          for a, e, l in zip(anchors, embs, labels))
    loss.backward()
    return {"anchors": [a.detach() for a in anchors], "grads": [e.grad for e in embs], "labels": labels}


def sampled_loss(runtime) -> dict:
    """The whole loss (identity heads, float64, BANE on) on this process's share, anchors over the
    global batch: its terms, dL/dfeature, and the samples it drew, for the plain reference."""
    from tests.contrast.test_loss_reference import SETTINGS, inputs
    from contextrast_cli.contrast import loss as loss_module
    from contextrast_cli.contrast.loss import ContextrastLoss

    features, logits, target = inputs(seed=4)
    share = slice(runtime.rank, None, runtime.world_size)
    criterion = ContextrastLoss(6, (5, 5, 5), **SETTINGS).double()
    criterion.heads = nn.ModuleList(nn.Identity() for _ in range(3))
    drawn, real = [], loss_module.sample_stacked

    def record(*args, **kwargs):
        samples = real(*args, **kwargs)
        drawn.extend(samples.layer(index) for index in range(len(samples.layout.shapes)))
        return samples

    loss_module.sample_stacked = record
    try:
        torch.manual_seed(runtime.rank)
        local = [f[share].clone().requires_grad_() for f in features]
        terms = criterion(local, logits[share], target[share])
        total = sum(terms[f"loss_ccl_l{i}"] for i in (1, 2, 3))
        total.backward()
    finally:
        loss_module.sample_stacked = real
    from tests.contrast.reference import samples_of

    return {"total": total.detach(), "grads": [f.grad for f in local],
            "samples": [samples_of(pos, neg) for pos, neg in drawn]}


def plus_plus(runtime) -> dict:
    """Contextrast++ (adaptive fusion, the AA loss over a partly filled bank) on this process's
    share, anchors over the global batch: the fast loss and the plain form on the same samples and
    bank draw (values, dL/dfeature, the fusion modules' gradients); the bank after 4 steps; the
    all-reduces of one step with and without the ++ parts."""
    import torch.distributed as dist

    from contextrast_cli.contrast import loss as loss_module, plain
    from contextrast_cli.contrast.grids import resize_labels
    from tests.contrast.test_loss_reference import inputs
    from tests.contrast.test_plain import prepared

    features, logits, target = inputs(seed=4)
    share = slice(runtime.rank, None, runtime.world_size)
    criterion = prepared(dict(fusion="adaptive", aa=True))
    draw = criterion.bank.draw()
    criterion.bank.draw = lambda *a, **kw: draw
    drawn, real = [], loss_module.sample_stacked
    loss_module.sample_stacked = lambda *a, **kw: drawn.append(real(*a, **kw)) or drawn[-1]
    try:
        torch.manual_seed(runtime.rank)
        ours = [f[share].clone().requires_grad_() for f in features]
        fast = sum(v for k, v in criterion(ours, logits[share], target[share]).items() if k.startswith("loss_"))
    finally:
        loss_module.sample_stacked = real
    params = list(criterion.fusions.parameters())
    fast_params = torch.autograd.grad(fast, params, retain_graph=True)
    fast.backward()
    theirs = [f[share].clone().requires_grad_() for f in features]
    labels = [resize_labels(target[share], f.shape[-2:]) for f in features]
    losses, anchors, counts = plain.contextrast_losses(theirs, labels, drawn[0].as_plain(), 6, tau=0.15, w_low=0.6,
                                                       w_high=0.4, fusions=criterion.fusions, group=dist.group.WORLD)
    S, chosen = plain.representatives(anchors, counts, "prioritized")
    expected = sum(0.2 * lam * layer for lam, layer in zip(criterion.lambdas, losses)) + \
        0.2 * plain.anchor_to_anchor_loss(S, chosen, draw, 0.15)
    plain_params = torch.autograd.grad(expected, params, retain_graph=True)
    expected.backward()
    return {"fast": fast.detach(), "plain": expected.detach(), "fast_grads": [f.grad for f in ours],
            "plain_grads": [f.grad for f in theirs], "fast_params": list(fast_params), "plain_params": list(plain_params),
            "bank": bank_after_steps(runtime), "reduces": {m: reduces_per_step(runtime, m) for m in ("static", "plus")}}


def bank_after_steps(runtime, steps: int = 4) -> dict:
    """The memory bank after ``steps`` fast ++ steps on this process's shares of different batches."""
    from tests.contrast.test_loss_reference import inputs
    from tests.contrast.test_plain import prepared

    criterion = prepared(dict(fusion="adaptive", aa=True))
    share = slice(runtime.rank, None, runtime.world_size)
    for step in range(steps):
        features, logits, target = inputs(seed=10 + step)
        torch.manual_seed(100 * step + runtime.rank)  # each process samples its own pixels
        terms = criterion([f[share].requires_grad_() for f in features], logits[share], target[share])
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
    return {"entries": criterion.bank.entries, "filled": criterion.bank.filled, "head": criterion.bank.head}


def reduces_per_step(runtime, variant: str) -> int:
    """The all-reduces one fast step (forward and backward) makes: Contextrast, or ++ with the AA loss."""
    import torch.distributed as dist

    from tests.contrast.test_loss_reference import inputs
    from tests.contrast.test_plain import prepared

    criterion = prepared(dict(fusion="adaptive", aa=True) if variant == "plus" else {})
    features, logits, target = inputs(seed=4)
    share, calls, real = slice(runtime.rank, None, runtime.world_size), [], dist.all_reduce
    dist.all_reduce = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    try:
        terms = criterion([f[share].requires_grad_() for f in features], logits[share], target[share])
        sum(v for k, v in terms.items() if k.startswith("loss_")).backward()
    finally:
        dist.all_reduce = real
    return len(calls)


# (c) distributed validation ---------------------------------------------------------------------

def validation(runtime, data_root: Path) -> dict:
    from contextrast_cli.config import EvalConfig
    from contextrast_cli.data.prepared import read_prepared
    from contextrast_cli.evaluation.evaluator import evaluate_split

    torch.manual_seed(0)
    model = small_network().eval()
    return evaluate_split(model, read_prepared(data_root), "val", EvalConfig(batch_size=2), runtime)


# (d) the trainer under several processes: what they agree on, what they leave behind -----------

def trainer_config(out: Path, **sets):
    """The tiny toy run of the tests under ``out`` (its scenes in out/synthetic, runs in out/runs)."""
    from contextrast_cli.config import resolve_config
    from tests.conftest import tiny_overrides

    return resolve_config("toy", overrides=[*tiny_overrides(out), *(f"{k}={v}" for k, v in sets.items())])


def trainer_agreement(out: Path, run_dir: Path) -> dict:
    """A resumed run's best mIoU (rank 0 reads best.pt, which is better than last.pt says); whether
    the stop vote is left in flight when the loop raises; whether a constructor that fails after
    joining the process group leaves it (the group is gone afterwards: this task comes last)."""
    import torch.distributed as dist

    from contextrast_cli.runtime import collectives
    from contextrast_cli.train.resume import load_resumable
    from contextrast_cli.train.trainer import Trainer

    payload, _ = load_resumable(run_dir)
    cfg = trainer_config(out, **{"train.iterations": 6, "train.batch_size": 4,  # 2 images a process (BatchNorm)
                                 "train.loggers": "[tensorboard]"})
    first = Trainer(cfg, resume=payload, run_dir=run_dir)
    result = {"best": first.best_miou, "tracked": first.log.trackers is not None}
    first.log.close("KILLED")
    votes, real = [], collectives.StopVote

    class Recorded(real):
        def __init__(self, runtime):
            super().__init__(runtime)
            votes.append(self)

    collectives.StopVote = Recorded
    trainer = Trainer(cfg, resume=payload, run_dir=run_dir)
    step = trainer._step

    def failing(batch):
        if trainer.iteration == 3:
            raise RuntimeError("a step failed")
        return step(batch)

    trainer._step = failing
    try:
        trainer.run()
    except RuntimeError:
        result["vote_in_flight"] = votes[-1].work is not None
    finally:
        collectives.StopVote = real
    try:
        Trainer(trainer_config(out, **{"train.batch_size": 3}))
    except Exception as exc:  # noqa: BLE001
        result["failed_with"] = type(exc).__name__
    result["group_left"] = not dist.is_initialized()
    return result

