"""Figures of ``analyze`` (``evaluation.analyses``' numbers and arrays, drawn): the anchor-similarity
curves, the t-SNE maps and the Grad-CAM grid. Each writes a PNG atomically."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contextrast_cli.evaluation.writers import write_png
from contextrast_cli.viz.charts import _pyplot, _save
from contextrast_cli.viz.layout import compose

SPACES = {"layers": "encoder features", "embeddings": "projection heads"}


def similarity_chart(curves: dict[str, dict], path: Path, title: str = "") -> Path | None:
    """One panel per (space, layer): for each label (a run, or a variant) the mean cosine similarity
    of misclassified pixels to the anchor they are a negative of (solid) and to their own class's
    anchor (dashed) against their distance from the error boundary. None when nothing was measured."""
    keys = sorted({(space, layer) for c in curves.values() for space, layers in c.items() for layer in layers},
                  key=lambda k: (k[0] != "layers", int(k[1])))
    if not keys:
        return None
    plt = _pyplot()
    columns = min(4, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax, (space, layer) in zip(axes.flat, keys):
        for index, (label, curve) in enumerate(curves.items()):
            data = curve.get(space, {}).get(layer)
            if data is None:
                continue
            xs = np.arange(len(data["bins"]))
            for target, style in (("negative", "-"), ("own", "--")):
                ys = np.array([np.nan if v is None else v for v in data[target]], float)
                ax.plot(xs, ys, style, marker="o", markersize=3, color=f"C{index}",
                        label=f"{label}: {'its negative anchor' if target == 'negative' else 'own anchor'}")
            ax.set_xticks(xs, data["bins"])
        ax.set_title(f"{SPACES.get(space, space)}, layer {layer}", fontsize=9)
        ax.set_xlabel("distance from the error boundary (layer cells)")
        ax.set_ylabel("mean cosine similarity")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.remove()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title or "misclassified pixels: similarity to the anchors", fontsize=10)
    return _save(fig, path)


def tsne_chart(tsne: dict[int, tuple[np.ndarray, np.ndarray]], classes: Sequence[str], palette, path: Path,
               title: str = "") -> Path | None:
    """One t-SNE map per tapped layer, each point a sampled pixel in its class's palette colour."""
    if not tsne:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tsne), figsize=(3.4 * len(tsne), 3.9), squeeze=False, layout="constrained")
    colours = np.asarray(palette, float) / 255
    present = sorted({int(c) for _, labels in tsne.values() for c in labels})
    for ax, (layer, (coords, labels)) in zip(axes[0], sorted(tsne.items())):
        ax.scatter(coords[:, 0], coords[:, 1], s=5, c=colours[labels], edgecolors="none")
        ax.set_title(f"layer {layer} ({len(labels)} pixels)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[c], label=classes[c]) for c in present]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(title or "t-SNE of the encoder features (L2-normalised), a seeded pixel sample", fontsize=10)
    return _save(fig, path)


def gradcam_grid(cams: list[tuple[str, np.ndarray, list[int], dict[int, np.ndarray]]], classes: Sequence[str],
                 path: Path, title: str = "") -> Path | None:
    """One row per image and layer: the image, then each class's Grad-CAM map over it
    (``pytorch_grad_cam.utils.image.show_cam_on_image``: jet, red = high)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rows = []
    for name, image, chosen, maps in cams:
        base = image.astype(np.float32) / 255
        for layer, layer_maps in sorted(maps.items()):
            rows.append([(f"{name}", image)] + [(f"{classes[c]} (layer {layer})",
                                                 show_cam_on_image(base, layer_maps[row], use_rgb=True))
                                                for row, c in enumerate(chosen)])
    if not rows:
        return None
    lines = [title or "Grad-CAM per class: the class's logits summed over its predicted pixels, traced to the layer"]
    return write_png(path, compose(rows, footer=(lines,)))
