"""The one reader of label images, for every converter and for prepared labels: Pillow, by mode.

- ``P`` (palette: PASCAL VOC, labelme, CVAT and most annotation tools): the index plane; the
  palette only says how a viewer shows it, so its colours are not read;
- ``L`` (8-bit grey), ``I;16`` (16-bit grey), ``I`` (32-bit): the values as stored;
- ``RGB`` / ``RGBA``: a colour-coded mask, (H, W, 3) RGB with any alpha dropped. Only the folder
  converter maps colours (through its classes file); every other reader refuses one.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from contextrast_cli.errors import DataError

INDEX_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N")
COLOUR_MODES = ("RGB", "RGBA")


def read_label_image(path: Path) -> np.ndarray:
    """(H, W) integer label map of an index image, or (H, W, 3) uint8 RGB of a colour mask.

    Raises:
        DataError: a missing or unreadable file, or another mode (grey with alpha, CMYK ...), named.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cannot read label ({'a directory' if path.is_dir() else 'no such file'})")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in INDEX_MODES:
                return np.array(image)  # a palette image's index plane, not its colours
            if mode in COLOUR_MODES:
                return np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read label (not an image Pillow can decode: "
                        f"{type(exc).__name__})") from None
    raise DataError(f"{path}: label image has mode {mode}; save it as an index PNG (palette, 8- or 16-bit grey) "
                    f"or an RGB colour-coded mask")


def read_index_label(path: Path) -> np.ndarray:
    """(H, W) integer label map (index modes only); a colour mask is a DataError saying so."""
    label = read_label_image(path)
    if label.ndim != 2:
        raise DataError(f"{path}: an RGB colour image, not a label map of ids; save the ids as an index PNG "
                        f"(palette, 8- or 16-bit grey)")
    return label
