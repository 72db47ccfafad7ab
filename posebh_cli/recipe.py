"""Training recipes: plain dataclasses read from YAML and validated on load, and the bundled recipes.

Every problem is reported as a `PosebhError` naming the recipe file and the dotted YAML key
(`train.lr`, `datasets[2].path`, `stages[1].epochs`). The schema is documented at the top of the bundled
`posebh_cli/recipes/vitb.yaml` (`posebh recipes show vitb`).

This module checks the recipe's structure. The method-specific parts (`method_config`, stage `losses`,
`on_start`) are checked by `posebh_cli.methods.load_recipe`, which every command calls: the recipe sits
below the methods, so it cannot know them.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import is_main_process, read_yaml

METHOD_NAMES = ("multihead", "posebh", "acae", "distill")
INIT_KINDS = ("none", "vitpose_plus", "posebh", "mae", "ours", "transfer")
CODECS = ("udp", "msra", "dark")
OPTIMIZERS = ("adamw", "adam")
PRECISIONS = ("no", "fp16", "bf16")
GROUPS = ("backbone", "heads", "embedding")  # what a stage can make trainable
PROTOTYPE_MODES = ("update", "frozen")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"  # the bundled recipes, shipped inside the package


@dataclass
class InitSpec:
    kind: str = "none"
    path: str | None = None
    expert: str | None = None  # kind "transfer": the source dataset whose expert and head deconvs are kept


@dataclass
class ModelSpec:
    arch: str
    img_size: tuple[int, int] = (256, 192)  # (h, w); heatmaps are img_size / 4
    drop_path: float = 0.0
    embed_dim: int = 64
    prototypes_per_keypoint: int = 3
    head_channels: int | None = None  # deconv width of heads and embedding net; None: 256, or the transfer source's
    init: InitSpec = field(default_factory=InitSpec)


@dataclass
class DatasetSpec:
    name: str
    path: str
    train_split: str = "train"
    val_split: str | None = "val"
    codec: str = "msra"
    sigma: float = 2.0
    half_body: bool = True
    ratio: float | None = None  # sampling weight; None everywhere = proportional to size
    box_padding: float = 1.25  # crop = box x this; 1.0 where the prepared boxes are padded already (InterHand)


@dataclass
class AugmentSpec:
    flip: float = 0.5
    half_body: float = 0.3
    scale_factor: float = 0.5
    rot_factor: float = 40.0


@dataclass
class TrainSpec:
    batch_size: int
    epochs: int
    lr: float
    grad_accum: int = 1
    epoch_length: int | None = None  # samples per epoch, all processes together; None = the training sets' size
    optimizer: str = "adamw"
    weight_decay: float = 0.1
    layer_decay: float | None = None  # None or 1.0 = no layer-wise decay
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    clip_grad: float | None = 1.0
    mixed_precision: str = "no"
    num_workers: int = 0
    seed: int = 0
    checkpoint_every_epochs: int = 1
    checkpoint_every_steps: int = 0
    val_every_epochs: int = 10
    val_max_images: int | None = None
    val_batch_size: int = 32
    log_every_steps: int = 20
    augmentation: AugmentSpec = field(default_factory=AugmentSpec)


@dataclass
class StageSpec:
    name: str
    epochs: tuple[int, int]  # [start, end): the stage covers epochs start .. end-1
    lr: float
    trainable: tuple[str, ...] = GROUPS
    prototypes: str = "frozen"
    losses: tuple[str, ...] = ("heatmap",)
    on_start: tuple[str, ...] = ()


@dataclass
class Recipe:
    name: str
    method: str
    model: ModelSpec
    datasets: list[DatasetSpec]
    train: TrainSpec
    stages: list[StageSpec]
    method_config: dict = field(default_factory=dict)

    def stage_at(self, epoch: int) -> StageSpec:
        """The stage that covers `epoch` (stages tile [0, train.epochs) without gaps)."""
        for stage in self.stages:
            if stage.epochs[0] <= epoch < stage.epochs[1]:
                return stage
        return self.stages[-1]

    def to_dict(self) -> dict:
        """A YAML/JSON-safe dict that `recipe_from_dict` reads back to an equal recipe."""
        return _plain(asdict(self))


# ------------------------------------------------------------------ finding
def bundled_recipes() -> list[str]:
    """Names of the recipes shipped inside the package (file names without `.yaml`)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: `name_or_path` itself if it exists, else the bundled recipe of that name (`.yaml` optional)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and (RECIPES_DIR / f"{name}.yaml").is_file():
        return RECIPES_DIR / f"{name}.yaml"
    raise input_error(path, f"recipe file not found, nor a bundled recipe ({', '.join(bundled_recipes())})")


