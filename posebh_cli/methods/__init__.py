"""Training objectives, one class per file, picked by the recipe's `method` key.

A method class follows the contract in docs/architecture.md (losses, after_step, on_stage_start,
state_dict/load_state_dict). `needs_embedding` tells the engine whether to build the keypoint embedding net.
"""
from __future__ import annotations

from posebh_cli.methods.multihead import MultiHead

METHODS: dict[str, type] = {"multihead": MultiHead}

# Methods written in parallel: register them when their file exists, but never hide their own import errors.
try:
    from posebh_cli.methods.posebh import PoseBH
except ModuleNotFoundError as exc:
    if exc.name != "posebh_cli.methods.posebh":
        raise
else:
    METHODS["posebh"] = PoseBH

from posebh_cli.methods.acae import ACAEConsistency  # noqa: E402
from posebh_cli.methods.distill import Distill  # noqa: E402

METHODS.update(acae=ACAEConsistency, distill=Distill)
