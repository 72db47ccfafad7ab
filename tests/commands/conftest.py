"""Shared fixture of the command tests."""
from __future__ import annotations

import pytest

from posebh_cli.models import store


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder outside the repository, an empty model store and no built-in model."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("POSEBH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(store, "BUILTIN_DIR", tmp_path / "no-builtin")
    return folder
