"""CamVid in the SegNet layout (11 classes, 11 = void -> ignore): ``{train,val,test}/*.png`` with
``{train,val,test}annot/*.png``; train is required, val and test are taken when present."""

from pathlib import Path

from contextrast_cli.data.convert import LabelTable, Plan, images_in, pair_up, require_dir
from contextrast_cli.data.labels import read_index_label
from contextrast_cli.config.datasets import CAMVID_CLASSES, CAMVID_PALETTE, IGNORE_INDEX

CAMVID_VOID = 11
SPLITS = {"train": "trainannot", "val": "valannot", "test": "testannot"}
TABLE = LabelTable({**{i: i for i in range(CAMVID_VOID)}, CAMVID_VOID: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX},
                   "CamVid classes (0-10, 11 = void)")


def plan_camvid(source: Path) -> Plan:
    """The CamVid pairs under the SegNet folder ``source``.

    Raises:
        DataError: no train split, or an image without its label, named.
    """
    source = Path(source)
    require_dir(source / "train", "CamVid", "the SegNet folder's train images, beside trainannot/")
    splits = {}
    for split, annot in SPLITS.items():
        if split == "train" or (source / split).is_dir():
            labels = require_dir(source / annot, "CamVid", f"the {split} labels")
            splits[split] = pair_up(images_in(source / split), lambda p, a=labels: a / f"{p.stem}.png",
                                    where=f" in {source / split}")
    return Plan("camvid", CAMVID_CLASSES, CAMVID_PALETTE, splits, lambda path: TABLE(read_index_label(path), path),
                {"converter": "camvid", "path": str(source.resolve()), "label_map": {str(CAMVID_VOID): IGNORE_INDEX}})
