"""Several processes (gloo on the CPU, 2 of them) compute what one process computes:
DDP steps, anchors over the global batch with their gradients, validation.

One spawn runs every task (``tests/train/dist_workers.py``); each test compares one of them
with its single-process reference. The torchrun runs of the command line are in
``test_torchrun.py``.
"""

import contextlib

import pytest
import torch
import torch.multiprocessing as mp

from contextrast_cli.config import EvalConfig, resolve_config
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.runtime.device import Runtime
from contextrast_cli.evaluation.evaluator import evaluate_split
from contextrast_cli.models.checkpoint import load_checkpoint, save_checkpoint
from contextrast_cli.train.trainer import Trainer
from contextrast_cli.train.objective import Objective
from contextrast_cli.train.step import training_step
from tests.train import dist_workers as w

WORLD = 2


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """Every task on 2 processes; their results by rank, and the prepared dataset used."""
    out = tmp_path_factory.mktemp("dist")
    cfg = resolve_config("toy", overrides=[f"data.root={out / 'data'}",
                                           "data.synthetic={num_train: 2, num_val: 5, size: [32, 48], seed: 5}"])
    dataset = locate_dataset(cfg.data)  # 5 validation images: the shares are uneven (3 and 2)
    run_dir = Trainer(w.trainer_config(out, **{"train.iterations": 2})).run().run_dir
    best, last = (load_checkpoint(run_dir / name) for name in ("best.pt", "last.pt"))
    save_checkpoint(run_dir / "best.pt", {**best, "best_miou": 0.99})  # a later, better best.pt than last.pt knows
    save_checkpoint(run_dir / "last.pt", {**last, "best_miou": 0.01})
    mp.start_processes(w.worker, args=(WORLD, w.free_port(), str(out), str(dataset.root), str(run_dir)),
                       nprocs=WORLD, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)], dataset


@pytest.mark.parametrize("uneven", [False, True], ids=["no-ignore", "uneven-ignore"])
def test_ddp_steps_equal_one_process_with_the_global_batch(spawned, uneven):
    """Also when the processes' shares hold very different numbers of ignored pixels: the
    cross-entropy is normalised by the global count of labelled pixels, not each process's."""
    results, _ = spawned
    model = w.small_network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    images, labels = w.scenes(uneven=uneven)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        training_step(model, optimizer, images, labels, contextlib.nullcontext, objective=Objective(model))
    moved = 0.0
    for key, value in model.state_dict().items():
        for rank in range(WORLD):
            got = results[rank]["ce_uneven" if uneven else "ce"][key]
            assert torch.allclose(got, value, rtol=0, atol=1e-5), (key, rank)
        moved = max(moved, (value.float() - start[key].float()).abs().max().item())
    assert moved > 1e-3  # the steps did change the weights


def test_ddp_averages_every_gradient_of_a_contextrast_step(spawned):
    """The projection heads' gradients are written by their deferred replay, inside the network's
    backward: DDP must see them once, and average them with the network's."""
    results, _ = spawned
    local = [results[rank]["contrast"]["local"] for rank in range(WORLD)]
    heads = [key for key in local[0] if key.startswith("criterion.heads.")]
    assert len(heads) == 4 * 5  # 4 heads x (conv, BN weight and bias, conv weight and bias)
    for key in local[0]:
        mean = sum(grads[key] for grads in local) / WORLD
        for rank in range(WORLD):
            assert torch.allclose(results[rank]["contrast"]["ddp"][key], mean, rtol=1e-5, atol=1e-7), (key, rank)
    assert any(not torch.allclose(local[0][k], local[1][k]) for k in heads)  # the processes did differ


def test_synchronised_anchors_and_their_gradients(spawned):
    results, _ = spawned
    ref = w.reference_anchors_and_gradients(WORLD)
    for rank in range(WORLD):
        got = results[rank]["anchors"]
        for layer in range(2):
            assert torch.allclose(got["anchors"][layer], ref["anchors"][layer], rtol=0, atol=1e-6)
            share = ref["grads"][layer][rank::WORLD]
            assert share.abs().max() > 1e-3
            assert torch.allclose(got["grads"][layer], share, rtol=0, atol=1e-10), (rank, layer)


