import cv2
import numpy as np
import pytest
import torch

from posebh_cli.data.codecs import MSRAHeatmap, UDPHeatmap
from posebh_cli.data.dataset import (AugmentConfig, TopDownDataset, center_scale_of_points, clean_box, collate,
                                     half_body_joints)
from posebh_cli.data.prepared import Instance, open_prepared, write_prepared
from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import load_skeleton

INPUT = (96, 128)
HEATMAP = (24, 32)
NO_AUG = AugmentConfig(flip=0.0, half_body=0.0, scale_factor=0.0, rot_prob=0.0, center_jitter_prob=0.0)


def coco_person() -> np.ndarray:
    """An upright COCO-17 person inside the box (60, 40, 80, 160): face, arms, legs."""
    xy = [(100, 55), (95, 52), (105, 52), (90, 55), (110, 55), (80, 80), (120, 80), (75, 105), (125, 105),
          (72, 128), (128, 128), (88, 135), (112, 135), (86, 165), (114, 165), (85, 192), (115, 192)]
    keypoints = np.array([[x, y, 2] for x, y in xy], np.float32)
    keypoints[3, 2] = 0          # an unlabelled ear
    return keypoints


@pytest.fixture
def person(tmp_path):
    """A 320x240 image whose left-side keypoints are green dots and right-side ones red."""
    skeleton = load_skeleton("coco")
    keypoints = coco_person()
    image = np.full((240, 320, 3), 40, np.uint8)          # RGB
    for name, (x, y, _) in zip(skeleton.keypoints, keypoints):
        color = (0, 255, 0) if name.startswith("left") else (255, 0, 0) if name.startswith("right") else (0, 0, 255)
        cv2.circle(image, (int(x), int(y)), 3, color, -1)
    path = tmp_path / "person.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    inst = Instance(path, image_id=7, ann_id=70, bbox=np.array([60, 40, 80, 160], np.float32), keypoints=keypoints)
    return skeleton, inst


def make(skeleton, inst, codec=None, train=False, aug=NO_AUG, **kwargs):
    codec = codec or UDPHeatmap(INPUT, HEATMAP)
    return TopDownDataset([inst], skeleton, codec, train=train, dataset_idx=2, input_size=INPUT, aug=aug, **kwargs)


def test_eval_sample_shapes_padding_and_targets(person):
    skeleton, inst = person
    sample = make(skeleton, inst, max_keypoints=20)[0]
    assert sample["image"].shape == (3, 128, 96) and sample["image"].dtype == np.float32
    assert sample["heatmaps"].shape == (20, 32, 24)
    assert sample["target_weight"].shape == (20,) and sample["keypoints"].shape == (20, 3)
    assert np.all(sample["heatmaps"][17:] == 0) and np.all(sample["target_weight"][17:] == 0)
    assert np.all(sample["keypoints"][17:] == 0)
    assert sample["target_weight"][3] == 0 and sample["target_weight"][:17].sum() == 16
    assert sample["dataset_idx"] == 2
    meta = sample["meta"]
    assert (meta["image_id"], meta["ann_id"], meta["flipped"], meta["rotation"]) == (7, 70, False, 0.0)
    # The box (60, 40, 80, 160) cleaned as mmpose 0.x: (60, 40, 79, 159) -> centre (99.5, 119.5);
    # w grows to 0.75 * 159 = 119.25, then x 1.25 padding.
    assert meta["center"] == pytest.approx([99.5, 119.5]) and meta["scale"] == pytest.approx([149.0625, 198.75])
    assert meta["image_path"] == str(inst.image_path) and meta["num_keypoints"] == 17
    # The image is normalised with ImageNet statistics: the grey background is one value per channel.
    assert sample["image"][0, 0, 0] == pytest.approx((40 / 255 - 0.485) / 0.229, abs=1e-5)


