"""The converters of ``contextrast prepare-data``: dataset name -> plan function (source -> Plan)."""

from contextrast_cli.data.ade20k import plan_ade20k
from contextrast_cli.data.camvid import plan_camvid
from contextrast_cli.data.cityscapes import plan_cityscapes
from contextrast_cli.data.coco_stuff import plan_coco_stuff
from contextrast_cli.data.pascal_context import plan_pascal_context

# name -> (plan function, what --source is)
SOURCES = {
    "camvid": (plan_camvid, "the SegNet CamVid folder (train/, trainannot/, val/, valannot/, ...)"),
    "cityscapes": (plan_cityscapes, "the folder holding leftImg8bit/ and gtFine/"),
    "ade20k": (plan_ade20k, "ADEChallengeData2016/ or the folder holding it"),
    "pascal-context": (plan_pascal_context, "VOC2010/ (or VOCdevkit/) with JPEGImages/ and SegmentationClassContext/ "
                                            "or the 459-class trainval/*.mat"),
    "coco-stuff": (plan_coco_stuff, "the 164k folder (images/, stuffthingmaps_trainval2017/) or the 10k folder "
                                    "(images/, annotations/, imageLists/)"),
}
