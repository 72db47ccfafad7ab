"""End to end on a tiny prepared dataset: run dir contents, exact resume after SIGKILL, non-finite losses, torchrun."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from posebh_cli.engine.trainer import train_mdt
from posebh_cli.errors import PosebhError
from posebh_cli.methods.multihead import MultiHead

sys.path.insert(0, str(Path(__file__).parent))
from tiny_setup import tiny_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model.safetensors"))


def test_tiny_run_writes_a_run_dir_load_model_reads(tiny, tmp_path):
    from posebh_cli.models.checkpoint import load_model

    run = train_mdt(tiny, out=tmp_path / "run")
    model = load_model(run)
    assert model.datasets == ["coco", "mpii"] and not model.with_embedding
    assert model.config.img_size == (32, 32)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 7))
    assert [line["stage"] for line in lines] == ["heads"] * 3 + ["all"] * 3
    assert all(line["samples_per_s"] > 0 and "heatmap/coco" in line or "heatmap/mpii" in line for line in lines)
    assert lines[0]["lr"] == pytest.approx(1e-3 * 0.001)  # warmup starts at warmup_ratio
    assert lines[-1]["lr"] == pytest.approx(5e-4)  # stage 2 lr once warmed up
    assert (run / "state" / "trainer.pt").is_file() and (run / "recipe.yaml").is_file()
    saved = torch.load(run / "state" / "trainer.pt", weights_only=False)
    assert saved["progress"]["step"] == 6 and saved["progress"]["stage_started"] == "all"
    with pytest.raises(PosebhError, match="already holds a run"):
        train_mdt(tiny, out=run)
    with pytest.raises(PosebhError, match="no training state"):
        train_mdt(tiny, out=tmp_path / "empty", resume=True)


def test_epoch_length_sets_the_steps_of_every_epoch(tmp_path):
    # 12 training samples make 3 steps of 4 per epoch; 8 samples per epoch make 2, and each stage keeps its epoch
    run = train_mdt(tiny_recipe(tmp_path, epoch_length=8), out=tmp_path / "run")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(line["step"], line["stage"]) for line in lines] == [(1, "heads"), (2, "heads"), (3, "all"), (4, "all")]
    with pytest.raises(PosebhError, match="train.epoch_length.*at least one global batch"):
        train_mdt(tiny_recipe(tmp_path, epoch_length=3), out=tmp_path / "short")


def test_frozen_backbone_in_first_stage_and_max_steps(tiny, tmp_path):
    start = None

    def remember_start(self, stage):
        nonlocal start
        if start is None:
            start = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    original = MultiHead.on_stage_start
    MultiHead.on_stage_start = remember_start
    try:
        run = train_mdt(tiny, out=tmp_path / "run", max_steps=3)  # exactly the "heads" stage
    finally:
        MultiHead.on_stage_start = original
    end = _weights(run)
    assert torch.equal(end["backbone.blocks.0.attn.qkv.weight"], start["backbone.blocks.0.attn.qkv.weight"])
    assert not torch.equal(end["heads.0.final_layer.weight"], start["heads.0.final_layer.weight"])
    assert json.loads((run / "model.json").read_text())["extra"]["step"] == 3


def test_validation_writes_metrics_and_best_checkpoint(tmp_path):
    from posebh_cli.models.checkpoint import load_model

    recipe = tiny_recipe(tmp_path, val_every_epochs=1, val_max_images=2, checkpoint_every_steps=0)
    run = train_mdt(recipe, out=tmp_path / "run", overrides=["stages.0.trainable=[backbone, heads]"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val/main" in r]
    assert [r["epoch"] for r in vals] == [1, 2]
    assert {"val/coco/AP", "val/mpii/PCKh"} <= set(vals[0])
    assert vals[-1]["val/main"] == pytest.approx((vals[-1]["val/coco/AP"] + vals[-1]["val/mpii/PCKh"]) / 2)
    best = load_model(run / "best")
    assert best.datasets == ["coco", "mpii"]
    assert json.loads((run / "best" / "model.json").read_text())["extra"]["best_metric"] == \
        pytest.approx(max(r["val/main"] for r in vals))


def test_nonfinite_loss_stops_with_the_term_or_is_skipped(tiny, tmp_path, monkeypatch):
    original = MultiHead.losses
    calls = {"n": 0}

    def poisoned(self, batch, stage):
        calls["n"] += 1
        losses = original(self, batch, stage)
        if calls["n"] == 2:
            name = sorted(losses)[0]
            losses[name] = losses[name] * float("nan")
        return losses

    monkeypatch.setattr(MultiHead, "losses", poisoned)
    with pytest.raises(PosebhError, match=r"step 2 \(epoch 0\): loss term 'heatmap/\w+' is nan"):
        train_mdt(tiny, out=tmp_path / "a", max_steps=3)
    assert not (tmp_path / "a" / "model.safetensors").exists()
    calls["n"] = 0
    run = train_mdt(tiny, out=tmp_path / "b", max_steps=3, skip_nonfinite=1)
    assert torch.isfinite(torch.cat([v.flatten().float() for v in _weights(run).values()])).all()


KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(int(sys.argv[3]))
    from posebh_cli.methods.multihead import MultiHead
    from posebh_cli.engine.trainer import train_mdt

    original, calls = MultiHead.losses, [0]

    def losses(self, batch, stage):
        calls[0] += 1
        if calls[0] == 5:  # mid-epoch 1, one step after the step-4 checkpoint
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch, stage)

    MultiHead.losses = losses
    train_mdt(sys.argv[1], out=sys.argv[2])
""")


