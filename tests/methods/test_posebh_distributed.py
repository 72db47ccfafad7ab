"""Two real gloo processes: after a momentum step the prototype banks of both ranks are identical."""
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, store_path: str, out_dir: str) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_posebh_method import Stage, make_batch, make_method

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        method, model = make_method({"momentum": 0.5})
        method.accelerator = SimpleNamespace(num_processes=2, unwrap_model=lambda m: m)
        stage = Stage()
        if rank == 0:  # rank 1 samples no pixel at all and must still join the all-reduce
            method.losses(make_batch([0, 1], seed=rank), stage)
        method.after_step(None, stage)
        torch.save(model.prototypes.prototypes, Path(out_dir) / f"bank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_banks_agree_across_two_processes():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(str(Path(tmp) / "store"), tmp), nprocs=2, join=True)
        bank0, bank1 = (torch.load(Path(tmp) / f"bank{r}.pt") for r in range(2))
    assert torch.equal(bank0, bank1)
    assert torch.allclose(bank0.norm(dim=-1), torch.ones(bank0.shape[:2]), atol=1e-5)
