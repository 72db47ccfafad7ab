"""Named local models: the model store and the built-in models. Nothing is ever downloaded.

* The store is a folder, `$POSEBH_HOME` (default `$XDG_CACHE_HOME/posebh`, i.e. `~/.cache/posebh`):
  `models/<name>/` holds `model.safetensors` + `model.json` (+ the README.md card when the source had one), and
  `default.json` names the default model. `posebh models add NAME FILE` fills it from our run folder /
  `.safetensors`, or converts an official ViTPose / ViTPose++ / PoseBH `.pth` once (and reads the result back).
* Built-in models ship inside the package: every `posebh_cli/weights/<name>/` holding `model.safetensors` and
  `model.json` is the model `<name>` (the first is `zoo-base`, the zoo's ViTPose++).
* `resolve_checkpoint(name_or_path)`: an existing path as it is, else a store name, else a built-in name; None
  is the default model (the store's default, else the built-in `zoo-base`); with none, one line says which
  official file to place and the command that registers it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_folder, read_json, write_json
from posebh_cli.models.checkpoint import META_NAME, WEIGHTS_NAME, load_model, save_checkpoint

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights"  # posebh_cli/weights/<name>/
BUILTIN_DEFAULT = "zoo-base"
CARD_NAME = "README.md"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# What a new user places when there is no model at all: the ViTPose++ base checkpoint has the six MDT heads
# (COCO, AIC, MPII, AP-10K, APT-36K, COCO-WholeBody), so every built-in skeleton but the transfer targets works.
NO_MODEL_HINT = ("no model given (--checkpoint NAME or PATH) and no default model: place the official ViTPose++ "
                 "base checkpoint vitpose+_base.pth (from the ViTPose repository's model zoo) in this folder and "
                 "run `posebh models add vitpose-plus-base vitpose+_base.pth --default`")


@dataclass
class StoredModel:
    name: str
    path: Path          # the folder with model.safetensors + model.json
    builtin: bool
    default: bool = False


def home() -> Path:
    """The store folder: $POSEBH_HOME, else $XDG_CACHE_HOME/posebh, else ~/.cache/posebh."""
    if os.environ.get("POSEBH_HOME"):
        return Path(os.environ["POSEBH_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "posebh"


def models_dir() -> Path:
    return home() / "models"


def _is_model_folder(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file() and (folder / META_NAME).is_file()


def builtin_models() -> dict[str, Path]:
    """Name -> folder of every model shipped in the package (posebh_cli/weights/<name>/)."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUILTIN_DIR.iterdir()) if p.is_dir() and _is_model_folder(p)}


def stored_models() -> dict[str, Path]:
    """Name -> folder of every model in the store."""
    folder = models_dir()
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".") and _is_model_folder(p)}


def default_name() -> str | None:
    """The store's default model, else the built-in `zoo-base` when it ships; None when there is neither."""
    config = home() / "default.json"
    if config.is_file():
        name = read_json(config, "model store settings").get("default")
        if isinstance(name, str) and name in {**builtin_models(), **stored_models()}:
            return name
    return BUILTIN_DEFAULT if BUILTIN_DEFAULT in builtin_models() else None


def list_models() -> list[StoredModel]:
    """Every model by name: the store's first, then the built-in ones a store name does not hide."""
    default = default_name()
    stored = stored_models()
    found = [StoredModel(n, p, False, n == default) for n, p in stored.items()]
    found += [StoredModel(n, p, True, n == default) for n, p in builtin_models().items() if n not in stored]
    return found


def model_path(name: str) -> Path | None:
    """The folder of a named model (store first, then built-in), or None."""
    return stored_models().get(name) or builtin_models().get(name)


def resolve_checkpoint(name_or_path: str | Path | None) -> Path:
    """The checkpoint to load: an existing path, else a model name, else (None) the default model."""
    if name_or_path is None:
        name = default_name()
        if name is None:
            raise PosebhError(NO_MODEL_HINT)
        return model_path(name)
    path = Path(name_or_path)
    if path.exists():
        return path
    found = model_path(str(name_or_path)) if NAME_PATTERN.match(str(name_or_path)) else None
    if found is not None:
        return found
    names = ", ".join(m.name for m in list_models()) or "none yet"
    raise input_error(path, f"no such checkpoint file or folder, nor a model name (models: {names}; "
                            "posebh models add NAME FILE registers one)")


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise PosebhError(f"model name {name!r}: use letters, digits and . _ + - (no path separators)")


def add_model(name: str, source: str | Path, force: bool = False) -> Path:
    """Copy (our format) or convert once (official .pth) `source` into the store as `name`; returns its folder.

    The result is loaded back before it is published, so a model in the store always loads.
    """
    _check_name(name)
    source = Path(source)
    if not source.exists():
        raise input_error(source, "no such checkpoint file or folder")
    target = models_dir() / name
    if target.exists() and not force:
        raise PosebhError(f"model {name!r} already exists in {models_dir()}; pass --force to replace it")
    model = load_model(source)  # our folder / .safetensors or an official .pth; raises one line if it is not
    if target.exists():
        shutil.rmtree(target)
    with atomic_folder(target) as tmp:
        if source.is_dir():  # our folder: keep the files as they are (recipe, card)
            for item in (WEIGHTS_NAME, META_NAME, CARD_NAME):
                if (source / item).is_file():
                    shutil.copyfile(source / item, tmp / item)
        else:
            meta = _embedded_meta(source)
            extra = {**(meta.get("extra") or {}), "added_from": str(source)}
            save_checkpoint(model, tmp, recipe=meta.get("recipe"), extra=extra)
        check = load_model(tmp)
        if sum(p.numel() for p in check.parameters()) != sum(p.numel() for p in model.parameters()):
            raise input_error(source, "the stored copy does not load back with the same weights")
    return target


def _embedded_meta(source: Path) -> dict:
    """The posebh metadata inside a .safetensors ({} for an official file or a file without it)."""
    if source.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as f:
        text = (f.metadata() or {}).get("posebh")
    return json.loads(text) if text else {}


def set_default(name: str) -> None:
    """Make a stored or built-in model the default of every command that takes --checkpoint."""
    if model_path(name) is None:
        names = ", ".join(m.name for m in list_models()) or "none yet"
        raise PosebhError(f"no model named {name!r} (models: {names})")
    home().mkdir(parents=True, exist_ok=True)
    write_json(home() / "default.json", {"default": name})


def describe(folder: Path) -> dict:
    """arch, input size, heads and prototype skeletons of a model folder, read from its model.json."""
    meta = read_json(folder / META_NAME, "checkpoint metadata")
    config = meta.get("config") or {}
    return {"arch": config.get("arch", "?"), "img_size": config.get("img_size"),
            "heads": [f"{d} ({s.get('name')})" for d, s in zip(meta.get("datasets") or [], meta.get("skeletons") or [])],
            "prototypes": [s.get("name") for s in meta.get("prototype_skeletons") or []]}


__all__ = ["BUILTIN_DIR", "BUILTIN_DEFAULT", "NO_MODEL_HINT", "StoredModel", "add_model", "builtin_models",
           "default_name", "describe", "home", "list_models", "model_path", "resolve_checkpoint", "set_default",
           "stored_models"]