@pytest.mark.parametrize("codec", [UDPHeatmap(INPUT, HEATMAP), MSRAHeatmap(INPUT, HEATMAP, unbiased=True, dark=True)])
def test_targets_and_keypoints_agree_with_the_picture(person, codec):
    skeleton, inst = person
    aug = AugmentConfig(flip=0.5, half_body=0.0, rot_prob=1.0)
    dataset = make(skeleton, inst, codec=codec, train=True, aug=aug)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        keypoints, weight = sample["keypoints"], sample["target_weight"] > 0
        coords, _ = codec.decode(sample["heatmaps"][None])
        # Away from the border (where a clipped Gaussian decodes to the edge) the target peaks at the keypoint.
        inner = weight & np.all((keypoints[:, :2] > 20) & (keypoints[:, :2] < np.array(INPUT) - 21), axis=1)
        assert inner.sum() >= 3
        assert np.abs(coords[0][inner] - keypoints[inner, :2]).max() < 0.3
        # Each labelled keypoint sits on its dot in the crop: left ones green, right ones red; in a mirrored
        # crop the channels are swapped, so "left" sits on the red dot (the mirrored right limb).
        green, red = (1, 0) if not sample["meta"]["flipped"] else (0, 1)
        rgb = sample["image"].transpose(1, 2, 0) * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])
        for k in np.flatnonzero(weight):
            x, y = np.round(keypoints[k, :2]).astype(int)
            if not (2 <= x < INPUT[0] - 2 and 2 <= y < INPUT[1] - 2):
                continue
            pixel = rgb[y, x]
            name = skeleton.keypoints[k]
            if name.startswith("left"):
                assert pixel[green] > 0.6 and pixel[red] < 0.4, (epoch, name)
            elif name.startswith("right"):
                assert pixel[red] > 0.6 and pixel[green] < 0.4, (epoch, name)


def test_flip_mirrors_the_crop_and_swaps_left_right(person):
    skeleton, inst = person
    plain = make(skeleton, inst, train=True, aug=NO_AUG)[0]
    flipped = make(skeleton, inst, train=True, aug=AugmentConfig(flip=1.0, half_body=0.0, scale_factor=0.0,
                                                                  rot_prob=0.0, center_jitter_prob=0.0))[0]
    assert flipped["meta"]["flipped"] and not plain["meta"]["flipped"]
    assert np.allclose(flipped["image"], plain["image"][..., ::-1], atol=1e-4)
    left, right = skeleton.index("left_wrist"), skeleton.index("right_wrist")
    assert flipped["keypoints"][left, 0] == pytest.approx(INPUT[0] - 1 - plain["keypoints"][right, 0], abs=1e-3)
    assert flipped["keypoints"][left, 1] == pytest.approx(plain["keypoints"][right, 1], abs=1e-3)
    assert flipped["target_weight"][4] == 0 and plain["target_weight"][3] == 0    # the unlabelled ear swapped too


def test_augmentation_depends_only_on_seed_epoch_index(person):
    skeleton, inst = person
    a = make(skeleton, inst, train=True, aug=AugmentConfig())
    b = make(skeleton, inst, train=True, aug=AugmentConfig())
    np.random.seed(123)          # global RNG state must not matter
    first = a[0]
    assert np.array_equal(first["image"], b[0]["image"])
    crops = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        meta = a[0]["meta"]
        crops.add((round(float(meta["scale"][0]), 3), meta["rotation"], meta["flipped"]))
    assert len(crops) == 6
    a.set_epoch(0)
    assert np.array_equal(a[0]["heatmaps"], first["heatmaps"])
    other_seed = make(skeleton, inst, train=True, aug=AugmentConfig(), seed=1)
    assert not np.array_equal(other_seed[0]["image"], first["image"])


def test_half_body_splits_by_height_in_the_box():
    keypoints = coco_person()
    bbox = np.array([60, 40, 80, 160], np.float32)
    chosen = set()
    for seed in range(20):
        points = half_body_joints(keypoints, bbox, np.random.default_rng(seed))
        chosen.add(tuple(sorted(map(tuple, points.tolist()))))
    upper = tuple(sorted(map(tuple, keypoints[[0, 1, 2, 4, 5, 6, 7, 8], :2].tolist())))
    lower = tuple(sorted(map(tuple, keypoints[9:, :2].tolist())))     # hanging wrists are below the box centre
    assert chosen == {upper, lower}


def test_half_body_picks_the_upper_half_when_randn_is_below_half():
    # mmpose 0.x: np.random.randn() < 0.5, i.e. P(upper) = Phi(0.5) = 0.6915 when both halves qualify.
    keypoints = coco_person()
    bbox = np.array([60, 40, 80, 160], np.float32)
    upper = 0
    for seed in range(4000):
        points = half_body_joints(keypoints, bbox, np.random.default_rng(seed))
        upper += int(points[:, 1].max() < 120)
    assert upper / 4000 == pytest.approx(0.6915, abs=0.025)


def test_half_body_crop_is_centred_on_the_mean_of_the_joints():
    points = np.array([[0, 0], [10, 0], [10, 40], [0, 4]], np.float32)
    center, scale = center_scale_of_points(points, aspect_ratio=0.75, padding=1.5)
    # mean (5, 11) - not the box centre (5, 20); box 10 x 40 -> w = 30, scale = (30, 40) x 1.5
    assert center.tolist() == [5.0, 11.0] and scale.tolist() == [45.0, 60.0]


