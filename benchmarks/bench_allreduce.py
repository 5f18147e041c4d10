"""What an all-reduce costs on this machine: qccl on qdev tensors beside plain gloo on CPU tensors.

    .venv/bin/python benchmarks/bench_allreduce.py [--ranks 2] [--quick]

Spawns --ranks processes on 127.0.0.1 (gloo over loopback TCP, the only transport qccl has) and
times float32 all_reduce (SUM) from 8 bytes to 64 MiB (--quick: to 4 MiB) for three paths in one
group: qccl with qdev tensors, qccl with CPU tensors, and a separate ProcessGroupGloo with CPU
tensors (the peer: what qccl delegates to). Small sizes report latency (median us), large ones
algorithm bandwidth (bytes / time, GB/s) beside the machine's memory read bandwidth measured in
the same run: the loopback path copies every byte several times.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def timed(fn, reps: int) -> float:
    fn()
    dist.barrier()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    # the slowest rank bounds a collective: take the max of the medians
    t = torch.tensor([statistics.median(times)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def worker(rank: int, world: int, port: int, sizes: list[int], out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    import torch_qdev  # noqa: F401

    torch.qdev.set_device(rank % torch.qdev.device_count())
    dist.init_process_group("qccl", rank=rank, world_size=world)
    gloo = dist.new_group(backend="gloo")
    rows = []
    for nbytes in sizes:
        n = max(1, nbytes // 4)
        reps = 200 if nbytes <= 1 << 16 else (20 if nbytes <= 1 << 22 else 5)
        q = torch.ones(n, device="qdev")
        c = torch.ones(n)
        t_q = timed(lambda: dist.all_reduce(q), reps)
        t_c = timed(lambda: dist.all_reduce(c), reps)
        t_g = timed(lambda: dist.all_reduce(c, group=gloo), reps)
        rows.append((n * 4, t_q, t_c, t_g))
    if rank == 0:
        out["rows"] = rows
    dist.destroy_process_group()


def read_gbs() -> float:
    """Streaming read GB/s of 256 MiB with torch's threads (median of 5)."""
    import torch_qdev

    x = torch.ones(1 << 26)
    torch_qdev._C._read_seconds(x)
    return x.nbytes / statistics.median(torch_qdev._C._read_seconds(x)[0] for _ in range(5)) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="sizes up to 4 MiB only")
    p.add_argument("--port", type=int, default=29533)
    args = p.parse_args()
    top = 22 if args.quick else 26
    sizes = [8, 64, 512, 4096, 32768] + [1 << s for s in range(18, top + 1, 2)]
    mem = read_gbs()
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(worker, args=(args.ranks, args.port, sizes, out), nprocs=args.ranks)
    print(f"all_reduce SUM float32, {args.ranks} ranks on 127.0.0.1 (gloo TCP loopback), 1 thread/rank; "
          f"memory read {mem:.1f} GB/s (in-run)")
    print(f"{'bytes':>10} | {'qccl qdev':>12} {'qccl cpu':>12} {'gloo cpu':>12} | {'qdev/gloo':>9} | "
          f"{'qdev GB/s':>9} {'gloo GB/s':>9}")
    for nbytes, tq, tc, tg in out["rows"]:
        print(f"{nbytes:>10} | {tq * 1e6:>10.1f}us {tc * 1e6:>10.1f}us {tg * 1e6:>10.1f}us | {tq / tg:>9.2f} | "
              f"{nbytes / tq / 1e9:>9.3f} {nbytes / tg / 1e9:>9.3f}")


if __name__ == "__main__":
    main()
