"""A short `method: distill` run on a tiny synthetic zoo: union student, two frozen teachers, zoo scoring."""
import json

import pytest
import torch
import yaml

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.synth import synth_zoo
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.errors import PosebhError
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.inference.zoo import score_extra_points
from posebh_cli.models.checkpoint import load_model, save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Prepared COCO and MPII zoo datasets and untrained vit_pico teachers (one two-head, one AIC)."""
    root = tmp_path_factory.mktemp("zoo")
    synth_zoo(root / "raw", sizes={"coco": 6, "mpii": 6}, image_size=(96, 96), datasets=["coco", "mpii"],
              workers=1, progress=False)
    for name in ("coco", "mpii"):
        prepare_dataset(name, root / "raw" / name, root / "prepared" / name)
    torch.manual_seed(0)
    two = PoseModel("vit_pico", ["coco", "mpii"], [load_skeleton("coco"), load_skeleton("mpii")], img_size=(32, 32))
    save_checkpoint(two, root / "teachers")
    save_checkpoint(PoseModel("vit_pico", ["aic"], [load_skeleton("aic")], img_size=(32, 32)), root / "aic")
    return root


def _recipe(root, name, method_config):
    recipe = {"name": name, "method": "distill",
              "model": {"arch": "vit_pico", "img_size": [32, 32], "init": {"kind": "none"}},
              "datasets": [{"name": d, "path": str(root / "prepared" / d), "codec": "udp", "half_body": False}
                           for d in ("coco", "mpii")],
              "train": {"batch_size": 4, "epochs": 2, "lr": 1e-3, "warmup_iters": 1, "num_workers": 0,
                        "val_every_epochs": 0, "checkpoint_every_epochs": 0, "log_every_steps": 1},
              "stages": [{"name": "all", "epochs": [0, 2], "losses": ["heatmap", "kd"]}],
              "method_config": method_config}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_distill_trains_a_union_student_and_scores_its_extra_points(zoo):
    teachers = {"coco": str(zoo / "teachers"), "mpii": str(zoo / "teachers")}
    config = {"union": "coco_mpii21", "teachers": teachers, "teacher_weights": {"coco": 0.25, "mpii": 0.45}}
    run = train_mdt(_recipe(zoo, "kd", config), out=zoo / "kd", max_steps=1)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["kd/coco"] > 0 and r["kd/mpii"] > 0 for r in records)
    assert any(k.startswith("heatmap/") for k in records[0])
    student = load_model(run)
    assert student.datasets == ["coco_mpii21"] and student.skeletons[0].num_keypoints == 21
    assert student.backbone.num_experts == 0
    metrics = score_extra_points(student, zoo / "prepared" / "coco", "val", device="cpu")
    assert 0.0 <= metrics["AP"] <= 1.0 and "AR" in metrics
    # the union head is scored on each dataset's own skeleton through the channels of the same names
    assert "AP" in evaluate_model(student, zoo / "prepared" / "coco", "val", "coco", device="cpu")
    assert "PCKh" in evaluate_model(student, zoo / "prepared" / "mpii", "val", None, device="cpu")


def test_distill_refuses_a_teacher_outside_the_union(zoo):
    config = {"union": "coco_mpii21", "teachers": {"mpii": str(zoo / "aic")}}
    with pytest.raises(PosebhError, match="teacher 'mpii'.*keypoint 'neck'"):
        train_mdt(_recipe(zoo, "kd_bad", config), out=zoo / "kd_bad", max_steps=1)
    assert not (zoo / "kd_bad" / "model.safetensors").exists()