def test_a_capped_anchor_set_is_drawn_alike_on_every_process(spawned):
    """Each process drew its own random priorities; the classes kept are the same everywhere, 3 of
    the classes present in the global batch."""
    results, _ = spawned
    labels = w.embeddings()[1][0]
    present = torch.zeros(w.NUM_CLASSES, dtype=torch.bool)
    present[labels[labels != 255].unique()] = True
    first = results[0]["anchors"]["anchored"]
    assert int(first.sum()) == 3 and not (first & ~present).any()
    for rank in range(WORLD):
        assert torch.equal(results[rank]["anchors"]["anchored"], first)
        assert torch.equal(results[rank]["anchors"]["present"], present)


def test_the_loss_over_two_processes_equals_the_plain_reference(spawned):
    """Each process's loss (its own samples, anchors of the global batch) and dL/dfeature equal the
    plain float64 reference: anchors from the whole batch by per-class loops; the gradient of the
    sum of every process's loss (the all-reduce's adjoint), sliced to the process's images."""
    from contextrast_cli.contrast.grids import resize_labels
    from tests.contrast import reference
    from tests.contrast.test_loss_reference import inputs

    results, _ = spawned
    features, _, target = inputs(seed=4)
    whole = [f.clone().requires_grad_() for f in features]
    labels = [resize_labels(target, f.shape[-2:]) for f in features]
    total = 0
    for rank in range(WORLD):
        share = slice(rank, None, WORLD)
        expected = reference.total_loss([f[share] for f in whole], [lab[share] for lab in labels],
                                        results[rank]["sampled"]["samples"], 6, alpha=0.2, lambdas=(0.3, 0.6, 1.0),
                                        tau=0.15, w_low=0.6, w_high=0.4, stop_grad=False,
                                        anchor_embs=whole, anchor_labels=labels)
        assert float(results[rank]["sampled"]["total"]) == pytest.approx(float(expected.detach()), rel=1e-10)
        total = total + expected
    total.backward()
    for rank in range(WORLD):
        for got, want in zip(results[rank]["sampled"]["grads"], whole):
            torch.testing.assert_close(got, want.grad[rank::WORLD], rtol=1e-10, atol=1e-10)


def test_contextrast_plus_plus_over_two_processes_equals_the_plain_form(spawned):
    """Issue 34: on each process, the fast ++ loss (adaptive fusion, AA over the bank) equals the
    plain form over the global batch, values and gradients (features and fusion modules), float64."""
    results, _ = spawned
    for rank in range(WORLD):
        got = results[rank]["plus_plus"]
        assert float(got["fast"]) == pytest.approx(float(got["plain"]), rel=1e-10)
        for fast, plain in [*zip(got["fast_grads"], got["plain_grads"]), *zip(got["fast_params"], got["plain_params"])]:
            assert plain.abs().sum() > 0
            torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)


def test_the_memory_banks_stay_equal_without_extra_communication(spawned):
    """After 4 steps on different shares the banks are bit-equal on both processes, and a ++ step
    makes no all-reduce beyond a Contextrast step's."""
    results, _ = spawned
    banks = [results[rank]["plus_plus"]["bank"] for rank in range(WORLD)]
    from tests.contrast.test_plain import prepared

    before = prepared(dict(fusion="adaptive", aa=True)).bank
    assert not torch.equal(banks[0]["entries"], before.entries)  # the steps' anchors entered it
    for key in ("entries", "filled", "head"):
        assert torch.equal(banks[0][key], banks[1][key]), key
    reduces = [results[rank]["plus_plus"]["reduces"] for rank in range(WORLD)]
    assert reduces[0] == reduces[1] and reduces[0]["plus"] == reduces[0]["static"] > 0


def test_distributed_validation_equals_one_process(spawned):
    results, dataset = spawned
    torch.manual_seed(0)
    model = w.small_network().eval()
    single = evaluate_split(model, dataset, "val", EvalConfig(batch_size=2), Runtime(torch.device("cpu")))
    assert single["num_images"] == 5
    for rank in range(WORLD):
        assert results[rank]["validation"] == single


def test_the_trainer_agrees_on_its_best_and_leaves_nothing_behind(spawned):
    """Every process resumes with the best mIoU of the run's best.pt (rank 0 reads it); only rank 0
    has trackers; the stop vote is not left in flight when the loop raises; a constructor that
    fails after joining the process group (a global batch of 3 on 2 processes) leaves the group."""
    results, _ = spawned
    for rank in range(WORLD):
        got = results[rank]["trainer"]
        assert got["best"] == 0.99, rank
        assert got["tracked"] is (rank == 0), rank  # only rank 0 logs to the trackers
        assert got["vote_in_flight"] is False, rank
        assert got["failed_with"] == "ConfigError" and got["group_left"] is True, rank
