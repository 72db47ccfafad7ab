"""posebh: multi-dataset 2D pose estimation across heterogeneous skeletons."""
from __future__ import annotations

__version__ = "0.1.0"

from posebh_cli.errors import PosebhError  # noqa: E402

__all__ = ["PosebhError", "__version__"]