# ------------------------------------------------------------------ loading
def read_recipe(name_or_path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    """Find, read, override (`key.sub=value`, `datasets.0.path=...`) and validate the structure of a recipe.

    Use `posebh_cli.methods.load_recipe`, which also checks the method-specific keys.
    """
    path = find_recipe(name_or_path)
    raw = read_yaml(path, "recipe file")
    raw = apply_overrides(raw, overrides or [], path)
    if _sets(overrides, "train.epochs") and not _sets(overrides, "stages"):
        raw, message = scale_recipe_epochs(raw, path)
        if message and is_main_process():
            print(message, file=sys.stderr)
    return recipe_from_dict(raw, path, check_paths=check_paths)


def _sets(overrides: list[str] | None, key: str) -> bool:
    """Whether an override assigns `key` or something below it."""
    return any(item.split("=", 1)[0].strip() == key or item.startswith(f"{key}.") for item in overrides or [])


# ------------------------------------------------------------------ epochs
def scale_stages(stages: list[dict], old_epochs: int, new_epochs: int) -> list[dict]:
    """Stage boundaries of a recipe scaled from `old_epochs` to `new_epochs`, each stage keeping >= 1 epoch.

    With fewer epochs than stages only the first `new_epochs` stages are kept (one epoch each): a later stage
    may rely on an earlier one (clustered prototypes, a thawed backbone), never the other way round.
    """
    if new_epochs < 1:
        raise PosebhError(f"train.epochs must be at least 1, got {new_epochs}")
    stages = stages[:new_epochs]
    ends = [round(s["epochs"][1] * new_epochs / old_epochs) for s in stages]
    for i in range(len(ends)):   # strictly increasing, leaving one epoch for each later stage
        low = ends[i - 1] + 1 if i else 1
        ends[i] = min(max(ends[i], low), new_epochs - (len(ends) - 1 - i))
    ends[-1] = new_epochs
    return [{**s, "epochs": [ends[i - 1] if i else 0, ends[i]]} for i, s in enumerate(stages)]


def scale_recipe_epochs(raw: Any, file: Path | str | None = None) -> tuple[Any, str | None]:
    """A recipe whose `train.epochs` was overridden, with its stage boundaries scaled to it, and the log line
    that says so (None when nothing changed). Stages that do not tile the file's epochs are left to validation."""
    try:
        new_epochs = raw["train"]["epochs"]
        stages = raw.get("stages")
        old_epochs = stages[-1]["epochs"][1]
    except (KeyError, TypeError, IndexError, AttributeError):
        return raw, None
    if (not isinstance(new_epochs, int) or isinstance(new_epochs, bool) or new_epochs < 1
            or not isinstance(old_epochs, int) or old_epochs < 1 or new_epochs == old_epochs):
        return raw, None
    if not all(isinstance(s, dict) and isinstance(s.get("epochs"), list) and len(s["epochs"]) == 2 for s in stages):
        return raw, None
    scaled = scale_stages(stages, old_epochs, new_epochs)
    raw = {**raw, "stages": scaled}
    kept = ", ".join(f"{s.get('name')} {s['epochs']}" for s in scaled)
    dropped = [str(s.get("name")) for s in stages[len(scaled):]]
    message = f"{file or 'recipe'}: train.epochs={new_epochs}: stages scaled from {old_epochs} epochs: {kept}"
    if dropped:
        message += f" (dropped {', '.join(dropped)}: fewer epochs than stages)"
    return raw, message


def apply_overrides(raw: Any, overrides: list[str], file: Path | str | None = None) -> dict:
    """Return a copy of `raw` with `a.b.c=value` assignments applied (value parsed as YAML)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise input_error(file, f"override {item!r} must look like key.sub=value", field="--set")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise input_error(file, f"override {item!r}: the value is not valid YAML ({problem})",
                              field=key.strip()) from None
        node = raw
        parts = key.strip().split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise input_error(file, f"override {item!r}: no list index {part!r}", field=where)
                part = int(part)
            elif not isinstance(node, dict):
                raise input_error(file, f"override {item!r}: {where} is not a mapping", field=where)
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return raw


def recipe_from_dict(raw: Any, file: str | Path | None = None, check_paths: bool = True) -> Recipe:
    """Validate a recipe mapping; `file` only names the source in error messages."""
    r = _Reader(file)
    top = r.mapping(raw, "", required=("name", "method", "model", "datasets", "train"),
                    optional=("stages", "method_config"))
    method = r.choice(top, "method", "", METHOD_NAMES)
    model = _model(r, top["model"])
    datasets = _datasets(r, top["datasets"], check_paths)
    train = _train(r, top["train"])
    stages = _stages(r, top.get("stages"), train)
    method_config = top.get("method_config") or {}
    if not isinstance(method_config, dict):
        raise r.error("method_config", "must be a mapping")
    if check_paths and model.init.kind != "none" and not Path(model.init.path).exists():
        raise r.error("model.init.path", f"{model.init.path} does not exist")
    return Recipe(name=r.string(top, "name", ""), method=method, model=model, datasets=datasets, train=train,
                  stages=stages, method_config=method_config)


def _model(r: _Reader, raw: Any) -> ModelSpec:
    m = r.mapping(raw, "model", required=("arch",),
                  optional=("img_size", "drop_path", "embed_dim", "prototypes_per_keypoint", "head_channels", "init"))
    img_size = r.size(m, "img_size", "model", (256, 192))
    if img_size[0] % 16 or img_size[1] % 16:  # the 16-px patch grid times 4 must equal img_size / 4
        raise r.error("model.img_size", f"must be multiples of 16, got {list(img_size)}")
    init_raw = r.mapping(m.get("init") or {"kind": "none"}, "model.init", required=("kind",),
                         optional=("path", "expert"))
    kind = r.choice(init_raw, "kind", "model.init", INIT_KINDS)
    init_path = init_raw.get("path")
    if kind != "none" and not init_path:
        raise r.error("model.init.path", f"required when init kind is {kind!r}")
    expert = init_raw.get("expert")
    if expert is not None and kind != "transfer":
        raise r.error("model.init.expert", f"only used by init kind 'transfer', not {kind!r}")
    if expert is not None:
        expert = r.string(init_raw, "expert", "model.init")
    return ModelSpec(
        arch=r.string(m, "arch", "model"), img_size=img_size,
        drop_path=r.number(m, "drop_path", "model", 0.0, low=0.0, high=1.0, high_open=True),
        embed_dim=r.integer(m, "embed_dim", "model", 64, low=1),
        prototypes_per_keypoint=r.integer(m, "prototypes_per_keypoint", "model", 3, low=1),
        head_channels=r.integer(m, "head_channels", "model", None, low=1),
        init=InitSpec(kind=kind, path=None if init_path is None else str(init_path), expert=expert))


def _datasets(r: _Reader, raw: Any, check_paths: bool) -> list[DatasetSpec]:
    if not isinstance(raw, list) or not raw:
        raise r.error("datasets", "must be a non-empty list")
    specs, names = [], set()
    for i, item in enumerate(raw):
        key = f"datasets[{i}]"
        d = r.mapping(item, key, required=("name", "path"),
                      optional=("train_split", "val_split", "codec", "sigma", "half_body", "ratio", "box_padding"))
        name = r.string(d, "name", key)
        if name in names:
            raise r.error(f"{key}.name", f"dataset {name!r} is listed twice")
        names.add(name)
        path = r.string(d, "path", key)
        if check_paths and not (Path(path) / "meta.yaml").is_file():
            raise r.error(f"{key}.path", f"{path} is not a prepared dataset folder (no meta.yaml)")
        val_split = d.get("val_split", "val")
        specs.append(DatasetSpec(
            name=name, path=path, train_split=r.string(d, "train_split", key, "train"),
            val_split=None if val_split is None else r.string(d, "val_split", key, "val"),
            codec=r.choice(d, "codec", key, CODECS, "msra"),
            sigma=r.number(d, "sigma", key, 2.0, low=0.0, low_open=True),
            half_body=r.boolean(d, "half_body", key, True),
            ratio=r.number(d, "ratio", key, None, low=0.0, low_open=True),
            box_padding=r.number(d, "box_padding", key, 1.25, low=0.0, low_open=True)))
    given = [s.ratio is not None for s in specs]
    if any(given) and not all(given):
        first_missing = given.index(False)
        raise r.error(f"datasets[{first_missing}].ratio", "give a ratio for every dataset or for none")
    return specs


def _train(r: _Reader, raw: Any) -> TrainSpec:
    t = r.mapping(raw, "train", required=("batch_size", "epochs", "lr"),
                  optional=tuple(f for f in TrainSpec.__dataclass_fields__ if f not in ("batch_size", "epochs", "lr")))
    aug_raw = r.mapping(t.get("augmentation") or {}, "train.augmentation", required=(),
                        optional=("flip", "half_body", "scale_factor", "rot_factor"))
    k = "train.augmentation"
    aug = AugmentSpec(flip=r.number(aug_raw, "flip", k, 0.5, low=0.0, high=1.0),
                      half_body=r.number(aug_raw, "half_body", k, 0.3, low=0.0, high=1.0),
                      scale_factor=r.number(aug_raw, "scale_factor", k, 0.5, low=0.0, high=1.0, high_open=True),
                      rot_factor=r.number(aug_raw, "rot_factor", k, 40.0, low=0.0, high=180.0))
    layer_decay = r.number(t, "layer_decay", "train", None, low=0.0, high=1.0, low_open=True)
    clip = r.number(t, "clip_grad", "train", 1.0, low=0.0, low_open=True)
    return TrainSpec(
        batch_size=r.integer(t, "batch_size", "train", low=1), epochs=r.integer(t, "epochs", "train", low=1),
        lr=r.number(t, "lr", "train", low=0.0, low_open=True),
        grad_accum=r.integer(t, "grad_accum", "train", 1, low=1),
        epoch_length=r.integer(t, "epoch_length", "train", None, low=1),
        optimizer=r.choice(t, "optimizer", "train", OPTIMIZERS, "adamw"),
        weight_decay=r.number(t, "weight_decay", "train", 0.1, low=0.0),
        layer_decay=layer_decay,
        warmup_iters=r.integer(t, "warmup_iters", "train", 500, low=0),
        warmup_ratio=r.number(t, "warmup_ratio", "train", 0.001, low=0.0, high=1.0),
        clip_grad=clip, mixed_precision=_precision(r, t),
        num_workers=r.integer(t, "num_workers", "train", 0, low=0), seed=r.integer(t, "seed", "train", 0, low=0),
        checkpoint_every_epochs=r.integer(t, "checkpoint_every_epochs", "train", 1, low=0),
        checkpoint_every_steps=r.integer(t, "checkpoint_every_steps", "train", 0, low=0),
        val_every_epochs=r.integer(t, "val_every_epochs", "train", 10, low=0),
        val_max_images=r.integer(t, "val_max_images", "train", None, low=1),
        val_batch_size=r.integer(t, "val_batch_size", "train", 32, low=1),
        log_every_steps=r.integer(t, "log_every_steps", "train", 20, low=1),
        augmentation=aug)


def _precision(r: _Reader, t: dict) -> str:
    """train.mixed_precision; an unquoted `no` (YAML 1.1 reads it as false, in a file or in --set) means "no"."""
    if t.get("mixed_precision") is False:
        t = {**t, "mixed_precision": "no"}
    return r.choice(t, "mixed_precision", "train", PRECISIONS, "no")


def _stages(r: _Reader, raw: Any, train: TrainSpec) -> list[StageSpec]:
    if raw is None:  # one stage: everything trainable at train.lr
        return [StageSpec(name="all", epochs=(0, train.epochs), lr=train.lr)]
    if not isinstance(raw, list) or not raw:
        raise r.error("stages", "must be a non-empty list")
    stages: list[StageSpec] = []
    expected_start = 0
    for i, item in enumerate(raw):
        key = f"stages[{i}]"
        s = r.mapping(item, key, required=("name", "epochs"),
                      optional=("lr", "trainable", "prototypes", "losses", "on_start"))
        epochs = s["epochs"]
        if (not isinstance(epochs, list) or len(epochs) != 2
                or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs)):
            raise r.error(f"{key}.epochs", f"must be [start, end] integers, got {epochs!r}")
        start, end = epochs
        if end <= start:
            raise r.error(f"{key}.epochs", f"end must be after start, got {epochs}")
        if start != expected_start:
            what = "overlaps the previous stage" if start < expected_start else "leaves a gap after the previous stage"
            raise r.error(f"{key}.epochs", f"starts at {start} and {what} (expected {expected_start})")
        expected_start = end
        trainable = r.names(s, "trainable", key, GROUPS, GROUPS)
        stages.append(StageSpec(
            name=r.string(s, "name", key), epochs=(start, end),
            lr=r.number(s, "lr", key, train.lr, low=0.0, low_open=True), trainable=trainable,
            prototypes=r.choice(s, "prototypes", key, PROTOTYPE_MODES, "frozen"),
            losses=r.names(s, "losses", key, None, ("heatmap",)),
            on_start=r.names(s, "on_start", key, None, ())))
    if expected_start != train.epochs:
        raise r.error(f"stages[{len(raw) - 1}].epochs",
                      f"the last stage ends at {expected_start} but train.epochs is {train.epochs}")
    return stages


def check_number(value: Any, file: str | Path | None, key: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """THE number rule for every config value (recipe keys and each method's `method_config`): a real number
    (YAML 1.1 reads "1e-3" without a dot as a string, so such a string is accepted), not NaN, within the bounds;
    the error names the file and the dotted key."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise input_error(file, f"must be a number, got {value!r}", field=key)
    value = float(value)
    if not math.isfinite(value):  # NaN or .inf would train silently into NaN weights
        raise input_error(file, f"must be a finite number, got {value!r}", field=key)
    if low is not None and (value < low or (low_open and value == low)):
        raise input_error(file, f"must be {'>' if low_open else '>='} {low:g}, got {value:g}", field=key)
    if high is not None and (value > high or (high_open and value == high)):
        raise input_error(file, f"must be {'<' if high_open else '<='} {high:g}, got {value:g}", field=key)
    return value


def check_choice(value: Any, file: str | Path | None, key: str, options: tuple) -> Any:
    """`value` when it is one of `options`, else an error naming the file and the dotted key."""
    if value not in options:
        raise input_error(file, f"must be one of {', '.join(options)}; got {value!r}", field=key)
    return value


class _Reader:
    """Small typed getters whose errors name the file and the dotted key."""

    _MISSING = object()

    def __init__(self, file: str | Path | None):
        self.file = file

    def error(self, key: str, problem: str) -> PosebhError:
        return input_error(self.file, problem, field=key)

    def mapping(self, raw: Any, key: str, required: tuple, optional: tuple) -> dict:
        if not isinstance(raw, dict):
            raise self.error(key or "<top level>", f"must be a mapping, got {type(raw).__name__}")
        prefix = f"{key}." if key else ""
        for name in raw:
            if name not in required and name not in optional:
                allowed = ", ".join(sorted((*required, *optional)))
                raise self.error(f"{prefix}{name}", f"unknown key (allowed: {allowed})")
        for name in required:
            if raw.get(name) is None:
                raise self.error(f"{prefix}{name}", "missing required key")
        return raw

    def _get(self, raw: dict, name: str, key: str, default: Any) -> tuple[Any, str]:
        dotted = f"{key}.{name}" if key else name
        value = raw.get(name, default)
        if value is self._MISSING:
            raise self.error(dotted, "missing required key")
        return value, dotted

    def string(self, raw: dict, name: str, key: str, default: Any = _MISSING) -> str:
        value, dotted = self._get(raw, name, key, default)
        if not isinstance(value, str) or not value:
            raise self.error(dotted, f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, raw: dict, name: str, key: str, options: tuple, default: Any = _MISSING) -> str:
        value, dotted = self._get(raw, name, key, default)
        return check_choice(value, self.file, dotted, options)

    def boolean(self, raw: dict, name: str, key: str, default: Any = _MISSING) -> bool:
        value, dotted = self._get(raw, name, key, default)
        if not isinstance(value, bool):
            raise self.error(dotted, f"must be true or false, got {value!r}")
        return value

    def integer(self, raw: dict, name: str, key: str, default: Any = _MISSING, low: int | None = None) -> int | None:
        value, dotted = self._get(raw, name, key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(dotted, f"must be an integer, got {value!r}")
        if low is not None and value < low:
            raise self.error(dotted, f"must be >= {low}, got {value}")
        return value

    def number(self, raw: dict, name: str, key: str, default: Any = _MISSING, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> float | None:
        value, dotted = self._get(raw, name, key, default)
        if value is None and default is None:
            return None
        return check_number(value, self.file, dotted, low, high, low_open, high_open)

    def size(self, raw: dict, name: str, key: str, default: tuple[int, int]) -> tuple[int, int]:
        value, dotted = self._get(raw, name, key, default)
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise self.error(dotted, f"must be [height, width] positive integers, got {value!r}")
        return int(value[0]), int(value[1])

    def names(self, raw: dict, name: str, key: str, options: tuple | None, default: tuple) -> tuple[str, ...]:
        value, dotted = self._get(raw, name, key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(dotted, f"must be a list of names, got {value!r}")
        for v in value:
            if options is not None and v not in options:
                raise self.error(dotted, f"unknown name {v!r} (allowed: {', '.join(options)})")
        return tuple(value)


def _plain(value: Any) -> Any:
    """Tuples become lists so the dict is YAML/JSON friendly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
