"""The ``contextrast`` command line: parse, load the config, one library call, print."""

import contextlib
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from contextrast_cli import __version__
from contextrast_cli.errors import ContextrastError

app = typer.Typer(name="contextrast", no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False, rich_markup_mode="rich",
                  help="Train semantic segmentation networks with contextual contrastive learning.")
presets_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                          help="List presets, or show one resolved.")
prepare_app = typer.Typer(no_args_is_help=True, help="Convert a dataset into the prepared layout.")
app.add_typer(presets_app, name="presets")
app.add_typer(prepare_app, name="prepare-data")

out = Console()
err = Console(stderr=True, soft_wrap=True)

PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name (see `contextrast presets`).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file laid over the preset.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override key.path=value (repeatable).")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="Prepared dataset folder.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]


@contextlib.contextmanager
def guarded(ctx: typer.Context):
    """Turn library errors into one red line and their exit code (tracebacks with --debug)."""
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    try:
        yield
    except ContextrastError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # an internal failure: keep it to one line unless --debug
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc).splitlines()[0] if str(exc) else '')}"
                  f" (re-run with --debug for the traceback)")
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"contextrast {__version__}")
        raise typer.Exit()


@app.callback()
def root(ctx: typer.Context,
         version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
         debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False) -> None:
    """Contextrast: CCL + BANE pixel contrastive learning for semantic segmentation."""
    ctx.obj = {"debug": debug}


@presets_app.callback()
def presets_list(ctx: typer.Context) -> None:
    """List the presets with their one-line descriptions."""
    if ctx.invoked_subcommand is not None:
        return
    from contextrast_cli.config import list_presets, resolve_config

    table = Table("preset", "description", title="presets")
    with guarded(ctx):
        for name in list_presets():
            table.add_row(name, resolve_config(preset=name).description)
    out.print(table)


@presets_app.command("show")
def presets_show(ctx: typer.Context, name: str, overrides: SetOpt = None) -> None:
    """Print preset NAME fully resolved (defaults filled in) as YAML."""
    from contextrast_cli.config import resolve_config

    with guarded(ctx):
        print(resolve_config(preset=name, overrides=overrides or []).to_yaml(), end="")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


def _print_dataset(prepared) -> None:
    table = Table("split", "images", title=f"{prepared.name}: {prepared.root}")
    for split, count in prepared.splits.items():
        table.add_row(split, str(count))
    out.print(table)
    freq = prepared.meta.get("class_frequencies", {})
    if freq:
        out.print("train pixel share: " + ", ".join(f"{k} {v:.1%}" for k, v in freq.items()))


@prepare_app.command("camvid")
def prepare_camvid(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option(help="SegNet CamVid folder (train/, trainannot/, val/, ...).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Prepared dataset folder to create.")] = Path("data/camvid"),
    force: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Convert the SegNet CamVid folder (void 11 -> ignore 255)."""
    from contextrast_cli.data.camvid import convert_camvid, find_camvid_splits

    with guarded(ctx), _progress() as progress:
        total = sum(len(p) for p in find_camvid_splits(source).values())
        task = progress.add_task("converting CamVid", total=total)
        prepared = convert_camvid(source, out_dir, force=force,
                                  on_sample=lambda _: progress.advance(task))
    _print_dataset(prepared)


def _parse_size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or not int(height) or not int(width):
        raise typer.BadParameter(f"expected HxW such as 120x160, got {text!r}")
    return int(height), int(width)


@prepare_app.command("synthetic")
def prepare_synthetic_cmd(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Prepared dataset folder to create.")] = Path("data/synthetic"),
    num_train: Annotated[int, typer.Option(min=1)] = 200,
    num_val: Annotated[int, typer.Option(min=1)] = 40,
    size: Annotated[str, typer.Option(help="Scene size HxW.")] = "120x160",
    seed: int = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Draw procedural street scenes (deterministic per seed)."""
    from contextrast_cli.config import SyntheticData
    from contextrast_cli.data.build import prepare_synthetic

    params = SyntheticData(num_train=num_train, num_val=num_val, size=_parse_size(size), seed=seed)
    with guarded(ctx), _progress() as progress:
        task = progress.add_task("drawing scenes", total=num_train + num_val)
        prepared = prepare_synthetic(out_dir, params, force=force,
                                     on_sample=lambda _: progress.advance(task))
    _print_dataset(prepared)


