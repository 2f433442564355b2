"""Transforms, sampler and dataset over the prepared layout."""

import itertools

import pytest
import torch
from torchvision import tv_tensors

from contextrast_cli.config import resolve_config
from contextrast_cli.data.locate import locate_dataset, prepare_synthetic
from contextrast_cli.data.loading import InfiniteSampler, SegmentationFolder, sample_seed
from contextrast_cli.data.transforms import RandomScale, ResizeToBase, eval_transform, train_transform
from contextrast_cli.errors import DataError


def coded_pair(height=10, width=12):
    """An image whose red channel equals the label, so geometry can be checked exactly."""
    label = torch.randint(0, 8, (height, width), dtype=torch.uint8)
    image = torch.stack([label * 30, torch.zeros_like(label), torch.zeros_like(label)])
    return tv_tensors.Image(image), tv_tensors.Mask(label)


def test_train_transform_keeps_image_and_mask_aligned():
    cfg = resolve_config("toy", overrides=["data.crop_size=[8, 8]", "data.scale_range=[1.0, 1.0]",
                                            "data.color_jitter={brightness: 0, contrast: 0, saturation: 0}"]).data
    torch.manual_seed(0)
    for _ in range(10):
        image, mask = train_transform(cfg)(*coded_pair())
        assert image.shape == (3, 8, 8) and mask.shape == (8, 8)
        decoded = torch.round(image[0] * 255 / 30).to(torch.int64)
        assert torch.equal(decoded, mask.as_subclass(torch.Tensor).long())


def test_crop_larger_than_image_pads_labels_with_ignore():
    cfg = resolve_config("toy", overrides=["data.crop_size=[16, 20]", "data.scale_range=[1.0, 1.0]"]).data
    _, mask = train_transform(cfg)(*coded_pair(10, 12))
    assert mask.shape == (16, 20)
    assert (mask == 255).sum() == 16 * 20 - 10 * 12


def test_random_scale_uses_nearest_for_masks():
    torch.manual_seed(1)
    image, mask = RandomScale((1.7, 1.7))(*coded_pair(10, 12))
    assert mask.shape == (17, 20) and image.shape == (3, 17, 20)
    assert set(mask.unique().tolist()) <= set(range(8))


