"""The training loop: SGD + poly schedule, periodic validation, resumable checkpoints."""

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from contextrast_cli.config import Config
from contextrast_cli.contrast.heads import build_projectors, flush_deferred
from contextrast_cli.contrast.loss import contrast_losses
from contextrast_cli.data.build import locate_dataset
from contextrast_cli.data.loading import InfiniteSampler, SegmentationFolder, train_loader
from contextrast_cli.data.transforms import train_transform
from contextrast_cli.engine.checkpoint import describe, save_checkpoint
from contextrast_cli.engine.device import rng_state, set_rng_state, setup_runtime
from contextrast_cli.engine.evaluator import evaluate_split
from contextrast_cli.engine.losses import segmentation_losses
from contextrast_cli.engine.reporting import Reporter
from contextrast_cli.engine.runs import MetricsLog, new_run_dir, write_config
from contextrast_cli.errors import CheckpointError, ContextrastError
from contextrast_cli.models.registry import build_model


class Interrupted(ContextrastError):
    """Ctrl-C during training; ``last.pt`` has been saved."""

    exit_code = 130


class Diverged(ContextrastError):
    """The loss became NaN or infinite."""


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


def training_step(model, optimizer, images: torch.Tensor, labels: torch.Tensor, autocast,
                  projectors=None, contrast_cfg=None) -> dict[str, torch.Tensor]:
    """One optimisation step: forward, the named loss terms, backward, SGD update.

    Args:
        images: (B, 3, H, W) on the model's device; labels (B, H, W).
        autocast: a context-manager factory (the Runtime's precision policy).
        projectors: the contrastive heads, or None for cross-entropy only.

    Returns:
        ``loss`` and every term, detached (no host synchronisation).
    """
    with autocast():
        outputs = model(images)
        terms = segmentation_losses(outputs, labels)
        if projectors is not None:
            terms.update(contrast_losses(outputs["features"], outputs["out"], labels, projectors, contrast_cfg))
    loss = sum(v for k, v in terms.items() if k.startswith("loss_"))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    flush_deferred(projectors)  # heads whose backward the network's backward did not replay
    optimizer.step()
    return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


