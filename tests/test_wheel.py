"""The wheel carries everything a user needs: built, installed into a fresh venv, run outside the repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(out: Path) -> Path:
    # Built from a copy of the sources: a setuptools build/ folder in the checkout could carry stale modules, and the
    # test leaves the checkout as it was. --no-build-isolation: the installed setuptools builds it, no download.
    src = out.parent / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "posebh_cli", src / "posebh_cli", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=out.parent)
    (wheel,) = out.glob("posebh-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel") / "dist")


def test_wheel_holds_the_bundled_recipes_and_skeletons(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {p.name for p in (ROOT / "posebh_cli" / "recipes").glob("*.yaml")}
    skeletons = {p.name for p in (ROOT / "posebh_cli" / "skeletons").glob("*.yaml")}
    assert recipes and {f"posebh_cli/recipes/{n}" for n in recipes} <= names
    assert skeletons and {f"posebh_cli/skeletons/{n}" for n in skeletons} <= names
    assert not (ROOT / "recipes").exists()  # one copy only: the package's


@pytest.mark.slow
def test_wheel_runs_quickstart_and_transfer_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    # --system-site-packages: torch and friends come from the system, nothing is downloaded
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python, posebh = venv / "bin" / "python", venv / "bin" / "posebh"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def run(*args: str) -> str:
        result = subprocess.run([str(v) for v in args], cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    where = run(python, "-c", "import posebh_cli; print(posebh_cli.__file__)")
    assert Path(where.strip()).is_relative_to(venv)  # the installed copy, not the checkout
    assert "zoo-quickstart" in run(posebh, "recipes", "list")
    run(posebh, "quickstart", "--tiny", "--out", "qs")
    run(posebh, "transfer", "--target", "3dpw", "--zoo", "--checkpoint", "qs/runs/posebh", "--out", "t",
        "--set", "datasets.0.path=qs/prepared/3dpw", "--set", "model.img_size=[64, 48]",
        "--set", "train.batch_size=4", "--set", "train.val_max_images=2", "--set", "train.warmup_iters=1",
        "--set", "train.checkpoint_every_epochs=0", "--set", "train.log_every_steps=1")
    assert (work / "t" / "model.safetensors").is_file() and (work / "t" / "fit" / "fit.json").is_file()
