"""The training loop: SGD or AdamW (poly / linear schedule), periodic validation, checkpoints that
survive any stop.

A stop request (Ctrl-C, SIGTERM) is acted on between steps: the step in progress completes,
``last.pt`` is written, and ``Interrupted`` is raised. Checkpoints are written to a temporary
name and renamed, so a process killed at any moment leaves the previous ones intact; a
resumed run continues bit for bit as the uninterrupted run would have (augmentation is
seeded per sample, the RNG, optimizer and schedule are in ``last.pt``).

Under torchrun / srun every process runs this loop on its share of the global batch
(``runtime.collectives``); rank 0 alone writes the run folder, and all stop together.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from contextrast_cli.config import Config
from contextrast_cli.contrast.criterion import build_criterion, load_contrast_state
from contextrast_cli.data.locate import locate_dataset
from contextrast_cli.data.loading import InfiniteSampler, SegmentationFolder, train_loader
from contextrast_cli.data.transforms import train_transform
from contextrast_cli.runtime import collectives as ddp
from contextrast_cli.train import runs
from contextrast_cli.models.checkpoint import describe, save_checkpoint
from contextrast_cli.train.resume import best_miou_on_disk, check_same_run, init_from, start_weights
from contextrast_cli.runtime.device import rng_state, seed_everything, set_rng_state, setup_runtime, shutdown_runtime
from contextrast_cli.evaluation.evaluator import evaluate_split
from contextrast_cli.train.reporting import Reporter, percent
from contextrast_cli.train.runlog import RunLog
from contextrast_cli.train.signals import EXIT_CODES, StopSignals, signal_name
from contextrast_cli.train.objective import Objective
from contextrast_cli.train.optim import build_optimizer, build_scheduler
from contextrast_cli.train.step import LossWindow, training_step
from contextrast_cli.errors import CheckpointError, ConfigError, ContextrastError, Diverged, Interrupted
from contextrast_cli.models.registry import build_model


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    iterations: int
    best_miou: float | None
    final_metrics: dict | None
    complete: bool = False
    """It had trained all its iterations before this call (a finished run resumed): nothing was trained."""


class _StopValidation(Exception):
    """A stop request arrived during validation: it is abandoned and redone on resume."""


class Trainer:
    """Builds everything a run needs from a config, then ``run()`` trains.

    Args:
        cfg: the resolved config.
        resume: a loaded ``last.pt`` (or ``iter_<N>.pt``) payload to continue from.
        run_dir: the run folder to continue in (with ``resume``).
        init: a loaded checkpoint whose network (and heads) start a new run (``--init-from``).
        reporter: progress display (rank 0's; the other processes report nothing).
        tags: tags for the trackers of ``train.loggers`` (an ablation's axis values and seed).
    """

    def __init__(self, cfg: Config, *, resume: dict | None = None, run_dir: Path | None = None,
                 init: tuple[dict, Path] | None = None, reporter: Reporter | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.cfg, self.tags = cfg, tags
        if resume is not None:
            check_same_run(resume, cfg)
        self.initial_weights = start_weights(cfg.model, resume, init)  # before anything else: a missing
        # ImageNet file stops the run here, with one line
        self.runtime = rt = setup_runtime(cfg.train.device, cfg.train.precision, cfg.train.seed,
                                          fixed_shapes=True, distributed=True)
        try:
            self._build(resume, run_dir, init, reporter)
        except BaseException:  # the process group was joined: leave it, or the other processes hang
            shutdown_runtime(rt)
            raise

    def _build(self, resume: dict | None, run_dir: Path | None, init: tuple[dict, Path] | None,
               reporter: Reporter | None) -> None:
        cfg, rt = self.cfg, self.runtime
        self.reporter = (reporter or Reporter()) if rt.is_main else Reporter()
        if cfg.train.batch_size % rt.world_size:
            raise ConfigError(f"train.batch_size {cfg.train.batch_size} is the global batch and must divide "
                              f"evenly over the {rt.world_size} processes; use a multiple of {rt.world_size}")
        # --data-root arrives as data.root, so checkpoints record it; rank 0 generates synthetic scenes first
        self.dataset = ddp.main_first(lambda: locate_dataset(cfg.data, say=self.reporter.message), rt)
        fresh = resume is None and init is None  # otherwise the weights come from a checkpoint
        model_cfg = cfg.model if fresh else cfg.model.model_copy(update={"pretrained": False, "weights": None})
        model = build_model(model_cfg, self.dataset.num_classes, cfg.data.mean, cfg.data.std)
        self.model, note = ddp.sync_batchnorm(model, rt, cfg.train.sync_bn)
        with torch.random.fork_rng(devices=[]):  # the heads draw from their own stream, so runs of one seed
            torch.manual_seed(cfg.train.seed + 1)  # continue on the same RNG whatever the method (paired ablations)
            self.criterion = build_criterion(cfg.contrast, self.model.feature_channels, self.model.num_classes)
        objective = Objective(self.model, self.criterion).to(rt.device)
        self.optimizer = build_optimizer(objective, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.iterations)
        self.scaler = torch.amp.GradScaler(rt.device.type) if rt.grad_scaling else None
        self.iteration, self.best_miou, self.last_metrics = 0, None, None
        self.pending_validation, self.saved_at = False, None
        if init is not None:
            for line in init_from(self.model, self.criterion, init[0], cfg, init[1]):
                self.reporter.message(line)
        if resume is not None:
            self._restore(resume)
        warmup = self.criterion is not None and cfg.contrast.warmup_iters > 0
        self.objective = ddp.data_parallel(objective, rt, unused_parameters=warmup)  # after the restore:
        # DDP starts every process from rank 0's weights
        folder, self.best_miou = ddp.broadcast(self._run_folder(run_dir) if rt.is_main else None, rt)
        self.run_dir = Path(folder)
        self.log = RunLog(self.run_dir, f"{cfg.name}: {cfg.contrast.method}", **(self._resumed_at(resume) if
                          rt.is_main else {}), trackers=self._trackers(resume) if rt.is_main else None)
        self.meta = describe(cfg, self.dataset) | {"initial_weights": self.initial_weights}
        if note:
            self.reporter.message(note)

    def _run_folder(self, run_dir: Path | None) -> tuple[str, float | None]:
        """Rank 0: the new run folder, or the resumed one made ready, and the best mIoU so far (a
        resume from an older checkpoint must not replace a better best.pt written after it)."""
        if not run_dir:
            return str(runs.new_run_dir(self.cfg)), self.best_miou
        runs.write_config(run_dir, self.cfg)
        runs.remove_stale_temporaries(run_dir)
        return str(run_dir), best_miou_on_disk(run_dir, self.best_miou)

    def _resumed_at(self, resume: dict | None) -> dict:
        """``RunLog``'s keywords for a resumed run: the iteration it continues from, and whether
        that iteration's validation is redone."""
        if resume is None:
            return {}
        return {"resumed_at": self.iteration, "validation_redone": self.pending_validation}

    def _trackers(self, resume: dict | None) -> dict:
        """``RunLog``'s tracker keywords (rank 0): a resumed run continues its trackers' runs."""
        return dict(kinds=self.cfg.train.loggers, name=self.cfg.name, config=self.cfg.to_dict(), tags=self.tags,
                    ids=(resume or {}).get("trackers"), warn=self.reporter.message)

    def _restore(self, payload: dict) -> None:
        if payload["dataset"]["classes"] != list(self.dataset.classes):
            raise CheckpointError(f"the checkpoint was trained on {payload['dataset']['name']} "
                                  f"({len(payload['dataset']['classes'])} classes) but the config's data is "
                                  f"{self.dataset.name} ({self.dataset.num_classes}); resume on the same dataset")
        self.model.load_state_dict(payload["model"])
        if self.criterion is not None:
            load_contrast_state(self.criterion, payload["contrast"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.iteration = self.saved_at = payload["iteration"]
        self._restore_rng(payload)
        self.best_miou = payload.get("best_miou")
        self.last_metrics = payload.get("metrics")
        self.pending_validation = bool(payload.get("pending_validation"))

    def _restore_rng(self, payload: dict) -> None:
        """Each process's RNG as saved; on another process count, fresh seeds (the data order and
        augmentation do not use these: they follow the sample positions)."""
        rt, states = self.runtime, payload.get("rng_ranks") or [payload["rng"]]
        if len(states) == rt.world_size:
            set_rng_state(states[rt.rank], rt.device)
            return
        seed_everything(self.cfg.train.seed + 1000 * self.iteration + rt.rank)
        self.reporter.message(f"resumed on {rt.world_size} process(es), trained on {len(states)}: the same data "
                              f"and augmentation follow; the contrastive loss's random sampling starts afresh")

    def _batches(self):
        cfg, rt = self.cfg, self.runtime
        folder = SegmentationFolder(self.dataset.root, "train", train_transform(cfg.data))
        if len(folder) < cfg.train.batch_size:
            raise ContextrastError(f"train.batch_size {cfg.train.batch_size} exceeds the "
                                   f"{len(folder)} training images; lower it with --batch-size")
        sampler = InfiniteSampler(len(folder), cfg.train.seed, start=self.iteration * cfg.train.batch_size,
                                  rank=rt.rank, world_size=rt.world_size)
        workers = min(cfg.data.workers, os.cpu_count() or 1)
        return iter(train_loader(folder, cfg.train.batch_size // rt.world_size, workers, sampler,
                                 pin_memory=rt.device.type == "cuda"))

    def run(self) -> TrainResult:
        """Train to ``train.iterations``.

        Raises:
            Interrupted: SIGINT or SIGTERM (``last.pt`` saved after the step in progress).
            Diverged: a non-finite loss (nothing non-finite is saved).
            CheckpointError: a checkpoint could not be written (the previous one survives).
        """
        rt, total = self.runtime, self.cfg.train.iterations
        if self.iteration >= total and not self.pending_validation:  # a finished run, resumed: nothing to train
            self.log.close("FINISHED")
            return TrainResult(self.run_dir, self.iteration, self.best_miou, self.last_metrics, complete=True)
        procs = f", {rt.world_size} processes x {self.cfg.train.batch_size // rt.world_size} images" \
            if rt.distributed else ""
        self.reporter.message(f"run folder: {self.run_dir}  (device {rt.device}{procs}, precision {rt.precision}, "
                              f"{self.dataset.name}: {self.dataset.splits.get('train', '?')} train images)")
        self.reporter.start(total, self.iteration, self.cfg.name)
        vote, status = ddp.StopVote(rt), "FAILED"
        try:
            with StopSignals() as stop:
                self._loop(total, stop, vote)
            status = "FINISHED"
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep the last checkpoint as it is
            status = "KILLED"
            raise Interrupted(f"stopped at once by a second Ctrl-C; the newest checkpoint is from iteration "
                              f"{self.saved_at}: contextrast train --resume {self.run_dir}") from None
        except Interrupted:
            status = "KILLED"  # the trackers' run goes on when this one resumes
            raise
        finally:  # also when the loop raised (Diverged, a checkpoint error): no collective left in flight
            vote.close()
            self.reporter.stop()
            self.log.close(status)
        return TrainResult(self.run_dir, self.iteration, self.best_miou, self.last_metrics)

    def _loop(self, total: int, stop: StopSignals, vote: ddp.StopVote) -> None:
        cfg = self.cfg.train
        if self.pending_validation:  # stopped during a validation: redo it first
            self._validate_or_stop(stop)
            if not self.pending_validation and self.iteration >= total:  # the run's last act: record it
                self.save_last()
        window = LossWindow()
        if signum := vote.now(stop.signum):
            self._stop(window, signum)
        self.objective.train()
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
            if signum := vote.poll(stop.signum):
                vote.close()
                self._stop(window, signum)

    def _step(self, batch) -> dict[str, torch.Tensor]:
        images, labels = (t.to(self.runtime.device, non_blocking=True) for t in batch)
        contrast = self.criterion is not None and self.iteration >= self.cfg.contrast.warmup_iters
        terms = training_step(self.model, self.optimizer, images, labels, self.runtime.autocast,
                              objective=self.objective, contrast=contrast, scaler=self.scaler)
        self.scheduler.step()
        return terms

    def _stop(self, window: LossWindow, signum: int) -> None:
        if self.saved_at != self.iteration:
            self._check_finite(window)
            self.save_last()
        ddp.barrier(self.runtime)  # no process exits (and so ends the others, under torchrun) before rank 0 wrote
        raise Interrupted(f"{signal_name(signum)} at iteration {self.iteration}: stopped after the step in progress; "
                          f"last.pt saved; resume with: contextrast train --resume {self.run_dir}", EXIT_CODES[signum])

    def _check_finite(self, window: LossWindow) -> None:
        bad = window.non_finite(lambda first: ddp.reduced(first, self.runtime, "min"))
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
        rt = self.runtime
        mean = window.flush(lambda sums: ddp.reduced(sums, rt) / rt.world_size)  # over every process's images
        stats = {"iteration": self.iteration, "lr": self.scheduler.get_last_lr()[0], **mean}
        if rt.is_main:
            self.log.write(stats)
        return stats

    def _validate_or_stop(self, stop: StopSignals) -> None:
        def check(_done: int, _total: int) -> None:
            if stop.requested:
                raise _StopValidation

        try:  # with several processes a validation runs to its end (a stop is agreed on after it)
            self.validate(on_batch=None if self.runtime.distributed else check)
        except _StopValidation:
            self.objective.train()
            return
        self.pending_validation = False

    def validate(self, on_batch=None) -> dict:
        """Evaluate on ``eval.split`` (each process a share); a new best mIoU writes ``best.pt``."""
        cfg = self.cfg
        runtime = self.runtime if cfg.eval.amp else replace(self.runtime, amp_dtype=None)
        metrics = evaluate_split(self.model, self.dataset, cfg.eval.split, cfg.eval, runtime,
                                 workers=min(cfg.data.workers, 2), on_batch=on_batch)
        self.objective.train()
        self.last_metrics = metrics
        if self.runtime.is_main:
            for note in self.log.validation(self.iteration, metrics):
                self.reporter.message(note)
        miou = metrics["mIoU"]
        self.reporter.message(f"iteration {self.iteration}: {cfg.eval.split} mIoU {percent(miou)}  "
                              f"aAcc {percent(metrics['aAcc'])}")
        if miou is not None and (self.best_miou is None or miou > self.best_miou):
            self.best_miou = miou
            if self.runtime.is_main:
                save_checkpoint(self.run_dir / "best.pt", self._payload(full=False))
        return metrics

    def save_last(self, interval: bool = False) -> Path:
        """Write ``last.pt`` (everything needed to resume); with ``interval`` also keep it as
        ``iter_<N>.pt`` and prune those beyond ``train.keep_checkpoints``. Every process calls it
        (their RNG states go in); rank 0 writes."""
        payload = self._payload(full=True)
        path = self.run_dir / "last.pt"
        self.saved_at = self.iteration
        if not self.runtime.is_main:
            return path
        save_checkpoint(path, payload)
        keep = self.cfg.train.keep_checkpoints
        if interval and keep:
            target = self.run_dir / runs.interval_name(self.iteration)
            try:
                runs.link_or_copy(path, target)  # the same bytes as last.pt: one copy on disk
            except OSError as exc:
                raise CheckpointError(f"could not write {target}: {exc.strerror or exc}; last.pt is complete; "
                                      f"free space or set train.keep_checkpoints=0") from None
            runs.prune_intervals(self.run_dir, keep)
        return path

    def _payload(self, full: bool) -> dict:
        payload = {**self.meta, "model": self.model.state_dict(), "iteration": self.iteration,
                   "contrast": self.criterion.state_dict() if self.criterion is not None else None,
                   "metrics": self.last_metrics, "best_miou": self.best_miou, "trackers": self.log.tracker_ids}
        if full:
            states = ddp.gather(rng_state(self.runtime.device), self.runtime)
            payload.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                           rng=states[0], rng_ranks=states, pending_validation=self.pending_validation,
                           scaler=self.scaler.state_dict() if self.scaler is not None else None)
        return payload