class Trainer:
    """Builds everything a run needs from a config, then ``run()`` trains.

    Args:
        cfg: the resolved config.
        resume: a loaded ``last.pt`` payload to continue from.
        run_dir: the run folder to continue in (with ``resume``).
        reporter: progress display.
    """

    def __init__(self, cfg: Config, *, resume: dict | None = None,
                 run_dir: Path | None = None, reporter: Reporter | None = None) -> None:
        self.cfg, self.reporter = cfg, reporter or Reporter()
        self.runtime = setup_runtime(cfg.train.device, cfg.train.amp, cfg.train.seed, fixed_shapes=True)
        self.dataset = locate_dataset(cfg.data)  # --data-root arrives as data.root, so checkpoints record it
        self.model = build_model(cfg.model, self.dataset.num_classes).to(self.runtime.device)
        self.projectors = None
        if cfg.contrast.method != "none":
            self.projectors = build_projectors(self.model.feature_channels, cfg.contrast).to(self.runtime.device)
        params = list(self.model.parameters()) + (list(self.projectors.parameters()) if self.projectors else [])
        self.optimizer = torch.optim.SGD(
            params, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, poly_factor(
            cfg.train.iterations, cfg.optim.poly_power, cfg.optim.warmup_iters))
        self.iteration, self.best_miou, self.last_metrics = 0, None, None
        if resume is not None:
            self._restore(resume)
        self.run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
        if run_dir:
            write_config(self.run_dir, cfg)
        self.log = MetricsLog(self.run_dir / "metrics.jsonl")
        self.meta = describe(cfg, self.dataset)

    def _restore(self, payload: dict) -> None:
        trained = payload["config"]["contrast"]["method"]
        if trained != self.cfg.contrast.method:
            raise CheckpointError(f"the checkpoint was trained with contrast.method {trained!r}; resume "
                                  f"with the same method (start a new run to change it)")
        self.model.load_state_dict(payload["model"])
        if self.projectors is not None:
            self.projectors.load_state_dict(payload["contrast"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"], self.runtime.device)
        self.iteration = payload["iteration"]
        self.best_miou = payload.get("best_miou")
        self.last_metrics = payload.get("metrics")

    def _batches(self):
        cfg = self.cfg
        folder = SegmentationFolder(self.dataset.root, "train", train_transform(cfg.data))
        if len(folder) < cfg.train.batch_size:
            raise ContextrastError(f"train.batch_size {cfg.train.batch_size} exceeds the "
                                   f"{len(folder)} training images; lower it with --batch-size")
        sampler = InfiniteSampler(len(folder), cfg.train.seed,
                                  start=self.iteration * cfg.train.batch_size,
                                  rank=self.runtime.rank, world_size=self.runtime.world_size)
        workers = min(cfg.data.workers, os.cpu_count() or 1)
        loader = train_loader(folder, cfg.train.batch_size, workers, sampler,
                              pin_memory=self.runtime.device.type == "cuda",
                              seed=hash((cfg.train.seed, self.iteration, self.runtime.rank)))
        return iter(loader)

    def run(self) -> TrainResult:
        """Train to ``train.iterations``; Ctrl-C saves ``last.pt`` and raises Interrupted."""
        total = self.cfg.train.iterations
        self.reporter.message(f"run folder: {self.run_dir}  (device {self.runtime.device}, "
                              f"{self.dataset.name}: {self.dataset.splits.get('train', '?')} train images)")
        self.reporter.start(total, self.iteration, self.cfg.name)
        try:
            self._loop(total)
        except KeyboardInterrupt:
            self.save_last()
            raise Interrupted(f"interrupted at iteration {self.iteration}; last.pt saved; resume with: "
                              f"contextrast train --resume {self.run_dir}") from None
        finally:
            self.reporter.stop()
        return TrainResult(self.run_dir, self.iteration, self.best_miou, self.last_metrics)

    def _loop(self, total: int) -> None:
        cfg = self.cfg.train
        self.model.train()
        if self.projectors is not None:
            self.projectors.train()
        batches = self._batches()
        window = _Window()
        while self.iteration < total:
            terms = self._step(next(batches))
            self.iteration += 1
            window.add(terms)
            stats = None
            if self.iteration % cfg.log_interval == 0 or self.iteration == total:
                stats = self._log(window)
            self.reporter.step(self.iteration, stats)
            if self.iteration % cfg.eval_interval == 0 or self.iteration == total:
                self.validate()
            if self.iteration % cfg.checkpoint_interval == 0 or self.iteration == total:
                self.save_last()

    def _step(self, batch) -> dict[str, torch.Tensor]:
        images, labels = (t.to(self.runtime.device, non_blocking=True) for t in batch)
        contrast = self.projectors is not None and self.iteration >= self.cfg.contrast.warmup_iters
        terms = training_step(self.model, self.optimizer, images, labels, self.runtime.autocast,
                              self.projectors if contrast else None, self.cfg.contrast)
        self.scheduler.step()
        return terms

    def _log(self, window: "_Window") -> dict:
        stats = window.flush()
        if not all(math.isfinite(v) for k, v in stats.items() if k.startswith("loss")):
            self.save_last()
            raise Diverged(f"loss became {stats['loss']} by iteration {self.iteration}; lower "
                           f"optim.lr (now {self.cfg.optim.lr}) or raise optim.warmup_iters")
        stats = {"iteration": self.iteration, "lr": self.scheduler.get_last_lr()[0], **stats}
        self.log.write(stats)
        return stats

    def validate(self) -> dict:
        """Evaluate on ``eval.split``; a new best mIoU writes ``best.pt``."""
        cfg = self.cfg
        metrics = evaluate_split(self.model, self.dataset, cfg.eval.split, cfg.eval, self.runtime,
                                 cfg.data.mean, cfg.data.std, workers=min(cfg.data.workers, 2))
        self.model.train()
        self.last_metrics = metrics
        self.log.write({"iteration": self.iteration, **metrics})
        miou = metrics["mIoU"]
        self.reporter.message(f"iteration {self.iteration}: {cfg.eval.split} mIoU {miou:.4f}  "
                              f"aAcc {metrics['aAcc']:.4f}")
        if self.best_miou is None or (miou is not None and miou > self.best_miou):
            self.best_miou = miou
            save_checkpoint(self.run_dir / "best.pt", self._payload(full=False))
        return metrics

    def save_last(self) -> Path:
        """Write ``last.pt`` with everything needed to resume."""
        return save_checkpoint(self.run_dir / "last.pt", self._payload(full=True))

    def _payload(self, full: bool) -> dict:
        payload = {**self.meta, "model": self.model.state_dict(), "iteration": self.iteration,
                   "contrast": self.projectors.state_dict() if self.projectors is not None else None,
                   "metrics": self.last_metrics, "best_miou": self.best_miou}
        if full:
            payload.update(optimizer=self.optimizer.state_dict(),
                           scheduler=self.scheduler.state_dict(), rng=rng_state(self.runtime.device))
        return payload


class _Window:
    """Accumulates loss terms on the device between log steps (one host sync per log)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.started = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.count += 1

    def flush(self) -> dict:
        elapsed = time.perf_counter() - self.started
        stats = {key: float(value) / self.count for key, value in self.sums.items()}
        stats["it_per_s"] = self.count / max(elapsed, 1e-9)
        self.__init__()
        return stats
