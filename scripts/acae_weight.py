"""The ACAE consistency weight that matches the seed's α = 1, and a check for the collapse a too-large one causes.

    python scripts/acae_weight.py --recipe runs/bench-zb/runs/s0/acae.recipe.yaml                # its init model
    python scripts/acae_weight.py --recipe runs/bench-zb/runs/s0/acae.recipe.yaml --checkpoint runs/bench-zb/runs/s0/acae

The seed adds α · mean|C − R C| with α = 1 to a supervised loss in the same unit (both are mean coordinate L1, so a
unit of inconsistency costs what a unit of error costs). posebh supervises heatmaps instead, so α = 1 reads as
weight = heatmap loss / coordinate error, both per sample of the model the consistency stage starts from. For every
dataset whose head the recipe's ACAE covers, on its first --images training crops (no augmentation), this prints
the heatmap loss (the trainer's masked JointsMSE over the dataset's own rows), the L1 error of the soft-argmax
coordinates the consistency term sees (crop-normalised, labelled joints), their ratio, and three signs of the
collapse: the median heatmap peak, the consistency residual mean|C − R C| of all ACAE heads on these images and
the joints' spread (std of all ACAE joints' coordinates per image; near 0 when every joint sits at one point,
which R reproduces exactly). One JSON line per dataset, then the suggested weight (the mean ratio).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/acae_weight.py` from a checkout
    sys.path.insert(0, str(REPO))

import torch

from posebh_cli.data.codecs import dataset_codec
from posebh_cli.data.dataset import TopDownDataset, collate
from posebh_cli.data.prepared import open_prepared
from posebh_cli.methods.acae import ACAEConsistency, consistency_loss
from posebh_cli.methods.multihead import masked_joints_mse
from posebh_cli.models.checkpoint import load_model
from posebh_cli.models.store import resolve_checkpoint
from posebh_cli.recipe import read_recipe


@torch.no_grad()
def measure(model, method: ACAEConsistency, spec, d: int, images: int) -> dict:
    """Heatmap loss, soft-argmax L1 error and collapse signs of head d on its dataset's first training crops."""
    h, w = model.config.img_size
    prepared = open_prepared(spec.path)
    codec = dataset_codec(spec, (h, w))
    data = TopDownDataset(prepared.instances(spec.train_split)[:images], prepared.skeleton, codec, train=False,
                          dataset_idx=d, input_size=(w, h), box_padding=spec.box_padding)
    batch = collate([data[i] for i in range(len(data))])
    heatmaps = model(batch["images"], batch["dataset_idx"], heads="all")["heatmaps"]
    own = heatmaps[d]
    k = own.shape[1]
    rows = torch.ones(len(data), dtype=torch.bool)
    mse = masked_joints_mse(own, batch["heatmaps"][:, :k], batch["target_weight"][:, :k], rows, "dataset")
    coords = method.coordinates([heatmaps[i] for i in method.head_indices])   # [B, J, 2], crop-normalised
    start = sum(model.skeletons[i].num_keypoints for i in method.head_indices[:method.head_indices.index(d)])
    labelled = batch["keypoints"][:, :k, 2] > 0
    truth = batch["keypoints"][:, :k, :2] / torch.tensor([w, h], dtype=torch.float32)
    error = (coords[:, start:start + k] - truth).abs()[labelled].mean()
    return {"dataset": spec.name, "images": len(data), "heatmap_loss": float(mse), "coord_l1": float(error),
            "ratio": float(mse / error), "peak_median": float(own.flatten(2).amax(-1).median()),
            "consistency": float(consistency_loss(coords, method.reconstruction)),
            "joint_spread": float(coords.std(1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="an acae recipe: its datasets, its ACAE, its init model")
    parser.add_argument("--checkpoint", default=None, help="model to measure (default: the recipe's model.init)")
    parser.add_argument("--images", type=int, default=64, help="training crops per dataset")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = read_recipe(args.recipe)
    checkpoint = args.checkpoint or recipe.model.init.path
    model = load_model(resolve_checkpoint(checkpoint)).eval()
    method = ACAEConsistency(model, recipe.datasets, recipe.method_config)
    rows = []
    for d in method.head_indices:
        row = measure(model, method, recipe.datasets[d], d, args.images)
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    print(f"\n{checkpoint}: weight for alpha = 1 (mean heatmap loss / coordinate error ratio): "
          f"{statistics.fmean(r['ratio'] for r in rows):.4f}; the recipe's weight: {method.weight}")


if __name__ == "__main__":
    main()
