"""What buys learning from the first-stage zoo base on a CPU: more samples, more depth, or more tokens?

Each arm continues the first stage of `zoo-base` (the zoo's ViTPose++ of recipe `zoo-base`, vit_pico at 256x192:
<work>/zoo-base-256, which `scripts/train_zoo_base.py --work <work>` makes) on its own training zoo with the bundled
`zoo-base` recipe changed in one thing, then scores it on the card's held-out zoo. The hires arm won and became the
shipped model's second stage (recipe `zoo-base-384`: the hires arm with --epochs 6 --low-epochs 2).

    python scripts/continue_zoo_base.py --work runs/cont --arm pico  --epochs 7 --low-epochs 2  # same model
    python scripts/continue_zoo_base.py --work runs/cont --arm tiny  --epochs 3 --low-epochs 1  # 12 blocks
    python scripts/continue_zoo_base.py --work runs/cont --arm hires --epochs 3 --low-epochs 1  # 384x288 input

* pico: the same model, more samples.
* tiny: vit_tiny (12 blocks of the same width) grown from the 4-block base: base block i at position 3i, the 8 new
  blocks start as identity (their attention and FFN output projections zero), so the grown model computes exactly
  what the base computes and training decides what the new blocks add.
* hires: the same model at a 384x288 input (24x18 tokens instead of 16x12, 96x72 heatmaps); the position table is
  interpolated to the new grid by the recipe's `model.init` (as a ViT is fine-tuned at a higher resolution).

Every arm trains with AdamW at --lr (100 warmup steps) and its last --low-epochs at a tenth of it, bf16 autocast,
the recipe's seed: all arms see the same samples in the same order, so their logged losses compare per sample.
Give arms epochs in inverse proportion to their step cost for equal CPU time. An interrupted run continues with
--resume when the script is run again; a finished run is only scored.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from train_zoo_base import (FIRST_STAGE, RECIPE, TRAIN_SCALE, TRAIN_SEED, first_stage_model, held_out_zoo,  # noqa: E402
                            make_zoo, posebh, score, x100)

ARMS = {"pico": ("vit_pico", [256, 192]), "tiny": ("vit_tiny", [256, 192]), "hires": ("vit_pico", [384, 288])}


def grow_depth(source, arch: str):
    """`source` (a PoseModel) deepened to `arch` of the same width: its blocks spread evenly over the new depth,
    the others identity blocks, so that the grown model computes exactly what the source does."""
    import dataclasses

    import torch

    from posebh_cli.models.pose_model import PoseModel

    grown = PoseModel.from_config(dataclasses.replace(source.config, arch=arch, drop_path_rate=0.0), source.skeletons)
    old, new = source.state_dict(), grown.state_dict()
    every = len(grown.backbone.blocks) // len(source.backbone.blocks)
    if every * len(source.backbone.blocks) != len(grown.backbone.blocks) or \
            grown.backbone.embed_dim != source.backbone.embed_dim:
        raise SystemExit(f"cannot grow {source.config.arch} into {arch}: the depth must be a multiple, the width equal")
    state = {}
    for key, value in new.items():
        if not key.startswith("backbone.blocks."):
            state[key] = old[key]
            continue
        index, rest = key.split(".", 3)[2:]
        if int(index) % every == 0:
            state[key] = old[f"backbone.blocks.{int(index) // every}.{rest}"]
        elif rest.startswith(("attn.proj.", "mlp.fc2.", "mlp.experts.")):
            state[key] = torch.zeros_like(value)   # the block adds nothing to the residual stream yet
        else:
            state[key] = value
    grown.load_state_dict(state)
    return grown.eval()


def arm_recipe(arm: str, init: Path, epochs: int, low_epochs: int, lr: float) -> dict:
    """The bundled zoo-base recipe continued from `init` with this arm's model and the two-rate schedule."""
    from posebh_cli.recipe import find_recipe
    recipe = yaml.safe_load(find_recipe(RECIPE).read_text())
    arch, img_size = ARMS[arm]
    recipe["name"] = f"zoo-base-continued-{arm}"
    recipe["model"].update(arch=arch, img_size=img_size, init={"kind": "ours", "path": str(init)})
    recipe["train"].update(epochs=epochs, lr=lr, warmup_iters=100, mixed_precision="bf16", val_every_epochs=epochs)
    stage = {"trainable": ["backbone", "heads"], "losses": ["heatmap"]}
    recipe["stages"] = [{"name": "main", "epochs": [0, epochs - low_epochs], "lr": lr, **stage},
                        {"name": "low-lr", "epochs": [epochs - low_epochs, epochs], "lr": lr / 10, **stage}]
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--arm", choices=sorted(ARMS), required=True)
    parser.add_argument("--epochs", type=int, required=True, help="epochs of the continuation (zoo-base epochs)")
    parser.add_argument("--low-epochs", type=int, default=1, help="the last epochs, at a tenth of --lr")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=None, help="OMP threads (1 when two arms share 2 cores)")
    args = parser.parse_args()
    if not 0 < args.low_epochs < args.epochs:
        raise SystemExit("--low-epochs must be at least 1 and less than --epochs")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    make_zoo(work, "zoo-base", TRAIN_SEED, TRAIN_SCALE)
    first = init = first_stage_model(work)
    if first is None:
        raise SystemExit(f"no first-stage zoo-base model (256x192) in {work / FIRST_STAGE}: "
                         f"python scripts/train_zoo_base.py --work {work} makes it")
    if args.arm == "tiny":
        from posebh_cli.models.checkpoint import load_model, save_checkpoint
        init = work / "zoo-base-grown-vit_tiny"
        if not (init / "model.json").is_file():
            save_checkpoint(grow_depth(load_model(first), "vit_tiny"), init)
    run = work / "runs" / args.arm
    recipe_file = work / f"{args.arm}.yaml"
    recipe_file.write_text(yaml.safe_dump(arm_recipe(args.arm, init, args.epochs, args.low_epochs, args.lr),
                                          sort_keys=False))
    if not (run / "model.json").is_file():
        resume = ["--resume"] if (run / "state").is_dir() else []
        posebh("train-mdt", "--recipe", str(recipe_file), "--out", str(run), *resume, cwd=work)
    print(json.dumps({"arm": args.arm, "run": str(run), "x100": x100(score(run, held_out_zoo(work)))}))


if __name__ == "__main__":
    main()
