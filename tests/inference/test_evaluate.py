import json

import numpy as np
import pytest
import skimage.data
import torch

from posebh_cli.data.prepared import write_prepared
from posebh_cli.errors import PosebhError
from posebh_cli.evaluation.coco_oks import STAT_NAMES
from posebh_cli.inference import io
from posebh_cli.inference.evaluate import evaluate_checkpoint, evaluate_model
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def _annotation(ann_id, image_id, box, num_keypoints, rng, head_box=False):
    x, y, w, h = box
    kpts = np.stack([rng.uniform(x, x + w, num_keypoints), rng.uniform(y, y + h, num_keypoints),
                     np.full(num_keypoints, 2)], axis=1)
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": kpts.reshape(-1).round(1).tolist(),
           "num_keypoints": num_keypoints, "bbox": list(box), "area": w * h, "iscrowd": 0}
    if head_box:
        ann["head_box"] = [x, y, x + w / 4, y + h / 4]
    return ann


def _prepared(root, name, skeleton, head_box=False):
    rng = np.random.default_rng(0)
    images_dir = root / f"{name}_images"
    images_dir.mkdir()
    io.write_image(images_dir / "a.jpg", skimage.data.astronaut()[::4, ::4])  # 128 x 128
    io.write_image(images_dir / "b.jpg", skimage.data.chelsea()[::3, ::3])    # 100 x 151
    k = load_skeleton(skeleton).num_keypoints
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 128, "height": 128},
                       {"id": 2, "file_name": "b.jpg", "width": 151, "height": 100}],
            "annotations": [_annotation(10, 1, (20, 10, 60, 100), k, rng, head_box),
                            _annotation(11, 2, (10, 10, 50, 60), k, rng, head_box),
                            _annotation(12, 2, (70, 20, 60, 70), k, rng, head_box)]}
    return write_prepared(root / name, name, skeleton, "coco", images_dir.resolve(), {"val": coco},
                          {"val": {"images": 2, "annotations": 3}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco", "mpii"], [load_skeleton("coco"), load_skeleton("mpii")],
                      img_size=(64, 48)).eval()
    return model, _prepared(root, "coco", "coco"), _prepared(root, "mpii", "mpii", head_box=True), root


def test_gt_boxes_give_the_protocol_metrics(setup):
    model, coco, mpii, _ = setup
    metrics = evaluate_model(model, coco, "val", "coco", batch_size=2)
    assert list(metrics) == list(STAT_NAMES)
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in metrics.values())
    pckh = evaluate_model(model, mpii, "val", None, flip=False, max_images=1)  # head picked by skeleton
    assert "PCKh" in pckh and 0.0 <= pckh["PCKh"] <= 1.0


def test_a_given_codec_decodes_instead_of_the_recipe_one(setup):
    from posebh_cli.data.codecs import MSRAHeatmap

    model, coco, _, _ = setup
    default, quarter, dark = [], [], []
    evaluate_model(model, coco, "val", "coco", flip=False, keep_results=default)     # the coco default: UDP
    quarter_codec, dark_codec = MSRAHeatmap((48, 64), (12, 16)), MSRAHeatmap((48, 64), (12, 16), dark=True)
    for codec, results in ((quarter_codec, quarter), (dark_codec, dark)):
        evaluate_model(model, coco, "val", "coco", flip=False, keep_results=results, codec=codec)

    def points(results):
        return np.array([r["keypoints"] for r in results])

    assert not np.allclose(points(quarter), points(default))
    assert not np.allclose(points(dark), points(quarter))


def test_detection_boxes_and_checkpoint_entry_point(setup):
    model, coco, _, root = setup
    dets = [{"image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 100], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 100], "score": 0.3},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 60], "score": 0.8}]
    path = root / "dets.json"
    path.write_text(json.dumps(dets))
    model.train()
    from_model = evaluate_model(model, coco, "val", "coco", boxes=dets)
    assert model.training, "the train/eval mode is restored"
    ckpt = save_checkpoint(model, root / "ckpt")
    from_file = evaluate_checkpoint(ckpt, coco, "val", boxes=path, device="cpu")
    assert from_model.keys() == from_file.keys() and np.isclose(from_model["AP"], from_file["AP"])
    with pytest.raises(PosebhError, match="annotated with 'coco'"):
        evaluate_model(model, coco, "val", "mpii")
