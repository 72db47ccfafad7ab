"""The `Method` protocol: what the engine may call on a training objective, and what a method declares.

The engine knows methods only through this protocol (and `METHODS`, a dict from recipe name to class).
`posebh_cli.methods.load_recipe` uses the declarations to check a recipe completely when it is read.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import Tensor

from posebh_cli.recipe import DatasetSpec, StageSpec


class MethodConfig(Protocol):
    """A method's `method_config` as a dataclass; `from_dict` raises errors naming `method_config.<key>`."""

    @classmethod
    def from_dict(cls, raw: dict | None, datasets: list[str]) -> Any: ...


class Method(Protocol):
    needs_embedding: ClassVar[bool]  # build the model with the keypoint embedding net and the prototype bank
    loss_names: ClassVar[tuple[str, ...]]  # what a stage may list under `losses`
    on_start_actions: ClassVar[tuple[str, ...]]  # what a stage may list under `on_start`
    config_class: ClassVar[type[MethodConfig]]

    def __init__(self, model, datasets: list[DatasetSpec], config: dict, accelerator=None) -> None: ...

    def losses(self, batch: dict, stage: StageSpec) -> dict[str, Tensor]:
        """Named, weighted, finite scalar terms (`<term>/<dataset>` or `<term>`); the engine sums them."""

    def after_step(self, batch: dict, stage: StageSpec) -> None:
        """Work outside the optimizer after each step (e.g. the prototype momentum update)."""

    def on_stage_start(self, stage: StageSpec) -> None:
        """Run the stage's `on_start` actions (e.g. K-means over the prototypes)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

# Optional hooks, called only when a method class defines them:
#   build_model(recipe, prepared) -> nn.Module   (classmethod; a method that owns its heads, e.g. distill)
#   set_epoch(epoch, epochs) -> None             (epoch-dependent weights, called before each epoch)
