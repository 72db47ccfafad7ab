"""Multi-dataset sampling over the index space of a ConcatDataset.

* `ratios=None` (the official ViTPose++/PoseBH behaviour): one shuffled permutation of all samples, so each
  dataset appears in proportion to its size.
* explicit ratios: every slot of every global batch picks its dataset with probability ratio / sum(ratios);
  within a dataset, samples come from back-to-back shuffled passes (no repeats until a pass is used up).

An epoch is `epoch_length` samples (default: the sum of the sizes), cut into global batches of
`batch_size * num_replicas`. Rank r takes columns [r * batch_size, (r + 1) * batch_size) of each global batch,
so the ranks see disjoint slices of one global order and a DataLoader with `batch_size` on each rank rebuilds
exactly those slices. The order depends only on (seed, epoch).

Resume: `state_dict()` is {epoch, position}, position = indices of this epoch already handed out on this rank.
A DataLoader with workers asks the sampler ahead of the training loop, so the trainer should save
`state_dict(position=steps_done_in_epoch * batch_size)`; `load_state_dict` then continues at that index.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from posebh_cli.errors import PosebhError


def _check_ratios(ratios: list[float], sizes: list[int]) -> np.ndarray:
    if len(ratios) != len(sizes):
        raise PosebhError(f"sampling ratios: expected {len(sizes)} values (one per dataset), got {len(ratios)}")
    values = np.asarray(ratios, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise PosebhError(f"sampling ratios must be non-negative with a positive sum, got {list(ratios)}")
    for i, (ratio, size) in enumerate(zip(values, sizes)):
        if ratio > 0 and size == 0:
            raise PosebhError(f"sampling ratios: dataset {i} has ratio {ratio:g} but no samples")
    return values / values.sum()


class MultiDatasetSampler(torch.utils.data.Sampler):
    """Yields this rank's ConcatDataset indices for one epoch; see the module docstring."""

    def __init__(self, dataset_sizes: list[int], ratios: list[float] | None, batch_size: int,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = True,
                 epoch_length: int | None = None):
        self.sizes = [int(n) for n in dataset_sizes]
        if not self.sizes or any(n < 0 for n in self.sizes) or sum(self.sizes) == 0:
            raise PosebhError(f"sampler needs at least one non-empty dataset, got sizes {self.sizes}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.probs = None if ratios is None else _check_ratios(list(ratios), self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch_length = int(epoch_length) if epoch_length is not None else sum(self.sizes)
        self.global_batch = self.batch_size * self.num_replicas
        if self.drop_last:
            self.num_batches = self.epoch_length // self.global_batch
        else:
            self.num_batches = -(-self.epoch_length // self.global_batch)
        if self.num_batches == 0:
            raise PosebhError(f"an epoch of {self.epoch_length} samples holds no global batch of {self.global_batch}")
        self.epoch = 0
        self.position = 0
        self._loaded = False  # a loaded position is honoured as is, even at the epoch's end

    def __len__(self) -> int:
        """Indices per rank per epoch."""
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning, unless it is the epoch a loaded state is in the middle of."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0
            self._loaded = False

    def global_order(self, epoch: int) -> np.ndarray:
        """All ranks' indices of one epoch, [num_batches, global_batch]."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        total = self.num_batches * self.global_batch
        if self.probs is None:
            order = rng.permutation(sum(self.sizes))
            # Longer than one pass (epoch_length or padding): continue with fresh permutations.
            while len(order) < total:
                order = np.concatenate([order, rng.permutation(sum(self.sizes))])
            order = order[:total]
        else:
            choice = rng.choice(len(self.sizes), size=total, p=self.probs)
            order = np.empty(total, dtype=np.int64)
            for d, size in enumerate(self.sizes):
                slots = np.flatnonzero(choice == d)
                if len(slots) == 0:
                    continue
                passes = -(-len(slots) // size)
                local = np.concatenate([rng.permutation(size) for _ in range(passes)])[: len(slots)]
                order[slots] = self.offsets[d] + local
        return order.reshape(self.num_batches, self.global_batch)

    def rank_order(self, epoch: int) -> np.ndarray:
        """This rank's indices of one epoch, in the order they are yielded."""
        columns = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return self.global_order(epoch)[:, columns].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        if self.position >= len(self) and not self._loaded:
            self.position = 0           # a finished epoch iterated again starts over
        # A state saved after the epoch's last batch resumes with nothing left of that epoch (not a replay).
        self._loaded = False
        order = self.rank_order(self.epoch)
        while self.position < len(order):
            index = int(order[self.position])
            self.position += 1
            yield index

    def state_dict(self, position: int | None = None) -> dict:
        """{epoch, position}; pass `position` when the consumer lags the sampler (DataLoader prefetch)."""
        return {"epoch": self.epoch, "position": self.position if position is None else int(position)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._loaded = True