@app.command()
def train(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_root: DataRootOpt = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="Parent of run folders (default runs/).")] = None,
    device: DeviceOpt = None,
    iterations: Annotated[Optional[int], typer.Option(help="Override train.iterations.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override train.batch_size.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Run folder or last.pt to continue.")] = None,
) -> None:
    """Train a segmentation network; writes runs/<preset>/<time>/ with checkpoints and metrics."""
    from contextrast_cli.config import resolve_config
    from contextrast_cli.engine.checkpoint import load_checkpoint
    from contextrast_cli.engine.reporting import RichReporter
    from contextrast_cli.engine.trainer import Trainer

    flags = {"data.root": str(data_root.resolve()) if data_root else None,
             "train.output_dir": str(output_dir) if output_dir else None, "train.device": device,
             "train.iterations": iterations, "train.batch_size": batch_size}
    with guarded(ctx):
        payload = load_checkpoint(resume) if resume else None
        cfg = resolve_config(preset, config, overrides or [], flags,
                             base=payload["config"] if payload else None)
        run_dir = (resume if resume.is_dir() else resume.parent) if resume else None
        result = Trainer(cfg, resume=payload, run_dir=run_dir, reporter=RichReporter(err)).run()
    best = f"{result.best_miou:.4f}" if result.best_miou is not None else "n/a"
    out.print(f"[bold green]done[/]: {result.iterations} iterations, best val mIoU {best}; "
              f"checkpoints in {result.run_dir}")


def _metrics_table(metrics: dict) -> Table:
    table = Table("class", "IoU", "Acc", title=f"{metrics['split']} ({metrics['num_images']} images)")
    for name, iou in metrics["IoU"].items():
        acc = metrics["Acc"][name]
        table.add_row(name, "-" if iou is None else f"{iou * 100:.2f}", "-" if acc is None else f"{acc * 100:.2f}")
    table.add_section()
    table.add_row("[bold]mean", f"[bold]{metrics['mIoU'] * 100:.2f}", f"[bold]{metrics['mAcc'] * 100:.2f}")
    table.caption = f"mIoU {metrics['mIoU'] * 100:.2f}  aAcc {metrics['aAcc'] * 100:.2f}  mAcc {metrics['mAcc'] * 100:.2f}"
    return table


@app.command()
def evaluate(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint (default: newest best.pt under runs/).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate (default: the config's eval.split).")] = None,
    data_root: DataRootOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON.")] = None,
    device: DeviceOpt = "auto",
    runs_dir: Annotated[Path, typer.Option(help="Where to look for the newest best.pt.")] = Path("runs"),
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="Evaluate an exported FILE.onnx (with its "
                                                 "FILE.onnx.json) with onnxruntime on the CPU instead.")] = None,
) -> None:
    """Evaluate a checkpoint (or an exported ONNX graph): per-class IoU, mIoU, pixel and mean accuracy."""
    from contextrast_cli.atomic import atomic_write_text
    from contextrast_cli.engine.checkpoint import newest_checkpoint
    from contextrast_cli.engine.evaluator import evaluate_checkpoint
    from contextrast_cli.errors import ConfigError

    with guarded(ctx), _progress() as progress:
        if onnx is not None and checkpoint is not None:
            raise ConfigError("pass either --checkpoint or --onnx, not both")
        if checkpoint is None and onnx is None:
            checkpoint = newest_checkpoint(runs_dir)
            err.print(f"using {checkpoint}")
        task = progress.add_task("evaluating", total=None)
        on_batch = lambda i, n: progress.update(task, completed=i, total=n)  # noqa: E731
        if onnx is not None:
            from contextrast_cli.engine.onnx_eval import evaluate_onnx

            metrics = evaluate_onnx(onnx, split=split, data_root=data_root, on_batch=on_batch)
        else:
            metrics = evaluate_checkpoint(checkpoint, split=split, data_root=data_root, device=device,
                                          on_batch=on_batch)
        if json_out:
            atomic_write_text(json_out, json.dumps(metrics, indent=2))
    out.print(_metrics_table(metrics))


@app.command("visualize", hidden=True)
@app.command("visualize-boundaries")
def visualize_boundaries(
    ctx: typer.Context,
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="Images (an image inside a prepared dataset finds its label).", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint (default: newest best.pt under runs/).")] = None,
    checkpoints: Annotated[Optional[list[Path]], typer.Option(
        help="Compare checkpoints, one row each: --checkpoints A.pt B.pt C.pt (or repeat the option).")] = None,
    label: Annotated[Optional[Path], typer.Option(help="Label PNG (train ids, 255 ignore) of a single IMAGE.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Take images and labels from this prepared split.")] = None,
    num: Annotated[int, typer.Option(min=1, help="Images taken from --split.")] = 4,
    data_root: DataRootOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: visualize/ "
                                                    "beside the checkpoint).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Tapped layers to draw, e.g. 1,2,3,4 "
                                                  "(default: the checkpoint's contrast.layers).")] = None,
    ratio: Annotated[Optional[float], typer.Option(min=0.0, max=1.0,
                                                   help="BANE fraction K (default: contrast.bane.ratio).")] = None,
    style: Annotated[str, typer.Option(help="grid (figure 3 panels) or overlay (one compact image).")] = "grid",
    device: DeviceOpt = "auto",
    runs_dir: Annotated[Path, typer.Option(help="Where to look for the newest best.pt.")] = Path("runs"),
) -> None:
    """Draw what BANE selects: prediction, error masks, distance heat-maps and the chosen negatives.

    BANE runs through the loss's own code on a batch of one image: K is per image here, per batch in training.

    Dots: BANE picks, coloured by the anchor class they push away from. Grey crosses: random top-up.
    """
    from contextrast_cli.engine.checkpoint import newest_checkpoint
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.visualize import visualize_images

    with guarded(ctx):
        images, checkpoints = list(images or []), list(checkpoints or [])
        if checkpoints:  # `--checkpoints A.pt B.pt`: Click hands B.pt to IMAGE
            checkpoints += [path for path in images if path.suffix == ".pt"]
            images = [path for path in images if path.suffix != ".pt"]
            if checkpoint is not None:
                raise ConfigError("give either --checkpoint or --checkpoints, not both")
        elif checkpoint is None:
            checkpoint = newest_checkpoint(runs_dir)
            err.print(f"using {checkpoint}")
        written = visualize_images(images, checkpoints or [checkpoint], label=label, split=split, num=num,
                                   data_root=data_root, out_dir=out_dir, layers=layers, ratio=ratio,
                                   style=style, device=device)
    for path, note in written:
        if note:
            out.print(escape(note), soft_wrap=True)
        out.print(f"wrote {escape(str(path))}")


