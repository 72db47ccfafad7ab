import numpy as np
import pytest
import torch

from posebh_cli.data.sampler import MultiDatasetSampler
from posebh_cli.errors import PosebhError

SIZES = [600, 300, 100]


def dataset_of(indices, sizes=SIZES):
    return np.searchsorted(np.cumsum(sizes), np.asarray(indices), side="right")


def test_default_is_one_permutation_proportional_to_size():
    sampler = MultiDatasetSampler(SIZES, None, batch_size=10)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 1000
    assert sorted(indices) == list(range(1000))
    assert np.bincount(dataset_of(indices)).tolist() == SIZES


def test_explicit_ratios_hold_per_batch_and_overall():
    sampler = MultiDatasetSampler(SIZES, [1, 1, 2], batch_size=50, epoch_length=20000)
    indices = np.array(list(sampler))
    share = np.bincount(dataset_of(indices), minlength=3) / len(indices)
    assert np.allclose(share, [0.25, 0.25, 0.5], atol=0.02)
    # Every global batch is a mix drawn by the ratios, not whole batches of one dataset.
    per_batch = np.stack([np.bincount(b, minlength=3) for b in dataset_of(indices).reshape(-1, 50)])
    assert (per_batch > 0).all(axis=1).mean() > 0.95
    # A small dataset is cycled through full shuffled passes: no sample repeats within a pass.
    small = indices[dataset_of(indices) == 2][:100]
    assert sorted(small) == list(range(900, 1000))


def test_zero_ratio_never_drawn_and_bad_ratios_rejected():
    indices = np.array(list(MultiDatasetSampler(SIZES, [1, 0, 1], batch_size=10)))
    assert 1 not in set(dataset_of(indices))
    with pytest.raises(PosebhError, match="expected 3 values"):
        MultiDatasetSampler(SIZES, [1, 1], batch_size=10)
    with pytest.raises(PosebhError, match="non-negative"):
        MultiDatasetSampler(SIZES, [1, -1, 1], batch_size=10)
    with pytest.raises(PosebhError, match="no samples"):
        MultiDatasetSampler([10, 0], [1, 1], batch_size=2)


@pytest.mark.parametrize("ratios", [None, [3, 2, 1]])
def test_ranks_take_disjoint_slices_of_one_global_order(ratios):
    ranks = [MultiDatasetSampler(SIZES, ratios, batch_size=8, num_replicas=3, rank=r, seed=5) for r in range(3)]
    per_rank = [np.array(list(s)).reshape(-1, 8) for s in ranks]
    assert all(len(p) == ranks[0].num_batches == 1000 // 24 for p in per_rank)
    rebuilt = np.concatenate(per_rank, axis=1)
    assert np.array_equal(rebuilt, ranks[0].global_order(0))
    if ratios is None:
        flat = rebuilt.reshape(-1)
        assert len(set(flat.tolist())) == len(flat)


def test_epochs_and_seeds_change_the_order_deterministically():
    a = MultiDatasetSampler(SIZES, None, batch_size=10, seed=1)
    b = MultiDatasetSampler(SIZES, None, batch_size=10, seed=1)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first
    assert list(MultiDatasetSampler(SIZES, None, batch_size=10, seed=2)) != first


def test_drop_last_false_pads_the_last_batch():
    sampler = MultiDatasetSampler([7, 5], None, batch_size=5, drop_last=False)
    assert len(list(sampler)) == len(sampler) == 15
    assert len(MultiDatasetSampler([7, 5], None, batch_size=5, drop_last=True)) == 10


@pytest.mark.parametrize("ratios", [None, [1, 2, 1]])
def test_resume_continues_exactly(ratios):
    def make():
        return MultiDatasetSampler(SIZES, ratios, batch_size=4, num_replicas=2, rank=1, seed=3)

    uninterrupted = []
    full = make()
    for epoch in range(2):
        full.set_epoch(epoch)
        uninterrupted += list(full)

    first = make()
    first.set_epoch(0)
    done = []
    stream = iter(first)
    for _ in range(7 * 4):                 # 7 batches of 4
        done.append(next(stream))
    state = first.state_dict()
    assert state == {"epoch": 0, "position": 28}

    resumed = make()
    resumed.load_state_dict(state)
    for epoch in range(0, 2):
        resumed.set_epoch(epoch)           # the trainer's loop calls this again for the epoch it resumes in
        done += list(resumed)
    assert done == uninterrupted


def test_state_dict_with_prefetching_dataloader():
    sampler = MultiDatasetSampler(SIZES, [1, 1, 1], batch_size=5, seed=9)
    expected = list(sampler)
    loader = torch.utils.data.DataLoader(list(range(1000)), batch_size=5, sampler=sampler)
    seen = []
    for step, batch in enumerate(loader):
        seen += batch.tolist()
        if step == 3:
            break
    state = sampler.state_dict(position=4 * 5)
    resumed = MultiDatasetSampler(SIZES, [1, 1, 1], batch_size=5, seed=9)
    resumed.load_state_dict(state)
    assert seen + list(resumed) == expected


def test_a_state_saved_after_the_last_batch_resumes_with_nothing_left_of_the_epoch():
    sampler = MultiDatasetSampler([6, 6], None, batch_size=4)
    full = list(sampler)
    assert len(full) == 12 and list(sampler) == full  # iterated again without a loaded state: starts over
    resumed = MultiDatasetSampler([6, 6], None, batch_size=4)
    resumed.load_state_dict({"epoch": 0, "position": 12})  # saved at the epoch's last batch
    assert list(resumed) == []  # not a replay of the epoch
    assert list(resumed) == full  # the next pass is a normal one again
