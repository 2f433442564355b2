"""The training loop: SGD + poly schedule, periodic validation, checkpoints that survive any stop.

A stop request (Ctrl-C, SIGTERM) is acted on between steps: the step in progress completes,
``last.pt`` is written, and ``Interrupted`` is raised. Checkpoints are written to a temporary
name and renamed, so a process killed at any moment leaves the previous ones intact; a
resumed run continues bit for bit as the uninterrupted run would have (augmentation is
seeded per sample, the RNG, optimizer and schedule are in ``last.pt``).
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from contextrast_cli.config import Config
from contextrast_cli.contrast.build import build_criterion
from contextrast_cli.data.build import locate_dataset
from contextrast_cli.data.loading import InfiniteSampler, SegmentationFolder, train_loader
from contextrast_cli.data.transforms import train_transform
from contextrast_cli.engine import runs
from contextrast_cli.engine.checkpoint import describe, init_from, save_checkpoint
from contextrast_cli.engine.device import rng_state, set_rng_state, setup_runtime
from contextrast_cli.engine.evaluator import evaluate_split
from contextrast_cli.engine.reporting import Reporter
from contextrast_cli.engine.signals import StopSignals
from contextrast_cli.engine.step import LossWindow, training_step
from contextrast_cli.errors import CheckpointError, ContextrastError, Diverged, Interrupted
from contextrast_cli.models.registry import build_model

NETWORK_FIELDS = ("name", "backbone", "output_stride", "options")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    iterations: int
    best_miou: float | None
    final_metrics: dict | None


def poly_factor(iterations: int, power: float, warmup: int):
    """lr multiplier at step ``it``: linear warm-up times ``(1 - it/iterations) ** power``."""

    def factor(it: int) -> float:
        poly = max(0.0, 1.0 - it / iterations) ** power
        return poly * min(1.0, (it + 1) / warmup) if warmup else poly

    return factor


class _StopValidation(Exception):
    """A stop request arrived during validation: it is abandoned and redone on resume."""


class Trainer:
    """Builds everything a run needs from a config, then ``run()`` trains.

    Args:
        cfg: the resolved config.
        resume: a loaded ``last.pt`` (or ``iter_<N>.pt``) payload to continue from.
        run_dir: the run folder to continue in (with ``resume``).
        init: a loaded checkpoint whose network (and heads) start a new run (``--init-from``).
        reporter: progress display.
    """

    def __init__(self, cfg: Config, *, resume: dict | None = None, run_dir: Path | None = None,
                 init: tuple[dict, Path] | None = None, reporter: Reporter | None = None) -> None:
        self.cfg, self.reporter = cfg, reporter or Reporter()
        if resume is not None:
            check_same_run(resume, cfg)
        self.runtime = setup_runtime(cfg.train.device, cfg.train.amp, cfg.train.seed, fixed_shapes=True)
        self.dataset = locate_dataset(cfg.data)  # --data-root arrives as data.root, so checkpoints record it
        self.model = build_model(cfg.model, self.dataset.num_classes, cfg.data.mean, cfg.data.std)
        self.criterion = build_criterion(cfg.contrast, self.model.feature_channels)
        self.model.to(self.runtime.device)
        if self.criterion is not None:
            self.criterion.to(self.runtime.device)
        params = list(self.model.parameters()) + (list(self.criterion.parameters()) if self.criterion else [])
        self.optimizer = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, poly_factor(
            cfg.train.iterations, cfg.optim.poly_power, cfg.optim.warmup_iters))
        self.iteration, self.best_miou, self.last_metrics = 0, None, None
        self.pending_validation, self.saved_at = False, None
        if init is not None:
            for note in init_from(self.model, self.criterion, init[0], cfg, init[1]):
                self.reporter.message(note)
        if resume is not None:
            self._restore(resume)
        self.run_dir = Path(run_dir) if run_dir else runs.new_run_dir(cfg)
        if run_dir:
            runs.write_config(self.run_dir, cfg)
            runs.remove_stale_temporaries(self.run_dir)
            self.best_miou = _best_on_disk(self.run_dir, self.best_miou)
        self.log = runs.MetricsLog(self.run_dir / "metrics.jsonl")
        self.meta = describe(cfg, self.dataset)

    def _restore(self, payload: dict) -> None:
        if payload["dataset"]["classes"] != list(self.dataset.classes):
            raise CheckpointError(f"the checkpoint was trained on {payload['dataset']['name']} "
                                  f"({len(payload['dataset']['classes'])} classes) but the config's data is "
                                  f"{self.dataset.name} ({self.dataset.num_classes}); resume on the same dataset")
        self.model.load_state_dict(payload["model"])
        if self.criterion is not None:
            self.criterion.heads.load_state_dict(payload["contrast"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"], self.runtime.device)
        self.iteration = self.saved_at = payload["iteration"]
        self.best_miou = payload.get("best_miou")
        self.last_metrics = payload.get("metrics")
        self.pending_validation = bool(payload.get("pending_validation"))

    def _batches(self):
        cfg = self.cfg
        folder = SegmentationFolder(self.dataset.root, "train", train_transform(cfg.data))
        if len(folder) < cfg.train.batch_size:
            raise ContextrastError(f"train.batch_size {cfg.train.batch_size} exceeds the "
                                   f"{len(folder)} training images; lower it with --batch-size")
        sampler = InfiniteSampler(len(folder), cfg.train.seed, start=self.iteration * cfg.train.batch_size,
                                  rank=self.runtime.rank, world_size=self.runtime.world_size)
        workers = min(cfg.data.workers, os.cpu_count() or 1)
        return iter(train_loader(folder, cfg.train.batch_size, workers, sampler,
                                 pin_memory=self.runtime.device.type == "cuda"))

    def run(self) -> TrainResult:
        """Train to ``train.iterations``.

        Raises:
            Interrupted: SIGINT or SIGTERM (``last.pt`` saved after the step in progress).
            Diverged: a non-finite loss (nothing non-finite is saved).
            CheckpointError: a checkpoint could not be written (the previous one survives).
        """
        total = self.cfg.train.iterations
        self.reporter.message(f"run folder: {self.run_dir}  (device {self.runtime.device}, "
                              f"{self.dataset.name}: {self.dataset.splits.get('train', '?')} train images)")
        self.reporter.start(total, self.iteration, self.cfg.name)
        try:
            with StopSignals() as stop:
                self._loop(total, stop)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep the last checkpoint as it is
            raise Interrupted(f"stopped at once by a second Ctrl-C; the newest checkpoint is from iteration "
                              f"{self.saved_at}: contextrast train --resume {self.run_dir}") from None
        finally:
            self.reporter.stop()
        return TrainResult(self.run_dir, self.iteration, self.best_miou, self.last_metrics)

    def _loop(self, total: int, stop: StopSignals) -> None:
        cfg = self.cfg.train
        if self.pending_validation:  # stopped during a validation: redo it first
            self._validate_or_stop(stop)
        window = LossWindow()
        if stop.requested:
            self._stop(window, stop)
        self.model.train()
        if self.criterion is not None:
            self.criterion.train()
        batches = self._batches()
        while self.iteration < total:
            window.add(self.iteration + 1, self._step(next(batches)))
            self.iteration += 1
            stats = None
            if self.iteration % cfg.log_interval == 0 or self.iteration == total:
                self._check_finite(window)
                stats = self._log(window)
            self.reporter.step(self.iteration, stats)
            self.pending_validation = self.iteration % cfg.eval_interval == 0 or self.iteration == total
            if self.pending_validation:
                self._validate_or_stop(stop)
            if self.iteration % cfg.checkpoint_interval == 0 or self.iteration == total:
                self._check_finite(window)
                self.save_last(interval=True)
            if stop.requested:
                self._stop(window, stop)

    def _step(self, batch) -> dict[str, torch.Tensor]:
        images, labels = (t.to(self.runtime.device, non_blocking=True) for t in batch)
        contrast = self.criterion is not None and self.iteration >= self.cfg.contrast.warmup_iters
        terms = training_step(self.model, self.optimizer, images, labels, self.runtime.autocast,
                              self.criterion if contrast else None)
        self.scheduler.step()
        return terms

    def _stop(self, window: LossWindow, stop: StopSignals) -> None:
        if self.saved_at != self.iteration:
            self._check_finite(window)
            self.save_last()
        raise Interrupted(f"{stop.name} at iteration {self.iteration}: stopped after the step in progress; "
                          f"last.pt saved; resume with: contextrast train --resume {self.run_dir}", stop.exit_code)

    def _check_finite(self, window: LossWindow) -> None:
        bad = window.non_finite()
        if bad is None:
            return
        iteration, terms = bad
        if self.saved_at is not None:
            good = f"the last good checkpoint is {self.run_dir / 'last.pt'} (iteration {self.saved_at})"
        else:
            good = "no checkpoint was written before it"
        raise Diverged(f"the loss became non-finite at iteration {iteration} ({', '.join(terms)}); nothing "
                       f"non-finite was saved; {good}; lower optim.lr (now {self.cfg.optim.lr}) or raise "
                       f"optim.warmup_iters and train again")

    def _log(self, window: LossWindow) -> dict:
        stats = {"iteration": self.iteration, "lr": self.scheduler.get_last_lr()[0], **window.flush()}
        self.log.write(stats)
        return stats

    def _validate_or_stop(self, stop: StopSignals) -> None:
        def check(_done: int, _total: int) -> None:
            if stop.requested:
                raise _StopValidation

        try:
            self.validate(on_batch=check)
        except _StopValidation:
            self.model.train()
            return
        self.pending_validation = False

    def validate(self, on_batch=None) -> dict:
        """Evaluate on ``eval.split``; a new best mIoU writes ``best.pt``."""
        cfg = self.cfg
        runtime = self.runtime if cfg.eval.amp else replace(self.runtime, amp_dtype=None)
        metrics = evaluate_split(self.model, self.dataset, cfg.eval.split, cfg.eval, runtime,
                                 workers=min(cfg.data.workers, 2), on_batch=on_batch)
        self.model.train()
        self.last_metrics = metrics
        self.log.write({"iteration": self.iteration, **metrics})
        miou = metrics["mIoU"]
        self.reporter.message(f"iteration {self.iteration}: {cfg.eval.split} mIoU {miou:.4f}  "
                              f"aAcc {metrics['aAcc']:.4f}")
        if miou is not None and (self.best_miou is None or miou > self.best_miou):
            self.best_miou = miou
            save_checkpoint(self.run_dir / "best.pt", self._payload(full=False))
        return metrics

    def save_last(self, interval: bool = False) -> Path:
        """Write ``last.pt`` (everything needed to resume); with ``interval`` also keep it as
        ``iter_<N>.pt`` and prune those beyond ``train.keep_checkpoints``."""
        path = save_checkpoint(self.run_dir / "last.pt", self._payload(full=True))
        self.saved_at = self.iteration
        keep = self.cfg.train.keep_checkpoints
        if interval and keep:
            target = self.run_dir / runs.interval_name(self.iteration)
            try:
                runs.copy_file(path, target)
            except OSError as exc:
                raise CheckpointError(f"could not write {target}: {exc.strerror or exc}; last.pt is complete; "
                                      f"free space or set train.keep_checkpoints=0") from None
            runs.prune_intervals(self.run_dir, keep)
        return path

    def _payload(self, full: bool) -> dict:
        payload = {**self.meta, "model": self.model.state_dict(), "iteration": self.iteration,
                   "contrast": self.criterion.heads.state_dict() if self.criterion is not None else None,
                   "metrics": self.last_metrics, "best_miou": self.best_miou}
        if full:
            payload.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                           rng=rng_state(self.runtime.device), pending_validation=self.pending_validation)
        return payload


def check_same_run(payload: dict, cfg: Config) -> None:
    """CheckpointError unless ``cfg`` trains the network and contrastive method of ``payload``
    (a resume continues a run; ``--init-from`` starts a different one)."""
    trained = payload["config"]
    if trained["contrast"]["method"] != cfg.contrast.method:
        raise CheckpointError(f"the checkpoint was trained with contrast.method {trained['contrast']['method']!r}; "
                              f"resume with the same method (start a new run with --init-from to change it)")
    wanted = cfg.model.model_dump(mode="json")
    changed = [key for key in NETWORK_FIELDS if trained["model"][key] != wanted[key]]
    if changed:
        was, now = trained["model"], wanted
        raise CheckpointError(f"--resume: the checkpoint holds a {was['name']} / {was['backbone']} network but the "
                              f"config asks for {now['name']} / {now['backbone']} (model.{changed[0]} differs); "
                              f"resume without changing the network (drop --preset/--config), or start a new "
                              f"run from its weights with --init-from")


def _best_on_disk(run_dir: Path, best: float | None) -> float | None:
    """The higher of ``best`` and the mIoU of the run's ``best.pt``: a resume from an older
    checkpoint must not replace a better ``best.pt`` written after it."""
    path = run_dir / "best.pt"
    if not path.is_file():
        return best
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True).get("best_miou")
    except Exception:  # an unreadable best.pt is replaced by the next validation
        return best
    return saved if best is None or (saved is not None and saved > best) else best
