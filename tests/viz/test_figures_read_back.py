"""The figure defects of issue 36, each checked on the figure itself (matplotlib's objects before
saving, the drawn arrays of the BANE panels)."""

import numpy as np
import pytest

from contextrast_cli.viz.charts import confusion_figure, curves_figure
from contextrast_cli.viz.panels import LayerPicks, colour_bar_height, heat_panel, viridis


def contrast_records(iterations: int = 7) -> list[dict]:
    """A contrastive run's metrics.jsonl: deep layers pick a few BANE negatives, layer 1's top-up
    ~1800; one validation, at the end."""
    records = []
    for it in range(1, iterations + 1):
        record = {"iteration": it, "loss": 3.0 - 0.1 * it, "loss_ce": 2.0 - 0.1 * it, "lr": 0.01 / it,
                  "ccl_present": 8, "ccl_anchored": 8}
        for layer, bane, topup in ((1, 240, 1800), (2, 60, 1900), (3, 4 + it % 2, 2000), (4, 2 + it % 3, 2040)):
            record.update({f"loss_ccl_l{layer}": 0.05, f"ccl_l{layer}_bane": bane, f"ccl_l{layer}_topup": topup,
                           f"ccl_l{layer}_pos_sim": 0.8, f"ccl_l{layer}_neg_sim": 0.2, f"ccl_l{layer}_classes": 8})
        records.append(record)
    records.append({"iteration": iterations, "split": "val", "mIoU": 0.4321, "boundary": {"mBIoU": 0.2}})
    return records


@pytest.fixture
def drawn():
    import matplotlib.pyplot as plt

    figures = []

    def draw(records):
        fig = curves_figure(records, "run")
        fig.canvas.draw()
        figures.append(fig)
        return fig

    yield draw
    for fig in figures:
        plt.close(fig)


def by_title(fig, start: str):
    return next(ax for ax in fig.axes if ax.get_title().startswith(start))


def test_every_curves_panel_has_a_y_label(drawn):
    fig = drawn(contrast_records())
    assert len(fig.axes) == 6
    assert all(ax.get_ylabel() for ax in fig.axes), [ax.get_title() for ax in fig.axes if not ax.get_ylabel()]


def test_iteration_ticks_are_whole_numbers(drawn):
    for ax in drawn(contrast_records(4)).axes:  # 4 iterations: matplotlib's default ticks 1, 1.5, 2, ...
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_legends_lie_outside_the_plotting_area(drawn):
    for ax in drawn(contrast_records()).axes:
        legend = ax.get_legend()
        assert legend is not None and not legend.get_window_extent().overlaps(ax.get_window_extent()), ax.get_title()


def test_a_single_validation_is_marked_and_labelled_in_the_schedule(drawn):
    ax = by_title(drawn(contrast_records()), "validation")
    (miou,) = [line for line in ax.get_lines() if line.get_label() == "mIoU"]
    assert miou.get_markersize() >= 6
    assert "0.4321" in [text.get_text() for text in ax.texts]
    low, high = ax.get_xlim()
    assert low <= 1 and high >= 7  # placed in the whole schedule, not alone on a one-point axis


def test_deep_layers_bane_counts_are_not_flat_at_the_bottom(drawn):
    ax = by_title(drawn(contrast_records()), "contrast: negatives per anchor")
    (deep,) = [line for line in ax.get_lines() if line.get_label() == "ccl_l4_bane"]
    box = ax.get_window_extent()
    heights = (ax.transData.transform(deep.get_xydata())[:, 1] - box.y0) / box.height
    assert heights.max() - heights.min() > 0.05, heights  # 2-4 negatives, read against ~2000 on one axis


def test_a_cross_entropy_run_draws_no_contrast_panel(drawn):
    records = [{k: v for k, v in r.items() if not k.startswith(("ccl", "loss_ccl"))} for r in contrast_records()]
    fig = drawn(records)
    assert [ax.get_title() for ax in fig.axes] == ["losses", "learning rate", "validation (val)"]


def test_confusion_colour_bar_runs_in_the_cells_unit():
    import matplotlib.pyplot as plt

    fig = confusion_figure([[6, 2, 0], [0, 0, 0], [1, 1, 8]], ["a", "b", "c"])
    try:
        ax = fig.axes[0]
        image = ax.images[0]
        assert image.get_clim() == (0.0, 100.0)
        colour_bar = image.colorbar
        assert colour_bar.vmin == 0 and colour_bar.vmax == 100 and "%" in colour_bar.ax.get_ylabel()
        values = image.get_array()
        for text in ax.texts:
            col, row = (round(v) for v in text.get_position())
            assert text.get_text() == f"{values[row, col]:.0f}"
    finally:
        plt.close(fig)


def test_the_bane_heat_map_has_a_colour_bar_matching_its_cells():
    error = np.zeros((8, 12), bool)
    error[2:6, 1:11] = True
    distance = np.full((8, 12), np.inf, np.float32)
    distance[2:6, 1:11] = 1.0
    distance[3:5, 2:10] = 2.0  # max 2: a cell at 2 takes the bar's right end, at 1 its middle
    view = LayerPicks(1, (4.0, 4.0), error, distance, np.zeros((0, 2), int), np.zeros(0, int),
                      np.zeros((0, 2), int), np.zeros(3, int), np.zeros(3, int))
    panel = heat_panel(np.full((32, 48, 3), 128, np.uint8), view)
    rows = colour_bar_height(32)
    bar = panel[-rows:]
    assert (bar == bar[:1]).all()  # one ramp, repeated down the bar
    np.testing.assert_array_equal(bar[0], viridis(np.linspace(0, 255, 48).astype(np.uint8)))
    assert (panel[13, 13] == bar[0, -1]).all()  # distance 2 = the maximum: the right end
    middle = np.abs(bar[0].astype(int) - panel[9, 5].astype(int)).sum(1).argmin()  # distance 1 of 2
    assert abs(middle / 47 - 0.5) < 0.05
