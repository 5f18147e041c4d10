"""Shared measurement helpers for the benchmarks (see shared/reference/perf_anchors.md §0).

The machine is shared: every measurement first waits for a quiet window (other
processes using < 0.08 CPU) and is repeated (up to 3x) when others used > 0.15
CPU during it. Timings are medians. Decode (M=1) rotates over weight copies
totalling >= 160 MiB, so that weights come from DRAM, not the 32 MiB L3.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

_HZ = os.sysconf("SC_CLK_TCK")


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]


def _self_jiffies() -> int:
    with open("/proc/self/stat") as f:
        tail = f.read().rsplit(")", 1)[1].split()
    return int(tail[11]) + int(tail[12])


class Foreign:
    """CPUs used by other processes between start() and stop()."""

    def start(self) -> "Foreign":
        self.t, self.b, self.s = time.time(), _busy_jiffies(), _self_jiffies()
        return self

    def stop(self) -> float:
        dt = max(time.time() - self.t, 1e-3)
        return max(0.0, ((_busy_jiffies() - self.b) - (_self_jiffies() - self.s)) / _HZ / dt)


def wait_quiet(threshold: float = 0.08, window: float = 0.3, max_wait: float = 60.0) -> float:
    t0 = time.time()
    while True:
        f = Foreign().start()
        time.sleep(window)
        if f.stop() < threshold or time.time() - t0 > max_wait:
            return time.time() - t0


def measure(run: Callable[[int], object], copies: int, target_s: float = 0.5,
            max_iter: int = 200, min_iter: int = 5) -> tuple[float, float]:
    """Median seconds per call of run(copy_index), rotating copies; returns (median, foreign CPU)."""
    for attempt in range(3):
        for i in range(max(2, copies)):  # warm-up, and one touch of every copy
            run(i % copies)
        t0 = time.perf_counter()
        run(0)
        one = max(time.perf_counter() - t0, 1e-6)
        n = int(min(max_iter, max(min_iter, target_s / one)))
        wait_quiet()
        f = Foreign().start()
        ts = []
        for i in range(n):
            t = time.perf_counter()
            run(i % copies)
            ts.append(time.perf_counter() - t)
        foreign = f.stop()
        if foreign <= 0.15 or attempt == 2:
            return statistics.median(ts), foreign
    raise AssertionError("unreachable")


def read_bandwidth() -> tuple[float, float]:
    """DRAM read GB/s with torch's threads over 1 GiB (median of 7): (streaming read, torch.sum).

    The streaming read (torch_qdev._C._read_seconds) is what a decode kernel can reach;
    torch.sum under-reports it by ~25 % here.
    """
    import torch_qdev

    x = torch.ones((1 << 30) // 4)
    x.sum()
    torch_qdev._C._read_seconds(x)
    wait_quiet()
    stream, tsum = [], []
    for _ in range(7):
        stream.append(torch_qdev._C._read_seconds(x)[0])
        t = time.perf_counter()
        x.sum()
        tsum.append(time.perf_counter() - t)
    return (1 << 30) / statistics.median(stream) / 1e9, (1 << 30) / statistics.median(tsum) / 1e9


def copies_for(bytes_per_copy: int, total: int = 160 << 20) -> int:
    return max(1, -(-total // bytes_per_copy))
