"""Issue #15 through the CLI, run in a temporary folder outside the repository with POSEBH_HOME in a temp dir:
recipes by name, named local models, `predict images/ --skeleton ap10k`, one set of options, predict <-> evaluate,
silent non-main ranks, umask-honouring outputs."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.models import store
from posebh_cli.models.checkpoint import load_model, save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton

sys.path.insert(0, str(Path(__file__).parent))
from cli_setup import make_model, make_photos  # noqa: E402

runner = CliRunner()


def posebh(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "run")


# ------------------------------------------------------------------ 1. recipes by name
@pytest.mark.parametrize("recipe", ["vitb.yaml", "vitb"])
def test_train_mdt_recipe_vitb_by_name_gets_to_the_data(work, recipe):
    code, out = posebh("train-mdt", "--recipe", recipe)
    assert code == 2
    assert "recipe file not found" not in out and "data/prepared/coco" in out


def test_every_recipe_command_takes_a_bundled_name(work, model_dir):
    code, out = posebh("finetune-transfer", "--recipe", "transfer-3dpw.yaml")
    assert code == 2 and "recipe file not found" not in out and "data/prepared/3dpw" in out
    code, out = posebh("fit-acae", "--checkpoint", model_dir, "--recipe", "vitb-multihead", "--out", "acae")
    assert code == 2 and "recipe file not found" not in out and "data/prepared/coco" in out
    code, out = posebh("train-mdt", "--recipe", "no-such-recipe")
    assert code == 2 and "not found, nor a bundled recipe" in out and "vitb" in out


# ------------------------------------------------------------------ 2. named local models
def test_no_model_says_which_file_to_place(work, tmp_path):
    make_photos(work / "images")
    code, out = posebh("predict", "images/", "--skeleton", "ap10k")
    assert code == 2
    line = " ".join(out.split())
    assert "vitpose+_base.pth" in line and "posebh models add vitpose-plus-base vitpose+_base.pth --default" in line


def test_models_add_list_default_and_names_everywhere(work, model_dir, tmp_path):
    code, out = posebh("models", "add", "mine", model_dir)
    assert code == 0 and "the default model" in out  # the first model becomes the default
    stored = tmp_path / "home" / "models" / "mine"
    assert (stored / "model.safetensors").is_file() and (stored / "model.json").is_file()
    # a lone .safetensors (metadata inside) and an official .pth (converted once)
    code, out = posebh("models", "add", "lone", model_dir / "model.safetensors")
    assert code == 0 and "the default model" not in out
    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from model_builders import official_state

    torch.save({"state_dict": official_state(192, 4, 48)}, tmp_path / "plus.pth")
    code, out = posebh("models", "add", "plus", tmp_path / "plus.pth")
    assert code == 0, out
    assert load_model(tmp_path / "home" / "models" / "plus").datasets[:4] == ["coco", "aic", "mpii", "ap10k"]
    code, out = posebh("models", "add", "mine", model_dir)
    assert code == 2 and "--force" in out
    code, out = posebh("models", "add", "../bad", model_dir)
    assert code == 2 and "model name" in out

    code, out = posebh("models", "list")
    assert code == 0 and "mine" in out and "(default)" in out and "lone" in out and "plus" in out
    assert store.default_name() == "mine"
    code, out = posebh("models", "default", "plus")
    assert code == 0 and store.default_name() == "plus"
    code, out = posebh("models", "default", "nope")
    assert code == 2 and "no model named 'nope'" in out

    # a name works wherever --checkpoint is taken
    code, out = posebh("export", "--checkpoint", "mine", "--dataset", "coco", "--format", "torchscript",
                       "--out", "coco.pt", "--device", "cpu")
    assert code == 0, out
    code, out = posebh("convert-checkpoint", "--checkpoint", "lone", "--out", "converted")
    assert code == 0 and (work / "converted" / "model.json").is_file()
    code, out = posebh("predict", "nothing.jpg", "--checkpoint", "no-such-model")
    assert code == 2 and "nor a model name" in out


def test_builtin_models_and_the_default(work, model_dir, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    (weights / "zoo-base").mkdir(parents=True)
    for name in ("model.safetensors", "model.json"):
        (weights / "zoo-base" / name).write_bytes((model_dir / name).read_bytes())
    (weights / "half").mkdir()  # a folder without model.json is no model
    monkeypatch.setattr(store, "BUILTIN_DIR", weights)
    assert store.default_name() == "zoo-base"  # the built-in zoo-base when the store has no default
    code, out = posebh("models", "list")
    assert code == 0 and "zoo-base" in out and "(default)" in out and "built-in" in out and "half" not in out
    make_photos(work / "images")
    code, out = posebh("predict", "images/", "--skeleton", "coco", "--device", "cpu")
    assert code == 0 and "head coco" in out


def test_package_data_ships_builtin_weights():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"weights/*/*"' in text


# ------------------------------------------------------------------ 3. predict images/ --skeleton ap10k
def test_predict_images_skeleton_ap10k_literally(work, model_dir):
    make_photos(work / "images")
    assert posebh("models", "add", "zoo", model_dir)[0] == 0
    code, out = posebh("predict", "images/", "--skeleton", "ap10k")
    assert code == 0, out
    assert "head ap10k (skeleton ap10k)" in out
    record = json.loads((work / "predictions" / "photo0.json").read_text())
    assert record["skeleton"] == "ap10k" and record["head"] == "ap10k"
    code, out = posebh("predict", "images/", "--skeleton", "ap10k", "--dataset", "coco")
    assert code == 2 and "give one of them" in out and len(out.strip().splitlines()) == 1


def test_predict_picks_a_prototype_skeleton_when_no_head_has_it(work, tmp_path):
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], with_embedding=True, img_size=(64, 48),
                      prototype_only=[("3dpw", load_skeleton("smpl24"))])
    save_checkpoint(model, tmp_path / "fitted")
    make_photos(work / "images")
    code, out = posebh("predict", "images/", "--skeleton", "smpl24", "--checkpoint", tmp_path / "fitted",
                       "--device", "cpu")
    assert code == 0, out
    assert "prototype heatmaps of 3dpw (skeleton smpl24)" in out
    code, out = posebh("predict", "images/", "--skeleton", "interhand", "--checkpoint", tmp_path / "fitted")
    assert code == 2 and "no head nor prototype skeleton 'interhand'" in out


# ------------------------------------------------------------------ 6. one set of options
COMPUTING = ["train-mdt", "transfer", "fit-prototypes", "finetune-transfer", "evaluate", "predict", "export",
             "quickstart", "fit-acae"]


def _help(command: str) -> str:
    code, out = posebh(command, "--help")
    assert code == 0
    return " ".join(out.replace("│", " ").split())


@pytest.mark.parametrize("command", COMPUTING)
def test_device_option_everywhere_with_one_help(command):
    assert "--device" in _help(command) and "default: cuda when available, else cpu" in _help(command)


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "convert-checkpoint", "fit-prototypes",
                                     "fit-acae", "transfer"])
def test_checkpoint_is_an_option_taking_a_name(command):
    text = _help(command)
    assert "--checkpoint" in text and ("Model name" in text or "a name or a path" in text)


def test_out_everywhere_and_version(work):
    for command in ("evaluate", "predict", "export", "convert-checkpoint", "train-mdt", "transfer", "quickstart"):
        assert "--out" in _help(command)
    code, out = posebh("--version")
    assert code == 0 and out.startswith("posebh ")


def test_device_refuses_cuda_without_a_gpu(work, model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    make_photos(work / "images")
    code, out = posebh("predict", "images/", "--checkpoint", model_dir, "--device", "cuda")
    assert code == 2 and "no CUDA device" in out


# ------------------------------------------------------------------ 7. predict <-> evaluate
def test_predict_results_feed_evaluate_and_evaluate_saves_predictions(work, model_dir, tmp_path):
    from cli_setup import make_dataset

    data = make_dataset(tmp_path / "data" / "coco", name="coco", skeleton="coco", splits=("val",))
    images = data.parent / "coco-images"  # make_dataset's image folder; file names as in val.json
    code, out = posebh("predict", images, "--checkpoint", model_dir, "--skeleton", "coco", "--out", "pred",
                       "--device", "cpu")
    assert code == 0, out
    results = json.loads((work / "pred" / "results.json").read_text())
    assert len(results) == 3 and {r["file_name"] for r in results} == {"0.png", "1.png", "2.png"}
    code, out = posebh("evaluate", "--results", work / "pred" / "results.json", "--annotations", data / "val.json",
                       "--skeleton", "coco", "--out", "metrics.json")
    assert code == 0, out
    assert "AP" in json.loads((work / "metrics.json").read_text())

    assert posebh("models", "add", "mine", model_dir)[0] == 0
    code, out = posebh("evaluate", "--checkpoint", "mine", "--data", data, "--save-predictions", "saved.json",
                       "--device", "cpu", "--batch-size", 4)
    assert code == 0, out
    saved = json.loads((work / "saved.json").read_text())
    assert len(saved) == 6 and all(len(r["keypoints"]) == 51 for r in saved)
    code, again = posebh("evaluate", "--results", "saved.json", "--annotations", data / "val.json",
                         "--skeleton", "coco")
    assert code == 0, again
    code, out = posebh("evaluate", "--data", data, "--prototypes", "coco", "--device", "cpu", "--out", "p.json")
    assert code == 0, out  # the default model, scored through its prototype heatmaps
    assert "AP" in json.loads((work / "p.json").read_text())


# ------------------------------------------------------------------ 8. only the main process prints
@pytest.mark.slow
def test_other_ranks_print_nothing(work, model_dir):
    make_photos(work / "images")
    env = {**os.environ, "RANK": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "posebh_cli.cli"]
    done = subprocess.run(args + ["predict", "images", "--checkpoint", str(model_dir), "--out", "p1", "--device", "cpu"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (work / "p1" / "results.json").is_file()


def test_other_ranks_are_quiet_in_process(work, model_dir, monkeypatch):
    """The same check in this process: the CLI's console and the recipe's scaling line look at RANK."""
    import posebh_cli.cli as cli
    from posebh_cli.methods import load_recipe

    monkeypatch.setenv("RANK", "1")
    from rich.console import Console

    monkeypatch.setattr(cli, "console", Console(quiet=not cli.is_main_process()))
    code, out = posebh("models", "list")
    assert code == 0 and out == ""
    load_recipe("zoo-quickstart", ["train.epochs=1"], check_paths=False)  # prints its scaling line on rank 0 only


# ------------------------------------------------------------------ 9. packaging and permissions
def test_outputs_honour_the_umask(work, model_dir):
    old = os.umask(0o022)
    try:
        make_photos(work / "images")
        assert posebh("predict", "images/", "--checkpoint", model_dir, "--out", "pred", "--device", "cpu")[0] == 0
        assert posebh("models", "add", "mine", model_dir)[0] == 0
        from posebh_cli.files import write_json

        write_json(work / "m.json", {"a": 1})
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(work / "pred") == 0o755 and mode(work / "pred" / "results.json") == 0o644
    assert mode(work / "m.json") == 0o644
    stored = Path(os.environ["POSEBH_HOME"]) / "models" / "mine"
    assert mode(stored) == 0o755 and mode(stored / "model.safetensors") == 0o644


def test_tensorboard_is_a_core_dependency_and_readme_has_the_cpu_line():
    root = Path(__file__).parents[2]
    pyproject = root / "pyproject.toml"
    import tomllib

    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert any(d.startswith("tensorboard") for d in deps)
    readme = (root / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "minutes" in readme
