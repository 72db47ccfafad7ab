"""Transfer to new skeletons on tiny prepared sets: fit-prototypes output, transfer init, end-to-end runs, recipes."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.data.prepared import write_prepared
from posebh_cli.methods import load_recipe
from posebh_cli.recipe import recipe_from_dict
from posebh_cli.commands.transfer import finetune_transfer, fit_prototypes_run, transfer_recipe, transfer_run
from posebh_cli.models.transfer import init_transfer
from posebh_cli.errors import PosebhError
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.inference.predictor import Predictor
from posebh_cli.models.checkpoint import load_model, save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import Skeleton, load_skeleton

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "posebh_cli" / "recipes").glob("*transfer-*.yaml"))
SIZE = [32, 32]  # model input of every tiny run here


def make_prepared(root: Path, name: str, skeleton, source_format: str, held_out: str, num_images: int = 3) -> Path:
    """Noise images with two instances each; train and one held-out split (val or test)."""
    sk = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
    rng = np.random.default_rng(len(name))
    images_dir = root / f"{name}-images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for i in range(num_images):
        cv2.imwrite(str(images_dir / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for j in range(2):
            x, y = 4 + 30 * j, 6
            k = sk.num_keypoints
            points = np.stack([rng.uniform(x, x + 24, k), rng.uniform(y, y + 50, k), np.full(k, 2.0)], 1)
            box = [x, y, 24.0, 50.0]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "keypoints": points.round(2).reshape(-1).tolist(), "num_keypoints": k,
                                "bbox": box, "tight_bbox": box, "area": 1200.0, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": name}]}
    counts = {"images": len(images), "annotations": len(annotations)}
    return write_prepared(root / name, name, sk, source_format, str(images_dir.resolve()),
                          {"train": coco, held_out: coco}, {"train": counts, held_out: counts})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two tiny targets (3dpw-like smpl24, interhand) and two random sources: PoseBH (coco+mpii experts), multi-head."""
    root = tmp_path_factory.mktemp("transfer")
    torch.manual_seed(0)
    skeletons = [load_skeleton("coco"), load_skeleton("mpii")]
    posebh = PoseModel("vit_pico", ["coco", "mpii"], skeletons, with_embedding=True, img_size=tuple(SIZE))
    multihead = PoseModel("vit_pico", ["coco", "mpii"], skeletons, img_size=tuple(SIZE))
    return {
        "root": root,
        "3dpw": make_prepared(root, "3dpw", "smpl24", "3dpw", "test"),
        "interhand": make_prepared(root, "interhand", "interhand", "interhand", "val"),
        "posebh": save_checkpoint(posebh, root / "src-posebh"),
        "multihead": save_checkpoint(multihead, root / "src-multihead"),
    }


@pytest.fixture(scope="module")
def fitted(world):
    """fit-prototypes of the 3dpw-like set into the PoseBH source split to coco."""
    out, _ = fit_prototypes_run(world["posebh"], world["3dpw"], out=world["root"] / "fit-coco", epochs=1,
                                batch_size=8, progress=False)
    return out


def _fit(world, out, **kw):
    return fit_prototypes_run(world["posebh"], world["3dpw"], out=out, batch_size=8, progress=False, **kw)


# ------------------------------------------------------------------ fit-prototypes
def test_fit_prototypes_writes_a_checkpoint_that_predicts_the_new_skeleton(world, tmp_path):
    out, metrics = _fit(world, tmp_path / "fit", expert="mpii", epochs=2)
    assert "AP" in metrics and 0.0 <= metrics["AP"] <= 1.0
    model = load_model(out)
    assert model.datasets == ["mpii"] and model.backbone.num_experts == 0  # split to the chosen expert
    assert [(n, s.name) for n, s in model.prototype_only] == [("3dpw", "smpl24")]
    assert model.prototypes.prototypes.shape == (16 + 24, 3, 64)
    source = load_model(world["posebh"])
    assert torch.equal(model.prototypes.prototypes[:16], source.prototypes.prototypes[17:33])  # mpii rows kept
    assert torch.equal(model.backbone.blocks[0].mlp.fc2.weight, source.split("mpii").backbone.blocks[0].mlp.fc2.weight)
    fit = json.loads((out / "fit.json").read_text())
    assert fit["expert"] == "mpii" and fit["val_split"] == "test" and fit["box_padding"] == 1.25
    assert len(fit["pixels_per_keypoint"]) == 24 and min(fit["pixels_per_keypoint"]) > 0
    # the checkpoint predicts the new skeleton from its prototypes, through the ordinary predictor and evaluation
    predictor = Predictor(out, dataset="3dpw", source="prototypes", flip=False)
    image = cv2.imread(str(world["root"] / "3dpw-images" / "0.png"))[:, :, ::-1]
    found = predictor.predict([image], [[[4, 6, 24, 50]]])
    assert found[0][0]["keypoints"].shape == (24, 3)
    assert evaluate_model(load_model(out), world["3dpw"], "test", "3dpw", source="prototypes").keys() == metrics.keys()
    with pytest.raises(PosebhError, match="already exists"):
        _fit(world, out)


