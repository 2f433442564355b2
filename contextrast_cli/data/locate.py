"""From a validated data config to datasets: locate, auto-generate, wrap."""

from collections.abc import Callable
from pathlib import Path

from contextrast_cli.config import DataConfig, SyntheticData
from contextrast_cli.data.prepared import (
    DATASET_JSON, PreparedDataset, Sample, read_prepared, resolve_root, write_prepared)
from contextrast_cli.config.datasets import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from contextrast_cli.errors import DataError


def prepare_synthetic(out: Path, params: SyntheticData, *, force: bool = False,
                      on_sample: Callable[[str], None] | None = None) -> PreparedDataset:
    """Render the synthetic scenes of ``params`` into the prepared layout."""
    from contextrast_cli.data.synthetic import GENERATOR_VERSION, render_scene

    height, width = params.size

    def samples(offset: int, count: int):
        for index in range(offset, offset + count):
            image, label = render_scene(params.seed, index, height, width)
            yield Sample(f"scene_{index:05d}", image, label)

    return write_prepared(
        out, name="synthetic", classes=SYNTHETIC_CLASSES, palette=SYNTHETIC_PALETTE,
        splits={"train": samples(0, params.num_train),
                "val": samples(params.num_train, params.num_val)},
        source={"generator": "contextrast synthetic", "generator_version": GENERATOR_VERSION,
                **params.model_dump(mode="json")},
        force=force, on_sample=on_sample)


def locate_dataset(cfg: DataConfig, root: Path | None = None,
                   say: Callable[[str], None] | None = None) -> PreparedDataset:
    """The prepared dataset a config asks for, generating synthetic scenes on first use.

    Args:
        cfg: the data section.
        root: explicit ``--data-root``; overrides ``cfg.root`` and the defaults. It must hold a
            prepared dataset: nothing is generated at a path given on the command line.
        say: told, in one line, when synthetic scenes are generated (where, how many).

    Raises:
        DataError: missing data (with the command that prepares it) or a mismatch.
    """
    path = resolve_root(cfg.dataset, root if root is not None else cfg.root)
    if root is None and cfg.dataset == "synthetic" and not (path / DATASET_JSON).exists():
        if path.exists() and any(path.iterdir()):
            raise DataError(f"{path} is not empty but has no {DATASET_JSON}; remove it or "
                            f"choose another --data-root for the synthetic scenes")
        params = cfg.synthetic or SyntheticData()
        if say is not None:
            say(f"note: drawing {params.num_train} + {params.num_val} synthetic scenes into {path}/ (first use; "
                f"no download; reused by later runs)")
        prepare_synthetic(path, params)
    prepared = read_prepared(path, cfg.dataset)
    _check_synthetic_params(cfg, prepared)
    return prepared


def _check_synthetic_params(cfg: DataConfig, prepared: PreparedDataset) -> None:
    if cfg.dataset != "synthetic":
        return
    from contextrast_cli.data.synthetic import GENERATOR_VERSION

    wanted = {"generator_version": GENERATOR_VERSION,
              **(cfg.synthetic or SyntheticData()).model_dump(mode="json")}
    stored = {key: prepared.meta.get("source", {}).get(key) for key in wanted}
    if stored != wanted:
        raise DataError(f"{prepared.root} holds synthetic scenes made with {stored}, but the config "
                        f"asks for {wanted}; regenerate with `contextrast prepare-data synthetic "
                        f"--out {prepared.root} --force` or choose another --data-root")
