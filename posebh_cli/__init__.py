"""posebh: multi-dataset 2D pose estimation across heterogeneous skeletons."""
from __future__ import annotations

__version__ = "0.1.0"

from posebh_cli.errors import PosebhError  # noqa: E402

__all__ = ["PosebhError", "__version__", "load_model"]


def __getattr__(name: str):
    # `load_model` pulls in torch and timm: import it only when asked for, so `import posebh_cli` stays light.
    if name == "load_model":
        from posebh_cli.models.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'posebh_cli' has no attribute {name!r}")
