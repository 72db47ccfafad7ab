"""fit-acae and a short `method: acae` run on a tiny synthetic zoo (COCO + MPII, 6 images each)."""
import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.synth import synth_zoo
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.errors import PosebhError
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Prepared COCO and MPII zoo datasets, an untrained two-head vit_pico checkpoint and its recipe."""
    root = tmp_path_factory.mktemp("zoo")
    synth_zoo(root / "raw", sizes={"coco": 6, "mpii": 6}, image_size=(96, 96), datasets=["coco", "mpii"],
              workers=1, progress=False)
    for name in ("coco", "mpii"):
        prepare_dataset(name, root / "raw" / name, root / "prepared" / name)
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco", "mpii"], [load_skeleton("coco"), load_skeleton("mpii")], img_size=(32, 32))
    save_checkpoint(model, root / "multihead")
    return root


def _recipe(root, name, method, method_config, init=None, losses=("heatmap",), datasets=("coco", "mpii")):
    recipe = {"name": name, "method": method,
              "model": {"arch": "vit_pico", "img_size": [32, 32], "init": init or {"kind": "none"}},
              "datasets": [{"name": d, "path": str(root / "prepared" / d), "codec": "udp", "half_body": False}
                           for d in datasets],
              "train": {"batch_size": 4, "epochs": 1, "lr": 1e-3, "warmup_iters": 1, "num_workers": 0,
                        "val_every_epochs": 0, "checkpoint_every_epochs": 0, "log_every_steps": 1},
              "stages": [{"name": "all", "epochs": [0, 1], "losses": list(losses)}],
              "method_config": method_config}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_fit_acae_command_writes_the_acae_and_refuses_bad_options(zoo):
    recipe = _recipe(zoo, "mh", "multihead", {})
    out = zoo / "acae"
    args = ["fit-acae", "--checkpoint", str(zoo / "multihead"), "--recipe", str(recipe), "--out", str(out),
            "--steps", "20", "--min-score", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "coco" in result.output and "mpii" in result.output and "16 latents" in result.output
    meta = json.loads((out / "acae.json").read_text())
    assert [h["name"] for h in meta["heads"]] == ["coco", "mpii"] and meta["num_joints"] == 33
    assert meta["instances"] > 0 and (out / "latents.png").stat().st_size > 0 and (out / "pseudo_gt.npz").is_file()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
    too_many = CliRunner().invoke(app, [*args[:5], "--out", str(zoo / "acae_bad"), "--latents", "40"])
    assert too_many.exit_code == 2 and "--latents" in too_many.output and not (zoo / "acae_bad").exists()
    strict = CliRunner().invoke(app, [*args[:5], "--out", str(zoo / "acae_none"), "--min-score", "2"])
    assert strict.exit_code == 2 and "--min-score" in strict.output and not (zoo / "acae_none").exists()


def test_acae_fine_tune_runs_and_checks_the_heads(zoo):
    if not (zoo / "acae").exists():
        pytest.skip("needs the ACAE of the fit-acae test")
    init = {"kind": "ours", "path": str(zoo / "multihead")}
    config = {"acae": str(zoo / "acae"), "weight": 1.0, "beta": 20.0}
    run = train_mdt(_recipe(zoo, "ac", "acae", config, init, ("heatmap", "consistency")), out=zoo / "ac", max_steps=1)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["consistency"] > 0 and ("heatmap/coco" in record or "heatmap/mpii" in record)
    with pytest.raises(PosebhError, match="fitted on head 'mpii'"):
        train_mdt(_recipe(zoo, "ac1", "acae", config, init, ("heatmap", "consistency"), datasets=("coco",)),
                  out=zoo / "ac1", max_steps=1)


def test_acae_weight_script_measures_the_ratio_and_the_collapse(zoo, capsys, monkeypatch):
    """scripts/acae_weight.py on the tiny zoo: one line per ACAE head with finite, positive numbers."""
    import importlib.util
    import sys
    from pathlib import Path

    if not (zoo / "acae").exists():
        pytest.skip("needs the ACAE of the fit-acae test")
    path = Path(__file__).resolve().parents[2] / "scripts" / "acae_weight.py"
    spec = importlib.util.spec_from_file_location("acae_weight", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    init = {"kind": "ours", "path": str(zoo / "multihead")}
    recipe = _recipe(zoo, "acw", "acae", {"acae": str(zoo / "acae")}, init, ("heatmap", "consistency"))
    monkeypatch.setattr(sys, "argv", ["acae_weight.py", "--recipe", str(recipe), "--images", "4"])
    script.main()
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["dataset"] for r in rows] == ["coco", "mpii"]
    for r in rows:
        assert r["images"] == 4 and r["heatmap_loss"] > 0 and r["coord_l1"] > 0 and r["joint_spread"] > 0
        assert r["ratio"] == pytest.approx(r["heatmap_loss"] / r["coord_l1"], rel=1e-3)
    assert "the recipe's weight: 0.03" in lines[-1]
