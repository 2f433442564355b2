"""The confusion-matrix figure: rows normalised, names on both axes, numbers only while they fit."""

import numpy as np
import pytest

from contextrast_cli.viz.charts import confusion_chart, confusion_figure


def test_a_small_matrix_is_row_normalised_with_a_number_per_visible_cell():
    import matplotlib.pyplot as plt

    matrix = [[6, 2, 0], [0, 0, 0], [1, 1, 8]]  # class "b" never in the ground truth
    fig = confusion_figure(matrix, ["a", "b", "c"])
    try:
        ax = fig.axes[0]
        shown = ax.images[0].get_array()
        np.testing.assert_allclose(shown, [[75, 25, 0], [0, 0, 0], [10, 10, 80]])  # percent, as the cells
        assert sorted(t.get_text() for t in ax.texts) == sorted(["75", "25", "10", "10", "80"])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("prediction", "ground truth")
    finally:
        plt.close(fig)


def test_150_classes_draw_names_without_numbers(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 50, (150, 150)) + np.diag(rng.integers(500, 5000, 150))
    names = [f"class_{i:03d}" for i in range(150)]
    fig = confusion_figure(matrix, names)
    try:
        ax = fig.axes[0]
        assert len(ax.texts) == 0  # colour only: 22,500 numbers would be unreadable
        assert [t.get_text() for t in ax.get_yticklabels()] == names
        assert max(t.get_fontsize() for t in ax.get_xticklabels()) == 6  # about 8 pixels: readable
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    image = cv2.imread(str(confusion_chart(matrix, names, tmp_path / "confusion.png")))
    assert image.shape[0] >= 2000 and image.shape[1] >= 2000  # one cell per ~15 pixels


@pytest.mark.parametrize("k", [8, 30, 31])
def test_numbers_stop_above_30_classes(k):
    import matplotlib.pyplot as plt

    fig = confusion_figure(np.eye(k, dtype=int) * 10, [str(i) for i in range(k)])
    try:
        assert len(fig.axes[0].texts) == (k if k <= 30 else 0)
    finally:
        plt.close(fig)