def test_fit_prototypes_picks_coco_and_interhand_padding(world, tmp_path):
    out, metrics = fit_prototypes_run(world["posebh"], world["interhand"], out=tmp_path / "fit", max_images=1,
                                      algorithm="kmeans", epochs=1, progress=False)
    fit = json.loads((out / "fit.json").read_text())
    assert fit["expert"] == "coco" and fit["box_padding"] == 1.0 and fit["images"] == 1
    assert {"PCK@0.2", "AUC", "EPE"} <= set(metrics)  # the InterHand protocol, chosen by skeleton


def test_fit_prototypes_errors(world, tmp_path):
    with pytest.raises(PosebhError, match="no keypoint embedding"):
        fit_prototypes_run(world["multihead"], world["3dpw"], out=tmp_path / "a", progress=False)
    with pytest.raises(PosebhError, match="no dataset 'aic'"):
        _fit(world, tmp_path / "b", expert="aic")
    with pytest.raises(PosebhError, match="no split 'val'"):
        _fit(world, tmp_path / "c", split="val")
    with pytest.raises(PosebhError, match="algorithm"):
        _fit(world, tmp_path / "d", algorithm="em")
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_fit_prototypes_cli_prints_metrics_and_one_line_errors(world, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["fit-prototypes", "--checkpoint", str(world["posebh"]), "--data", str(world["3dpw"]),
                             "--out", str(tmp_path / "fit"), "--epochs", "1", "--max-images", "2"])
    assert ok.exit_code == 0, ok.output
    assert "AP" in ok.output and (tmp_path / "fit" / "model.safetensors").is_file()
    bad = runner.invoke(app, ["fit-prototypes", "--checkpoint", str(world["multihead"]), "--data",
                              str(world["3dpw"]), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no keypoint embedding" in bad.output


def _hand5(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A user skeleton YAML (5 hand points) and a prepared dataset annotated with it."""
    hand = load_skeleton("interhand")
    names = ("wrist", "thumb4", "forefinger4", "middle_finger4", "pinky_finger4")
    data = {"name": "hand5", "body_plan": "hand", "keypoints": list(names), "flip_pairs": [],
            "sigmas": [hand.sigmas[hand.index(n)] for n in names], "links": [["wrist", n] for n in names[1:]]}
    (tmp_path / "hand5.yaml").write_text(yaml.safe_dump(data))
    return make_prepared(tmp_path, "hand5", load_skeleton(tmp_path / "hand5.yaml"), "coco", "val"), names


def test_user_skeleton_subset(world, tmp_path):
    """Any skeleton YAML + prepared dataset transfers, not only the named targets: a 5-point hand subset."""
    prepared, names = _hand5(tmp_path)
    out, metrics = fit_prototypes_run(world["posebh"], prepared, out=tmp_path / "fit", epochs=1, progress=False)
    assert "AP" in metrics and load_model(out).prototype_only[0][1].keypoints == names


@pytest.mark.slow
def test_user_skeleton_subset_finetunes(world, tmp_path):
    prepared, names = _hand5(tmp_path)
    recipe = _tiny_recipe(tmp_path, "posebh", "hand5", prepared, "val", world["posebh"])
    run, val = finetune_transfer(recipe, out=tmp_path / "run")
    assert "AP" in val and load_model(run).skeletons[0].keypoints == names


# ------------------------------------------------------------------ transfer init
def test_init_transfer_copies_expert_backbone_embedding_and_head_deconvs(world, fitted):
    fit = fitted
    target = PoseModel("vit_pico", ["3dpw"], [load_skeleton("smpl24")], with_embedding=True, img_size=tuple(SIZE))
    final_before = target.heads[0].final_layer.weight.detach().clone()
    summary = init_transfer(target, fit, expert="coco")
    assert summary["expert"] == "coco" and summary["prototypes"] == "from source"
    plain = load_model(world["posebh"]).split("coco")
    for key in ("backbone.blocks.1.mlp.fc2.weight", "backbone.pos_embed", "embedding.head.3.weight",
                "heads.0.deconv_layers.0.weight", "heads.0.deconv_layers.1.running_var"):
        assert torch.equal(target.state_dict()[key], plain.state_dict()[key]), key
    assert torch.equal(target.heads[0].final_layer.weight, final_before)  # final layer stays new
    assert torch.equal(target.prototypes.prototypes, load_model(fit).prototypes.prototypes[17:])

    random_start = PoseModel("vit_pico", ["3dpw"], [load_skeleton("smpl24")], with_embedding=True,
                             img_size=tuple(SIZE))
    assert init_transfer(random_start, world["posebh"])["prototypes"] == "random"  # as released: random rows
    with pytest.raises(PosebhError, match="no keypoint embedding"):
        init_transfer(random_start, world["multihead"])
    other_size = PoseModel("vit_pico", ["3dpw"], [load_skeleton("smpl24")], img_size=(64, 48))
    init_transfer(other_size, world["multihead"])  # another input size: the position table is interpolated
    wrong = PoseModel("vit_small", ["3dpw"], [load_skeleton("smpl24")], img_size=(64, 48))
    with pytest.raises(PosebhError, match="does not fit"):
        init_transfer(wrong, world["multihead"])


# ------------------------------------------------------------------ end to end
def _tiny_overrides(world, target: str, protocol: str) -> list[str]:
    source = world["posebh"] if protocol == "posebh" else world["multihead"]
    return [f"datasets.0.path={world[target]}", f"model.img_size={SIZE}", f"model.init.path={source}",
            "train.batch_size=4", "train.val_max_images=2", "train.warmup_iters=1", "train.checkpoint_every_epochs=0",
            "train.log_every_steps=1"]


def _tiny_recipe(tmp_path, method, name, data, held_out, init) -> Path:
    trainable = ["heads"] if method == "posebh" else ["backbone", "heads"]
    losses = ["heatmap", "proto", "proto_heatmap"] if method == "posebh" else ["heatmap"]
    recipe = {"name": "tiny-transfer", "method": method,
              "model": {"arch": "vit_pico", "img_size": SIZE, "init": {"kind": "transfer", "path": str(init)}},
              "datasets": [{"name": name, "path": str(data), "val_split": held_out}],
              "train": {"batch_size": 4, "epochs": 1, "lr": 1e-3, "optimizer": "adam", "warmup_iters": 1},
              "stages": [{"name": "one", "epochs": [0, 1], "trainable": trainable, "losses": losses,
                          "prototypes": "update" if method == "posebh" else "frozen"}]}
    path = tmp_path / "tiny-transfer.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("target,protocol", [("3dpw", "posebh"), ("interhand", "baseline"),
                                             pytest.param("3dpw", "baseline", marks=pytest.mark.slow),
                                             pytest.param("interhand", "posebh", marks=pytest.mark.slow)])
def test_transfer_runs_end_to_end(world, tmp_path, target, protocol):
    """The zoo recipes' full stage schedules (4 one-step epochs here), with the fit first for PoseBH."""
    out = tmp_path / "run"
    run, metrics = transfer_run(target, protocol=protocol, zoo=True, out=out,
                                overrides=_tiny_overrides(world, target, protocol))
    main = "AP" if target == "3dpw" else "AUC"
    assert run == out and main in metrics
    model = load_model(run)
    assert model.datasets == [target] and model.with_embedding == (protocol == "posebh")
    assert (run / "fit" / "fit.json").is_file() == (protocol == "posebh")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["model"]["init"]["kind"] == "transfer"
    stages = [json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "stage" in json.loads(line)]
    assert len(set(stages)) == len(recipe["stages"])  # every stage of the schedule ran
    if protocol == "posebh":
        start = PoseModel("vit_pico", [target], [model.skeletons[0]], with_embedding=True, img_size=tuple(SIZE))
        assert init_transfer(start, run / "fit")["prototypes"] == "from source"  # the run started from the fit
        for key, value in start.state_dict().items():
            if key.startswith("embedding.") and "running" not in key and "num_batches" not in key:
                assert torch.equal(model.state_dict()[key], value), key  # frozen for the whole run
        assert not torch.equal(model.heads[0].final_layer.weight, start.heads[0].final_layer.weight)


# ------------------------------------------------------------------ recipes
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_transfer_recipes_follow_the_protocol(path):
    recipe = load_recipe(path, check_paths=False)
    assert recipe.model.init.kind == "transfer" and recipe.model.init.expert == "coco"
    assert recipe.train.optimizer == "adam" and len(recipe.datasets) == 1
    spec = recipe.datasets[0]
    assert spec.codec == "msra"
    assert spec.box_padding == (1.0 if "interhand" in path.stem else 1.25)
    if recipe.method == "posebh":
        assert all("embedding" not in s.trainable for s in recipe.stages)
        assert all("css" not in s.losses and "cluster" not in s.losses for s in recipe.stages)
        modes = [s.prototypes for s in recipe.stages]
        assert modes[0] == "update" and modes[-1] == "frozen" and modes == sorted(modes, reverse=True)
        assert "backbone" not in recipe.stages[0].trainable and "backbone" in recipe.stages[-2].trainable
    else:
        assert all(set(s.trainable) == {"backbone", "heads"} for s in recipe.stages)
    if path.stem == "transfer-3dpw":  # the backbone trains only during epoch 15, at 1e-6
        thawed = [s for s in recipe.stages if "backbone" in s.trainable]
        assert [(s.epochs, s.lr) for s in thawed] == [((15, 16), 1e-6)]
    if path.stem == "transfer-interhand":
        assert recipe.train.epochs == 60 and recipe.train.lr == 5e-4 and recipe.stages[0].epochs == (0, 30)


def test_transfer_recipe():
    assert transfer_recipe("3dpw").name == "transfer-3dpw.yaml"
    assert transfer_recipe("interhand", "baseline", zoo=True).name == "zoo-transfer-interhand-baseline.yaml"
    with pytest.raises(PosebhError, match="neither"):
        transfer_recipe("lsp")
    with pytest.raises(PosebhError, match="--protocol"):
        transfer_recipe("3dpw", "vitpose")


def _raw(**model_init):
    return {"name": "x", "method": "posebh", "model": {"arch": "vit_pico", "init": model_init},
            "datasets": [{"name": "a", "path": "nowhere"}], "train": {"batch_size": 1, "epochs": 1, "lr": 1e-3}}


def test_recipe_validation_errors(world, tmp_path):
    with pytest.raises(PosebhError, match="model.init.path"):
        recipe_from_dict(_raw(kind="transfer"), "r.yaml", check_paths=False)
    with pytest.raises(PosebhError, match="model.init.expert"):
        recipe_from_dict(_raw(kind="ours", path="p", expert="coco"), "r.yaml", check_paths=False)
    bad_padding = _raw(kind="none")
    bad_padding["datasets"][0]["box_padding"] = 0
    with pytest.raises(PosebhError, match=r"datasets\[0\].box_padding"):
        recipe_from_dict(bad_padding, "r.yaml", check_paths=False)
    recipe = _tiny_recipe(tmp_path, "posebh", "3dpw", world["3dpw"], "test", world["posebh"])
    with pytest.raises(PosebhError, match="model.init.kind"):
        finetune_transfer(recipe, out=tmp_path / "a", overrides=["model.init.kind=none", "model.init.path=null"])
    two = [{"name": name, "path": str(world["3dpw"])} for name in ("a", "b")]
    with pytest.raises(PosebhError, match="one target dataset"):
        finetune_transfer(recipe, out=tmp_path / "b", overrides=[f"datasets={json.dumps(two)}"])
    runner = CliRunner()
    result = runner.invoke(app, ["finetune-transfer", "--recipe", str(recipe), "--set", "model.init.expert=aic",
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "no dataset 'aic'" in result.output
