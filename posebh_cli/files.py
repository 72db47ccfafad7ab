"""Reading the user's JSON and YAML files: a missing file or a parse error is one line naming the file."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from posebh_cli.errors import input_error


def read_json(path: str | Path, what: str = "file"):
    """Parsed JSON of `path`; `what` names the file in the not-found message (e.g. "recipe file")."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise input_error(path, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise input_error(path, "invalid JSON (not UTF-8 text)") from None


def read_yaml(path: str | Path, what: str = "file"):
    """Parsed YAML of `path`; `what` names the file in the not-found message."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise input_error(path, f"invalid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise input_error(path, "invalid YAML (not UTF-8 text)") from None
