"""PoseBH training objective (CVPR 2025, §3): keypoint prototypes, cluster negatives, cross-type self-supervision.

Per step the engine calls `losses` (named, weighted terms that it sums) and then `after_step` (momentum update of
the prototypes from the pixels sampled in `losses`). All prototype math runs in fp32 even under autocast: the
loss weights go down to 1e-8 and the Sinkhorn exponent is cos/0.05, neither of which survives fp16.

Indexing: global keypoint j = model.keypoint_offsets[d] + local index k of dataset d (recipe order), and the
prototype logits of a pixel are masked to its own dataset's K_d·M block. See docs/method-notes.md for every
place where this differs from the released code.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from posebh_cli.errors import input_error
from posebh_cli.recipe import check_number
from posebh_cli.methods import prototype_ops as ops
from posebh_cli.methods.multihead import HEADS, NORMALIZE, heatmap_losses, masked_joints_mse
from posebh_cli.methods.prototype_ops import Clusters, Foreground

LOSS_NAMES = ("heatmap", "proto", "proto_heatmap", "cluster", "css")
ON_START = ("cluster_prototypes",)


@dataclass
class PoseBHConfig:
    """`method_config` of a PoseBH recipe. Defaults are the paper's (supplement C.1)."""

    proto_heatmap_weight: float = 3.33e-6  # α
    ppc_weight: float = 1.25e-7  # β
    ppd_weight: float = 1.25e-8  # γ
    cluster_weight: float = 0.01  # δ
    css_weight: float = 0.001  # ζ
    sinkhorn_kappa: float = 0.05
    sinkhorn_iters: int = 3
    momentum: float = 0.999  # λ
    foreground_threshold: float = 0.0  # pixels with a target value above this are sampled
    max_foreground_pixels: int = 32768  # per step, bounds the [N, J, M] logits
    num_clusters: int = 96
    kmeans_iters: int = 100
    kmeans_seed: int = 0
    css_conf_thr: float = 0.25
    css_dist_thr: float = 2.1  # heatmap pixels
    css_sigma: float = 2.0
    heatmap_normalize: str = "batch"  # the heads' JointsMSE, as methods/multihead.py: batch | dataset
    heads: str = "own"  # without CSS: each head on its own rows (as multihead) | on every row (the released code)

    @classmethod
    def from_dict(cls, raw: dict | None, datasets: list[str] | None = None) -> "PoseBHConfig":
        raw = dict(raw or {})
        known = {f.name: f for f in fields(cls)}
        for key, value in raw.items():
            if key not in known:
                raise input_error("recipe", f"unknown key (known: {', '.join(known)})", field=f"method_config.{key}")
            if key in ("heatmap_normalize", "heads"):
                options = NORMALIZE if key == "heatmap_normalize" else HEADS
                if value not in options:
                    raise input_error("recipe", f"must be one of {', '.join(options)}, got {value!r}",
                                      field=f"method_config.{key}")
                continue
            number = check_number(value, "recipe", f"method_config.{key}")
            if known[key].type == "int" and number != int(number):
                raise input_error("recipe", f"must be an integer, got {value!r}", field=f"method_config.{key}")
            raw[key] = int(number) if known[key].type == "int" else number
        config = cls(**raw)
        config._check_ranges()
        return config

    def _check_ranges(self) -> None:
        checks = {
            "momentum": 0.0 <= self.momentum <= 1.0,
            "sinkhorn_kappa": self.sinkhorn_kappa > 0,
            "sinkhorn_iters": self.sinkhorn_iters >= 1,
            "max_foreground_pixels": self.max_foreground_pixels >= 1,
            "num_clusters": self.num_clusters >= 1,
            "kmeans_iters": self.kmeans_iters >= 1,
            "css_sigma": self.css_sigma > 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise input_error("recipe", f"out of range: {getattr(self, key)!r}", field=f"method_config.{key}")


class PoseBH:
    needs_embedding = True  # the engine builds the model with the keypoint embedding module and prototypes
    loss_names = LOSS_NAMES
    on_start_actions = ON_START
    config_class = PoseBHConfig

    def __init__(self, model, datasets: list, config: dict, accelerator=None):
        self.model = model
        self.accelerator = accelerator
        self.config = PoseBHConfig.from_dict(config)
        core = self._core()
        if core.prototypes is None:
            raise input_error("recipe", "method 'posebh' needs a model with prototypes", field="model.with_embedding")
        if len(datasets) != len(core.datasets):
            raise input_error("recipe", f"{len(datasets)} datasets but the model has {len(core.datasets)} heads",
                              field="datasets")
        self.datasets = datasets
        num_keypoints = core.prototypes.prototypes.shape[0]
        offsets = [int(o) for o in core.keypoint_offsets]
        self.offsets = offsets
        self.sizes = [end - start for start, end in zip(offsets, offsets[1:] + [num_keypoints])]
        # Dataset of every global keypoint: masks logits to the pixel's own dataset block.
        self._keypoint_dataset = torch.repeat_interleave(torch.arange(len(offsets)), torch.tensor(self.sizes))
        self.clusters: Clusters | None = None
        self._pending: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        # A bank imported from the released code was trained under |cos|: each prototype may point away from its
        # embeddings. Its signs are aligned from the first steps' foreground pixels (every keypoint once).
        self._signs_to_check: Tensor | None = (
            torch.ones(num_keypoints, dtype=torch.bool) if getattr(core.prototypes, "abs_similarity", False) else None)

    # ------------------------------------------------------------------------------------------------ helpers

    def _core(self):
        """The model without its DDP wrapper: prototypes and offsets live there."""
        return self.accelerator.unwrap_model(self.model) if self.accelerator is not None else self.model

    @property
    def _bank(self) -> Tensor:
        return self._core().prototypes.prototypes

    def _keypoint_dataset_on(self, device: torch.device) -> Tensor:
        if self._keypoint_dataset.device != device:  # the engine may move the model after building the method
            self._keypoint_dataset = self._keypoint_dataset.to(device)
        return self._keypoint_dataset

    def _num_processes(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    def _pixel_weight(self, labels: Tensor, confidence: Tensor) -> Tensor:
        """c_n / N_d: confidence-weighted mean over each dataset's pixels (Eqs. 5–6), summed over datasets."""
        dataset = self._keypoint_dataset_on(labels.device)[labels]
        per_dataset = torch.bincount(dataset, minlength=len(self.offsets)).clamp_min(1)
        return confidence / per_dataset[dataset]

    def _proto_terms(self, fg: Foreground, bank: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """PPC, PPD of sampled pixels against their dataset's prototypes; also the Sinkhorn assignment and weight.

        A pixel competes only with its own dataset's K_d·M prototypes, so the logits are computed per dataset block
        (as the released code does) rather than against all J·M and masked: 1/6 of the work with six datasets.
        """
        embeddings = fg.embeddings.float()
        n, m = len(fg.labels), bank.shape[1]
        dataset = self._keypoint_dataset_on(fg.labels.device)[fg.labels]
        pixel_weight = self._pixel_weight(fg.labels, fg.confidence)
        own_scores = embeddings.new_zeros(n, m)
        blocks = []
        for d in torch.unique(dataset).tolist():
            rows = (dataset == d).nonzero(as_tuple=True)[0]
            start, k = self.offsets[d], self.sizes[d]
            local = fg.labels[rows] - start
            logits = ops.cosine_logits(embeddings[rows], bank[start:start + k])  # [N_d, K_d, M]
            own_scores[rows] = logits.detach()[torch.arange(len(rows), device=logits.device), local]
            blocks.append((rows, local, logits))
        q = ops.sinkhorn(own_scores, fg.labels, self.config.sinkhorn_kappa, self.config.sinkhorn_iters)
        weight, assign = q.max(dim=1)  # Eq. 3 takes the argmax; Eq. 4 weighs with the max
        ppc = ppd = embeddings.sum() * 0.0
        for rows, local, logits in blocks:
            block_ppc, block_ppd = ops.ppc_ppd(logits, local, assign[rows], pixel_weight[rows])
            ppc, ppd = ppc + block_ppc, ppd + block_ppd
        return ppc, ppd, assign, weight

    # ------------------------------------------------------------------------------------------------ API

    def losses(self, batch: dict, stage) -> dict[str, Tensor]:
        active = set(stage.losses)
        unknown = active - set(LOSS_NAMES)
        if unknown:
            raise input_error("recipe", f"unknown loss {sorted(unknown)[0]!r} for posebh (known: {', '.join(LOSS_NAMES)})",
                              field=f"stages.{stage.name}.losses")
        update = stage.prototypes == "update"
        needs_embedding = bool(active - {"heatmap"}) or update
        # CSS reads every head on the other datasets' samples; without it a head's other rows are masked out of
        # its loss, so "own" skips computing them (5/6 of the head work with six datasets).
        heads = "all" if "css" in active else self.config.heads
        out = self.model(batch["images"], batch["dataset_idx"], heads=heads, with_embedding=needs_embedding)
        terms: dict[str, Tensor] = {}
        if "heatmap" in active:
            terms.update(heatmap_losses(out["heatmaps"], batch, self.datasets, self.config.heatmap_normalize))
        if not needs_embedding:
            return terms

        device_type = batch["images"].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            terms.update(self._embedding_losses(out, batch, stage, active, update))
        return terms

    @torch.no_grad()
    def _align_imported_signs(self, embeddings: Tensor, batch: dict, offsets: Tensor) -> None:
        """Flip the imported prototypes whose matched pixels have a negative cosine sum (see `ops.sign_votes`).

        Votes are summed over processes so every rank flips the same rows; a keypoint is settled once it had
        pixels anywhere, and the bank is scored with plain cosine from then on.
        """
        fg = ops.sample_foreground(batch["heatmaps"], batch["target_weight"], embeddings, offsets[batch["dataset_idx"]],
                                   self.config.foreground_threshold, self.config.max_foreground_pixels)
        bank = self._core().prototypes.prototypes
        votes = ops.all_reduce_mean(ops.sign_votes(bank, fg.embeddings, fg.labels), self._num_processes())
        counts = torch.bincount(fg.labels, minlength=bank.shape[0]).float()
        seen = (ops.all_reduce_mean(counts, self._num_processes()) > 0).cpu()
        pending = self._signs_to_check.to(bank.device)[:, None]
        flip = (votes < 0) & pending
        bank.copy_(torch.where(flip[..., None], -bank, bank))
        self._signs_to_check &= ~seen
        if not self._signs_to_check.any():
            self._signs_to_check = None
            self._core().prototypes.abs_similarity = False

    def _embedding_losses(self, out: dict, batch: dict, stage, active: set, update: bool) -> dict[str, Tensor]:
        cfg = self.config
        embeddings = out["embeddings"].float()
        if self._signs_to_check is not None:
            self._align_imported_signs(embeddings.detach(), batch, torch.tensor(self.offsets, device=embeddings.device))
        bank = self._bank.detach().float()
        dataset_idx = batch["dataset_idx"]
        offsets = torch.tensor(self.offsets, device=dataset_idx.device)
        terms: dict[str, Tensor] = {}

        if active & {"proto", "cluster"} or update:
            fg = ops.sample_foreground(batch["heatmaps"], batch["target_weight"], embeddings, offsets[dataset_idx],
                                      cfg.foreground_threshold, cfg.max_foreground_pixels)
            ppc, ppd, assign, weight = self._proto_terms(fg, bank)
            if "proto" in active:
                terms["proto_ppc"] = cfg.ppc_weight * ppc
                terms["proto_ppd"] = cfg.ppd_weight * ppd
            if update:
                self._pending.append((fg.embeddings.detach(), fg.labels, assign, weight))
            if "cluster" in active:
                terms["cluster"] = self._cluster_loss(fg, stage)

        if active & {"proto_heatmap", "css"}:
            phm_terms = []
            css_terms = []
            for d, (start, k) in enumerate(zip(self.offsets, self.sizes)):
                own = dataset_idx == d
                rows = torch.ones_like(own) if "css" in active else own
                phm = ops.prototype_heatmaps(embeddings[rows], bank[start:start + k])
                own_phm = phm[own[rows]]
                if "proto_heatmap" in active:
                    phm_terms.append(_mean_mse(own_phm, batch["heatmaps"][own, :k], batch["target_weight"][own, :k]))
                if "css" in active and (~own).any():
                    css_terms.append(self._css_loss(d, out["heatmaps"][d][~own].float(), phm[~own], embeddings[~own]))
            if phm_terms:
                terms["proto_heatmap"] = cfg.proto_heatmap_weight * torch.stack(phm_terms).sum()
            if "css" in active:
                terms["css"] = cfg.css_weight * (torch.stack(css_terms).sum() if css_terms else embeddings.sum() * 0.0)
        return terms

    def _cluster_loss(self, fg: Foreground, stage) -> Tensor:
        """Cross-dataset negatives: PPC/PPD against every cluster, target = the cluster of the pixel's keypoint."""
        if self.clusters is None:
            raise input_error("recipe", "loss 'cluster' needs 'cluster_prototypes' in on_start of this or an "
                              "earlier stage", field=f"stages.{stage.name}.losses")
        c = self.clusters
        logits = ops.cosine_logits(fg.embeddings.float(), c.prototypes)  # [N, C, M']
        logits = logits.masked_fill(~c.valid[None], float("-inf"))
        target = c.keypoint_cluster[fg.labels]
        # Within the target cluster the nearest valid member is the positive (the clusters are frozen).
        slot = logits.detach()[torch.arange(len(target), device=logits.device), target].argmax(dim=1)
        ppc, ppd = ops.ppc_ppd(logits, target, slot, self._pixel_weight(fg.labels, fg.confidence))
        return self.config.cluster_weight * (self.config.ppc_weight * ppc + self.config.ppd_weight * ppd)

    def _css_loss(self, d: int, head: Tensor, phm: Tensor, embeddings: Tensor) -> Tensor:
        """Eq. 8 for dataset d on the other datasets' samples: head MSE + prototype losses against pseudo labels."""
        cfg = self.config
        pseudo, weight = ops.css_pseudo_labels(head, phm, cfg.css_conf_thr, cfg.css_dist_thr, cfg.css_sigma)
        loss = _mean_mse(head, pseudo, weight) + cfg.proto_heatmap_weight * _mean_mse(phm, pseudo, weight)
        offset = torch.full((len(head),), self.offsets[d], device=head.device, dtype=torch.long)
        fg = ops.sample_foreground(pseudo, weight, embeddings, offset, cfg.foreground_threshold,
                                   cfg.max_foreground_pixels)
        ppc, ppd, _, _ = self._proto_terms(fg, self._bank.detach().float())
        return loss + cfg.ppc_weight * ppc + cfg.ppd_weight * ppd

    @torch.no_grad()
    def after_step(self, batch: dict, stage) -> None:
        """Momentum update (Eq. 4) from the pixels of this step, then average the bank over processes."""
        pending, self._pending = self._pending, []
        if stage.prototypes != "update":
            return
        bank = self._core().prototypes.prototypes
        new = bank.float()
        if pending:
            emb, labels, assign, weight = (torch.cat(parts) for parts in zip(*pending))
            finite = torch.isfinite(emb).all(dim=1)  # a step the engine skipped as non-finite must not poison the bank
            new = ops.momentum_update(new, emb[finite], labels[finite], assign[finite], weight[finite],
                                      self.config.momentum)
        # Every process joins the all-reduce, even one that sampled no pixel, or the collective would hang.
        new = ops.l2_normalize(ops.all_reduce_mean(new, self._num_processes()))
        bank.copy_(new.to(bank.dtype))

    def on_stage_start(self, stage) -> None:
        for action in stage.on_start:
            if action not in ON_START:
                raise input_error("recipe", f"action {action!r} is not supported by method posebh (known: "
                                  f"{', '.join(ON_START)})", field=f"stages.{stage.name}.on_start")
        if "cluster_prototypes" in stage.on_start:
            bank = self._bank
            num_keypoints, per_keypoint = bank.shape[:2]
            # Never more clusters than half the keypoints: a cluster should gather related keypoints.
            k = max(1, min(self.config.num_clusters, num_keypoints // 2))
            self.clusters = ops.build_clusters(bank, k, per_keypoint, self.config.kmeans_iters, self.config.kmeans_seed)

    def state_dict(self) -> dict:
        return {"clusters": None if self.clusters is None else self.clusters.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        clusters = state.get("clusters")
        self.clusters = None if clusters is None else Clusters.from_state_dict(clusters, self._bank.device)


def _mean_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """JointsMSE with target weights averaged over the given rows (the prototype and CSS terms)."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    every_row = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
    return masked_joints_mse(pred, target, weight, every_row, normalize="dataset")