def test_clean_box_as_mmpose():
    assert clean_box([60, 40, 80, 160], 320, 240) == [60, 40, 79, 159]
    assert clean_box([-5, 10, 50, 300], 320, 240) == [0, 10, 49, 229]  # clipped to x >= 0, y2 <= H - 1 = 239
    assert clean_box([300, 10, 50, 20], 320, 240) == [300, 10, 19, 19]  # x2 = min(319, 349)
    assert clean_box([60, 40, 80, 160]) == [60, 40, 79, 159]  # no image size: only the 1 px
    assert clean_box([5, 5, 0.5, 10], 320, 240) == [5, 5, 0.5, 10]  # mmpose drops it; we keep it raw


def test_half_body_crop_zooms_in(person):
    skeleton, inst = person
    aug = AugmentConfig(flip=0.0, half_body=1.0, scale_factor=0.0, rot_prob=0.0, center_jitter_prob=0.0)
    sample = make(skeleton, inst, train=True, aug=aug)[0]
    assert sample["meta"]["scale"][1] < 200 * 0.8


def test_keypoints_outside_the_crop_get_zero_weight(person):
    skeleton, inst = person
    inst.keypoints[16] = [300, 230, 2]          # far outside the padded box
    sample = make(skeleton, inst)[0]
    assert sample["target_weight"][16] == 0 and sample["keypoints"][16, 2] == 2


def test_unreadable_image_names_the_file(person, tmp_path):
    skeleton, inst = person
    inst.image_path = tmp_path / "missing.jpg"
    with pytest.raises(PosebhError, match=r"missing\.jpg: record annotation id=70: field 'file_name'"):
        make(skeleton, inst)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inst.image_path = broken
    with pytest.raises(PosebhError, match="broken.jpg"):
        make(skeleton, inst)[0]


def test_bad_records_fail_at_construction(person):
    skeleton, inst = person
    inst.bbox = np.array([10, 10, 0, 0], np.float32)
    with pytest.raises(PosebhError, match=r"record annotation id=70: field 'bbox'"):
        make(skeleton, inst)
    inst.bbox = np.array([10, 10, 5, 5], np.float32)
    inst.keypoints = inst.keypoints[:16]
    with pytest.raises(PosebhError, match=r"field 'keypoints': expected \[17, 3\]"):
        make(skeleton, inst)


def test_collate_mixes_skeletons(person):
    skeleton, inst = person
    hand = load_skeleton("interhand")
    hand_inst = Instance(inst.image_path, 8, 80, np.array([60, 40, 80, 160], np.float32),
                     np.concatenate([np.random.default_rng(0).uniform(70, 130, (21, 2)), np.ones((21, 1))], 1))
    coco = make(skeleton, inst)
    hands = TopDownDataset([hand_inst], hand, MSRAHeatmap(INPUT, HEATMAP), train=True, dataset_idx=4,
                           input_size=INPUT, aug=NO_AUG)
    batch = collate([coco[0], hands[0]])
    assert batch["images"].shape == (2, 3, 128, 96)
    assert batch["heatmaps"].shape == (2, 21, 32, 24) and batch["target_weight"].shape == (2, 21)
    assert batch["keypoints"].shape == (2, 21, 3)
    assert batch["dataset_idx"].tolist() == [2, 4] and batch["dataset_idx"].dtype == torch.long
    assert torch.all(batch["heatmaps"][0, 17:] == 0) and batch["target_weight"][1].sum() > 0
    assert [m["ann_id"] for m in batch["meta"]] == [70, 80]
    loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset([coco, hands]), batch_size=2,
                                         collate_fn=collate)
    assert next(iter(loader))["heatmaps"].shape == (2, 21, 32, 24)


def test_reads_a_prepared_split(person, tmp_path):
    skeleton, inst = person
    coco = {
        "images": [{"id": 7, "file_name": inst.image_path.name, "width": 320, "height": 240}],
        "annotations": [{"id": 70, "image_id": 7, "category_id": 1, "keypoints": inst.keypoints.reshape(-1).tolist(),
                         "num_keypoints": 16, "bbox": inst.bbox.tolist(), "area": 12800.0, "iscrowd": 0}],
    }
    root = write_prepared(tmp_path / "prepared", "toy", "coco", "coco", inst.image_path.parent, {"train": coco},
                          {"train": {"images": 1, "annotations": 1}})
    prepared = open_prepared(root)
    dataset = TopDownDataset(prepared.instances("train"), prepared.skeleton, UDPHeatmap(INPUT, HEATMAP), train=False,
                             dataset_idx=0, input_size=INPUT)
    sample = dataset[0]
    reference = make(skeleton, inst)[0]
    assert np.array_equal(sample["image"], reference["image"])
    assert np.allclose(sample["keypoints"], reference["keypoints"])
