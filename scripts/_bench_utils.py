"""Shared pieces of the benchmark scripts: device/dtype options, timing with spread, FLOP counting, device peak,
and a record of the machine and commit every figure was measured on."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
from torch.utils import flop_counter

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench_*.py` from a checkout
    sys.path.insert(0, str(REPO))

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                        help="compute dtype (bf16 via autocast; on this CPU bf16 is 7-50x slower than fp32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); use 1 on a CPU shared with other jobs, "
                             "where spinning OpenMP threads make 2 threads many times slower than 1")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the spread is reported")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32; bf16 is asked for with --dtype
        torch.backends.cudnn.benchmark = True
    return device


def autocast(device: torch.device, dtype: str):
    """fp32: a no-op context; bf16/fp16: autocast on the device (what Accelerate's mixed precision does)."""
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, iters: int, repeats: int, warmup: int = 1) -> dict:
    """Seconds per call: each repeat times `iters` calls after `warmup` untimed ones. Median, min, max of repeats.

    `cpu` holds the same for the CPU time of this process (all its threads). On a CPU shared with other jobs the
    wall time depends on the load; with --threads 1 the CPU time is close to what an idle core would give.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            fn()
        synchronize(device)
        wall.append((time.perf_counter() - start) / iters)
        cpu.append((time.process_time() - start_cpu) / iters)
    return spread(wall) | {"cpu": spread(cpu)}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


class StageTimer:
    """Accumulates the process CPU time of wrapped functions, by stage name (patched in only for a benchmark run).

    CPU time rather than wall time: on a shared machine a stage's wall time mostly says when the scheduler let
    this process run. It counts every thread of the process, so use it with --threads 1 for shares that add up.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack = contextlib.ExitStack()

    def wrap(self, owner, attr: str, stage: str, sync: bool = False) -> None:
        original = getattr(owner, attr)

        def timed(*a, **kw):
            start = time.process_time()
            out = original(*a, **kw)
            if sync:
                synchronize(self.device)
            self.seconds[stage] += time.process_time() - start
            return out

        setattr(owner, attr, timed)
        self._stack.callback(setattr, owner, attr, original)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()


def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


# The fused CPU attention kernel has no formula in torch's counter; count it like the GPU kernels.
_CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of one call, counted by torch.utils.flop_counter."""
    with flop_counter.FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def measure_peak_flops(device: torch.device, dtype: str = "fp32", size: int | None = None, repeats: int = 3) -> float:
    """Achievable matmul FLOP/s: the best of `repeats` timings of a large square matmul in `dtype`.

    On the CPU it is FLOPs per CPU-second (per busy core), the unit `rate_for_mfu` gives model rates in.
    """
    # bf16 on an AVX2 CPU runs at a few GFLOP/s: a smaller product keeps the measurement to seconds.
    size = size or (8192 if device.type == "cuda" else 2048 if dtype == "fp32" else 1024)
    a = torch.randn(size, size, device=device, dtype=DTYPES[dtype])
    b = torch.randn(size, size, device=device, dtype=DTYPES[dtype])
    iters = 20 if device.type == "cuda" else 2
    stats = time_call(lambda: a @ b, device, iters=iters, repeats=repeats)
    return 2 * size ** 3 / (stats["cpu"] if device.type == "cpu" else stats)["min"]


def rate_for_mfu(stats: dict, items: int, device: torch.device) -> float:
    """Items per second in the unit of `measure_peak_flops`: per CPU-second on the CPU, per wall second on a GPU."""
    return items / (stats["cpu"] if device.type == "cpu" else stats)["median"]


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(device: torch.device) -> dict:
    """Commit, CPU model, cores, threads, GPU, and the load average when the measurement started."""
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no", "posebh_cli"]))
    cpu = next((line.split(":", 1)[1].strip() for line in _run(["lscpu"]).splitlines()
                if line.startswith("Model name")), platform.processor())
    info = {"commit": commit + ("+dirty" if dirty else ""), "cpu": cpu, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_header(title: str, info: dict) -> None:
    print(f"# {title}")
    print("# " + ", ".join(f"{k}={v}" for k, v in info.items()))


def fmt(stats: dict, scale: float = 1.0, unit: str = "") -> str:
    """median [min-max] of a spread, multiplied by `scale`."""
    return f"{stats['median'] * scale:.3g}{unit} [{stats['min'] * scale:.3g}-{stats['max'] * scale:.3g}]"


def write_json(path: str | None, record: dict) -> None:
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)  # never a half-written results file
