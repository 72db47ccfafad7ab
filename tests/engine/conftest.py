"""Fixtures of the engine tests (helpers live in tiny_setup.py so tests can import them by a unique name)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_setup import tiny_recipe  # noqa: E402


@pytest.fixture
def tiny(tmp_path) -> Path:
    return tiny_recipe(tmp_path)