def test_resume_after_sigkill_gives_identical_weights(tiny, tmp_path):
    straight = train_mdt(tiny, out=tmp_path / "straight")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLER, str(tiny), str(tmp_path / "killed"),
                             str(torch.get_num_threads())], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    saved = torch.load(tmp_path / "killed" / "state" / "trainer.pt", weights_only=False)
    assert saved["progress"]["step"] == 4 and saved["progress"]["epoch"] == 1
    assert saved["progress"]["batch_in_epoch"] == 1
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    resumed = train_mdt(tiny, out=tmp_path / "killed", resume=True)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # the lost step-5 line of the killed run is not duplicated


def test_two_process_torchrun_on_cpu(tiny, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    # 2 processes x batch 2 per process: one global batch of 4, 3 steps per epoch
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "posebh_cli.cli", "train-mdt", "--recipe", str(tiny), "--out", str(tmp_path / "ddp"),
           "--max-steps", "2", "--set", "train.batch_size=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    assert (run / "model.safetensors").is_file()
    assert sorted(p.name for p in (run / "state").glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]


def test_init_from_checkpoint_at_another_input_size_interpolates_the_position_table(tmp_path):
    from posebh_cli.models.build import init_from_checkpoint
    from posebh_cli.models.checkpoint import save_checkpoint
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.models.transfer import resize_pos_table
    from posebh_cli.skeletons import load_skeleton

    source = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    with torch.no_grad():
        source.backbone.pos_embed.normal_()
    save_checkpoint(source, tmp_path / "ckpt")
    target = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(96, 64))
    init_from_checkpoint(target, tmp_path / "ckpt")
    assert target.backbone.grid_size != source.backbone.grid_size
    expected = resize_pos_table(source.backbone.pos_embed.detach(), source.backbone.grid_size,
                                target.backbone.grid_size)
    assert torch.allclose(target.backbone.pos_embed.detach(), expected)
    assert torch.equal(target.heads[0].final_layer.weight, source.heads[0].final_layer.weight)


def test_init_from_checkpoint_matches_heads_and_experts_by_dataset_name(tmp_path):
    from posebh_cli.models.build import init_from_checkpoint
    from posebh_cli.models.checkpoint import save_checkpoint
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    names = ["coco", "mpii", "ap10k"]
    source = PoseModel("vit_pico", names, [load_skeleton(n) for n in names], img_size=(32, 32))
    save_checkpoint(source, tmp_path / "ckpt")
    target = PoseModel("vit_pico", ["ap10k", "coco"], [load_skeleton("ap10k"), load_skeleton("coco")],
                       num_experts=2, img_size=(32, 32))
    assert init_from_checkpoint(target, tmp_path / "ckpt") > 0
    src, dst = source.state_dict(), target.state_dict()
    assert torch.equal(dst["heads.0.final_layer.weight"], src["heads.2.final_layer.weight"])  # ap10k
    assert torch.equal(dst["heads.1.final_layer.weight"], src["heads.0.final_layer.weight"])  # coco
    assert torch.equal(dst["backbone.blocks.1.mlp.experts.0.weight"], src["backbone.blocks.1.mlp.experts.2.weight"])
    assert torch.equal(dst["backbone.blocks.1.attn.qkv.weight"], src["backbone.blocks.1.attn.qkv.weight"])