def big_pair(height=1500, width=2000):
    """A 2000x1500 (W x H) photo-sized pair: 100-pixel label blocks of 8 classes, red channel = label * 30."""
    blocks = torch.randint(0, 8, (-(-height // 100), -(-width // 100)), generator=torch.Generator().manual_seed(0))
    label = blocks.repeat_interleave(100, 0).repeat_interleave(100, 1)[:height, :width].to(torch.uint8)
    image = torch.stack([label * 30, torch.zeros_like(label), torch.zeros_like(label)])
    return tv_tensors.Image(image), tv_tensors.Mask(label)


def base_cfg(*overrides):
    return resolve_config("toy", overrides=["data.base_size={long: 2048, short: 512}", "data.hflip=false",
                                            "data.color_jitter={brightness: 0, contrast: 0, saturation: 0}",
                                            *overrides]).data


def test_base_size_comes_first_and_resizes_a_2000x1500_image_to_683x512():
    transform = train_transform(base_cfg())
    assert [type(t) for t in transform.transforms[:2]] == [ResizeToBase, RandomScale]
    image, mask = big_pair()
    resized, resized_mask = transform.transforms[0](image, mask)
    assert resized.shape == (3, 512, 683) and resized_mask.shape == (512, 683)  # min(2048/2000, 512/1500)
    # labels by nearest neighbour: pixel (i, j) takes source pixel (floor(i * 1500/512), floor(j * 2000/683))
    rows = (torch.arange(512) * (1500 / 512)).floor().long()
    cols = (torch.arange(683) * (2000 / 683)).floor().long()
    assert torch.equal(resized_mask.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)[rows][:, cols])
    assert train_transform(base_cfg("data.base_size=null")).transforms[0].__class__ is RandomScale


def test_random_scale_and_crop_see_the_base_size():
    """At scale 1 a 600x800 crop of the 2000x1500 image pads exactly what 683x512 leaves uncovered."""
    _, mask = train_transform(base_cfg("data.scale_range=[1.0, 1.0]", "data.crop_size=[600, 800]"))(*big_pair())
    assert mask.shape == (600, 800) and int((mask == 255).sum()) == 600 * 800 - 512 * 683
    torch.manual_seed(0)
    _, mask = train_transform(base_cfg("data.scale_range=[2.0, 2.0]", "data.crop_size=[2000, 2000]"))(*big_pair())
    assert int((mask != 255).sum()) == 1024 * 1366  # random scale 2 of the base size, not of 2000x1500


def test_sampler_resumes_exactly_and_shards():
    full = list(itertools.islice(iter(InfiniteSampler(7, seed=3)), 30))
    indices = [index for index, _ in full]
    assert sorted(indices[:7]) == list(range(7))  # each epoch is a permutation
    assert indices[:7] != indices[7:14]  # and epochs differ
    assert list(itertools.islice(iter(InfiniteSampler(7, seed=3, start=11)), 19)) == full[11:]
    shards = [list(itertools.islice(iter(InfiniteSampler(7, seed=3, rank=r, world_size=2)), 10))
              for r in range(2)]
    assert shards[0] == full[0:20:2] and shards[1] == full[1:20:2]  # keys and seeds follow the global position
    resumed = [list(itertools.islice(iter(InfiniteSampler(7, seed=3, start=12, rank=r, world_size=2)), 5))
               for r in range(2)]  # a 2-process run resumed after 3 iterations of global batch 4
    assert resumed[0] == full[12:22:2] and resumed[1] == full[13:22:2]
    seeds = [seed for _, seed in full]
    assert len(set(seeds)) == 30 and seeds == [sample_seed(3, p) for p in range(30)]
    assert sample_seed(3, 5) != sample_seed(4, 5)


def test_augmentation_depends_only_on_the_sample_key(tmp_path):
    """The same (index, seed) key gives the same augmented sample whatever the global RNG did
    before, and loading it leaves the global RNG untouched; another seed augments differently."""
    cfg = resolve_config("toy", overrides=[f"data.root={tmp_path / 's'}",
                                           "data.synthetic={num_train: 2, num_val: 1, size: [24, 32]}",
                                           "data.crop_size=[16, 20]"]).data
    folder = SegmentationFolder(locate_dataset(cfg).root, "train", train_transform(cfg))
    torch.manual_seed(0)
    first = folder[(1, 1234)]
    state = torch.get_rng_state()
    torch.manual_seed(99)
    torch.rand(5)
    second = folder[(1, 1234)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    torch.manual_seed(0)
    folder[(1, 1234)]
    assert torch.equal(torch.get_rng_state(), state)  # loading did not draw from the global RNG
    other = [folder[(1, seed)][0] for seed in range(5)]
    assert any(not torch.equal(o, first[0]) for o in other)


def test_synthetic_generated_on_first_use(tmp_path):
    cfg = resolve_config("toy", overrides=[f"data.root={tmp_path / 's'}",
                                            "data.synthetic={num_train: 3, num_val: 2, size: [24, 32]}"]).data
    prepared = locate_dataset(cfg)
    assert prepared.splits == {"train": 3, "val": 2}
    image, label = SegmentationFolder(prepared.root, "val", eval_transform())[1]
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label.max()) < 8
    # the same scenes are found again, not regenerated
    assert locate_dataset(cfg).meta == prepared.meta


def test_synthetic_parameter_mismatch_is_reported(tmp_path):
    prepare_synthetic(tmp_path / "s", resolve_config("toy").data.synthetic.model_copy(
        update={"num_train": 2, "num_val": 1, "size": (16, 16)}))
    cfg = resolve_config("toy", overrides=[f"data.root={tmp_path / 's'}"]).data
    with pytest.raises(DataError, match="regenerate with `contextrast prepare-data synthetic"):
        locate_dataset(cfg)


def test_missing_camvid_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTEXTRAST_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        locate_dataset(resolve_config("camvid").data)
    message = str(info.value)
    assert "expected a prepared dataset at data/camvid" in message
    assert "contextrast prepare-data camvid --source" in message
    monkeypatch.setenv("CONTEXTRAST_DATA", str(tmp_path / "datasets"))
    with pytest.raises(DataError, match=f"at {tmp_path / 'datasets' / 'cityscapes'}.*prepare-data cityscapes --source"):
        locate_dataset(resolve_config("cityscapes").data)
