"""Freezing per stage on a real (tiny) PoseModel; frozen modules stay in train mode."""
from posebh_cli.recipe import StageSpec
from posebh_cli.engine.stages import apply_stage, group_of
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def _trainable(model):
    groups = {}
    for name, p in model.named_parameters():
        groups.setdefault(group_of(name), set()).add(p.requires_grad)
    return groups


def test_paper_stages_freeze_the_right_groups():
    model = PoseModel("vit_pico", ["coco", "mpii"], [load_skeleton("coco"), load_skeleton("mpii")],
                      with_embedding=True, img_size=(64, 48))
    assert set(_trainable(model)) == {"backbone", "heads", "embedding"}  # every parameter is in a group
    model.train()
    apply_stage(model, StageSpec("prototypes", (0, 50), 1e-3, trainable=("embedding",)))
    assert _trainable(model) == {"backbone": {False}, "heads": {False}, "embedding": {True}}
    apply_stage(model, StageSpec("heads", (50, 90), 1e-4, trainable=("embedding", "heads")))
    assert _trainable(model) == {"backbone": {False}, "heads": {True}, "embedding": {True}}
    apply_stage(model, StageSpec("all", (90, 100), 1e-5, trainable=("backbone", "heads", "embedding")))
    assert _trainable(model) == {"backbone": {True}, "heads": {True}, "embedding": {True}}
    assert model.prototypes.prototypes.requires_grad is False  # the bank never takes gradients
    assert all(m.training for m in model.modules())  # official semantics: frozen is not eval()
