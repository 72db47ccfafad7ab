"""Multi-teacher distillation pieces on tiny tensors: KD, decay, weights, teachers mapped into the union."""
import pytest
import torch

from posebh_cli.errors import PosebhError
from posebh_cli.methods.distill import DistillConfig, kd_decay, kd_loss, load_teacher, teacher_heatmaps
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton

UNION = load_skeleton("coco_mpii21")


def _teacher_checkpoint(folder, skeleton: str, img_size=(32, 32), names=None):
    torch.manual_seed(0)
    names = names or [skeleton]
    model = PoseModel("vit_pico", names, [load_skeleton(skeleton)] * len(names), img_size=img_size)
    save_checkpoint(model, folder)
    return folder


def test_kd_is_zero_for_equal_maps_and_positive_otherwise():
    teacher = torch.rand(2, 3, 8, 6)
    assert kd_loss(teacher.clone(), teacher, beta=10.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.rand(2, 3, 8, 6)
    assert kd_loss(other, teacher, beta=10.0).item() > 0
    # KL(p_t || p_s) of one channel by hand
    p_t = torch.softmax(teacher[0, 0].flatten() * 10, 0)
    p_s = torch.softmax(other[0, 0].flatten() * 10, 0)
    by_hand = (p_t * (p_t.log() - p_s.log())).sum()
    assert kd_loss(other[:1, :1], teacher[:1, :1], beta=10.0).item() == pytest.approx(by_hand.item(), rel=1e-4)


def test_kd_touches_only_the_teachers_channels(tmp_path):
    teacher = load_teacher("mpii", str(_teacher_checkpoint(tmp_path / "t", "mpii")), UNION, None, 0.45,
                           torch.device("cpu"))
    images = torch.randn(2, 3, 32, 32)
    target = teacher_heatmaps(teacher, images, (8, 8))
    student = torch.rand(2, 21, 8, 8, requires_grad=True)
    kd_loss(student[:, teacher.channels], target, beta=10.0).backward()
    touched = student.grad.abs().sum(dim=(0, 2, 3)) > 0
    mpii_names = set(load_skeleton("mpii").keypoints)
    assert [bool(t) for t in touched] == [name in mpii_names for name in UNION.keypoints]
    same = torch.rand(2, 21, 8, 8)
    same[:, teacher.channels] = target
    assert kd_loss(same[:, teacher.channels], target, beta=10.0).item() == pytest.approx(0.0, abs=1e-6)
    assert all(p.requires_grad is False for p in teacher.model.parameters()) and not teacher.model.training


def test_teacher_maps_are_resampled_to_the_student_grid(tmp_path):
    path = _teacher_checkpoint(tmp_path / "t", "coco", img_size=(64, 48))
    teacher = load_teacher("coco", str(path), UNION, None, 0.25, torch.device("cpu"))
    assert teacher.channels == list(range(17))
    assert teacher_heatmaps(teacher, torch.randn(1, 3, 32, 32), (8, 8)).shape == (1, 17, 8, 8)


def test_teacher_whose_skeleton_does_not_map_is_refused(tmp_path):
    path = _teacher_checkpoint(tmp_path / "t", "aic")
    with pytest.raises(PosebhError, match=r"teacher 'mpii' .*keypoint 'neck'"):
        load_teacher("mpii", str(path), UNION, None, 0.45, torch.device("cpu"))
    mapped = load_teacher("mpii", str(path), UNION, {"aic": {"neck": "upper_neck"}}, 0.45, torch.device("cpu"))
    assert mapped.channels[load_skeleton("aic").index("neck")] == UNION.index("upper_neck")
    several = _teacher_checkpoint(tmp_path / "multi", "coco", names=["a", "b"])
    with pytest.raises(PosebhError, match="several heads"):
        load_teacher("coco", str(several), UNION, None, 0.3, torch.device("cpu"))


def test_decay_and_weights():
    assert [kd_decay(e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    equal = DistillConfig.from_dict({"teachers": {"coco": "a", "mpii": "b"}}, ["coco", "mpii"])
    assert equal.gt_weight == 0.3 and equal.weight_of("coco") == pytest.approx(0.35)
    explicit = DistillConfig.from_dict({"teachers": {"coco": "a", "mpii": "b"},
                                        "teacher_weights": {"coco": 0.25, "mpii": 0.45}}, ["coco", "mpii"])
    assert (explicit.weight_of("coco"), explicit.weight_of("mpii")) == (0.25, 0.45)


@pytest.mark.parametrize("config, message", [
    ({}, "method_config.teachers"),
    ({"teachers": {"aic": "x"}}, "method_config.teachers.aic"),
    ({"teachers": {"coco": "x"}, "teacher_weights": {"mpii": 1.0}}, "method_config.teacher_weights"),
    ({"teachers": {"coco": "x"}, "beta": 0}, "method_config.beta"),
    ({"teachers": {"coco": "x"}, "decay": "cosine"}, "method_config.decay"),
    ({"teachers": {"coco": "x"}, "temperature": 1}, "method_config.temperature"),
])
def test_config_errors_name_the_key(config, message):
    with pytest.raises(PosebhError, match=message):
        DistillConfig.from_dict(config, ["coco", "mpii"])



@pytest.mark.parametrize("name", ["zoo-pico-distill", "vitb-distill", "zoo-bench-distill"])
def test_distill_recipes_load(name):
    from pathlib import Path

    from posebh_cli.methods import load_recipe
    from posebh_cli.skeletons.union import channel_map

    recipe = load_recipe(Path(__file__).parents[2] / "posebh_cli" / "recipes" / f"{name}.yaml", check_paths=False)
    config = DistillConfig.from_dict(recipe.method_config, [d.name for d in recipe.datasets])
    assert load_skeleton(config.union) == UNION and set(config.teachers) == {"coco", "mpii"}
    assert config.gt_weight + sum(config.weight_of(t) for t in config.teachers) == pytest.approx(1.0)
    assert len({(d.codec, d.sigma) for d in recipe.datasets}) == 1  # one union head, one codec
    for d in recipe.datasets:
        channel_map(load_skeleton(d.name), UNION)


def test_a_union_head_predicts_dataset_skeletons_by_keypoint_name():
    from posebh_cli.inference.predictor import resolve_target

    student = PoseModel("vit_pico", ["coco_mpii21"], [UNION], img_size=(32, 32))
    coco = resolve_target(student, "coco")
    assert coco.skeleton.name == "coco" and coco.channels == list(range(17)) and coco.dataset_idx == 0
    mpii = resolve_target(student, skeleton=load_skeleton("mpii"))
    assert [UNION.keypoints[c] for c in mpii.channels] == list(load_skeleton("mpii").keypoints)
    assert resolve_target(student, skeleton="coco_mpii21").channels is None  # the head itself
    with pytest.raises(PosebhError, match="no dataset or skeleton 'ap10k'"):
        resolve_target(student, "ap10k")
