"""What each supported dataset is: classes, palette, and how to prepare it.

No torch here: the config schema validates dataset names against this module.
"""

from dataclasses import dataclass

from contextrast_cli.config.classes import ADE20K_CLASSES, COCO_STUFF_CLASSES, PASCAL_CONTEXT_CLASSES

IGNORE_INDEX = 255

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree",
    "sign", "fence", "car", "pedestrian", "bicyclist",
)
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
    (0, 128, 192),
)
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
SYNTHETIC_CLASSES = ("sky", "building", "road", "sidewalk", "tree", "car", "pole", "person")
SYNTHETIC_PALETTE = (
    (128, 128, 128), (128, 0, 0), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (64, 0, 128), (192, 192, 128), (64, 64, 0),
)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the tool knows.

    Attributes:
        name: the ``data.dataset`` value.
        title: human name for messages.
        num_classes: number of train ids (0..num_classes-1; 255 is ignore); 0 when the prepared
            dataset's ``dataset.json`` defines its classes (``folder``).
        classes: class names, or empty when ``dataset.json`` names them.
        palette: RGB per class, or empty for a generated palette.
        prepare_hint: arguments of ``contextrast prepare-data`` for this dataset,
            or empty when no converter exists yet.
    """

    name: str
    title: str
    num_classes: int
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    prepare_hint: str = ""


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("synthetic", "synthetic scenes", len(SYNTHETIC_CLASSES), SYNTHETIC_CLASSES,
                    SYNTHETIC_PALETTE, "synthetic --out {root}"),
        DatasetSpec("camvid", "CamVid", len(CAMVID_CLASSES), CAMVID_CLASSES, CAMVID_PALETTE,
                    "camvid --source <SegNet CamVid folder> --out {root}"),
        DatasetSpec("cityscapes", "Cityscapes", 19, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                    "cityscapes --source <folder with leftImg8bit/ and gtFine/> --out {root}"),
        DatasetSpec("ade20k", "ADE20K", len(ADE20K_CLASSES), ADE20K_CLASSES, (),
                    "ade20k --source <ADEChallengeData2016> --out {root}"),
        DatasetSpec("pascal-context", "PASCAL-Context", len(PASCAL_CONTEXT_CLASSES), PASCAL_CONTEXT_CLASSES, (),
                    "pascal-context --source <VOC2010 with SegmentationClassContext/> --out {root}"),
        DatasetSpec("coco-stuff", "COCO-Stuff", len(COCO_STUFF_CLASSES), COCO_STUFF_CLASSES, (),
                    "coco-stuff --source <COCO-Stuff 164k or 10k folder> --out {root}"),
        DatasetSpec("folder", "your own labelled images", 0, (), (),
                    "folder --images <dir> --labels <dir> --classes <file> --out {root}"),
    )
}


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC bit-interleaved colour map: distinct colours for any class count."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index + 1
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)