@app.command()
def export(
    ctx: typer.Context,
    onnx: Annotated[bool, typer.Option("--onnx", help="Write an ONNX graph (the only format so far).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="Checkpoint or run folder (default: newest best.pt under runs/).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="ONNX file (default: the checkpoint "
                                                   "with .onnx); FILE.json is written beside it.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    height: Annotated[Optional[int], typer.Option(min=1, help="Traced and verified height (default: crop).")] = None,
    width: Annotated[Optional[int], typer.Option(min=1, help="Traced and verified width (default: crop).")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic/--static",
                                          help="Symbolic batch, height and width, or fixed 1 x H x W.")] = True,
    argmax: Annotated[bool, typer.Option("--argmax", help="Output int64 labels (N, H, W), not logits.")] = False,
    include_preprocessing: Annotated[bool, typer.Option(
        "--include-preprocessing", help="Input uint8 RGB (N, H, W, 3); the graph normalises.")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify",
                                         help="Full onnx check, then onnxruntime vs PyTorch.")] = True,
    runs_dir: Annotated[Path, typer.Option(help="Where to look for the newest best.pt.")] = Path("runs"),
) -> None:
    """Export the contrastive-free inference network (no projection heads) to ONNX, verified."""
    from contextrast_cli.engine.checkpoint import newest_checkpoint
    from contextrast_cli.errors import ConfigError
    from contextrast_cli.export import ExportOptions, export_checkpoint

    options = ExportOptions(opset=opset, height=height, width=width, dynamic=dynamic, argmax=argmax,
                            preprocessing=include_preprocessing, verify=verify)
    with guarded(ctx):
        if not onnx:
            raise ConfigError("choose the export format: --onnx (the only one so far)")
        if checkpoint is None:
            checkpoint = newest_checkpoint(runs_dir)
            err.print(f"using {escape(str(checkpoint))}")
        with err.status("exporting to ONNX (torch.onnx, dynamo)"):
            result = export_checkpoint(checkpoint, output, options)
    out.print(_parameter_table(result.counts))
    if result.verification:
        out.print(_verification_table(result.verification))
    out.print(f"[bold green]wrote[/] {escape(str(result.path))} and {escape(result.sidecar.name)}")


def _parameter_table(counts: dict) -> Table:
    table = Table("parameters", "training model", "exported graph", title="contrastive-free export")
    table.add_row("segmentation network", f"{counts['network']:,}", f"{counts['network']:,}")
    table.add_row("auxiliary heads (training only)", f"{counts['training_only']:,}", "-")
    table.add_row("projection heads (contrast)", f"{counts['projection']:,}", "-")
    table.add_section()
    table.add_row("[bold]total", f"[bold]{counts['training_total']:,}", f"[bold]{counts['network']:,}")
    table.caption = (f"BatchNorm ({counts['bn_statistics']:,} running statistics) is folded into the convolutions: "
                     f"the graph's network initializers hold {counts.get('initializer_elements', 0):,} numbers")
    return table


def _verification_table(rows: list[dict]) -> Table:
    table = Table("input (N x H x W)", "max |logit diff|", "argmax agreement", "PyTorch float32 diff",
                  title="onnxruntime vs PyTorch float64 (onnx.checker full check passed)")
    for row in rows:
        diff = "n/a (labels)" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2e}"
        table.add_row(" x ".join(map(str, row["shape"])), diff, f"{row['agreement']:.4%}",
                      f"{row['torch_float32_diff']:.2e}")
    table.caption = "limits: logit diff 1e-3, agreement 99.9%"
    return table


def main() -> None:
    """Console-script entry point."""
    app()
