"""Several Python threads using qdev at once."""
from __future__ import annotations

import gc
import threading

import torch


def setup_function():
    # Garbage from earlier tests (e.g. exception tracebacks holding tensors) must not be
    # collected in the middle of an allocator-accounting test.
    gc.collect()
    torch.qdev.empty_cache()


def test_concurrent_compute_allocation_and_devices():
    errors: list[BaseException] = []
    results: dict[int, bool] = {}

    def worker(i: int) -> None:
        try:
            device = f"qdev:{i % 2}"
            torch.qdev.set_device(i % 2)
            g = torch.Generator(device=device).manual_seed(i)
            for _ in range(30):
                a = torch.randn(64, 64, device=device, generator=g)
                b = a @ a.t()
                c = b.cpu()
                assert torch.allclose(c, a.cpu() @ a.cpu().t(), atol=1e-4)
                s = torch.qdev.Stream()
                with torch.qdev.stream(s):
                    d = torch.ones(1000).pin_memory().to(device, non_blocking=True) * 2
                s.synchronize()
                assert d.sum().item() == 2000
            results[i] = torch.qdev.current_device() == i % 2
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == {i: True for i in range(6)}
    assert torch.qdev.current_device() == 0


def test_concurrent_allocator_stats_stay_consistent():
    base = torch.qdev.memory_allocated(0)

    def churn() -> None:
        for i in range(300):
            t = torch.empty(1000 + i, device="qdev:0")
            del t

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.qdev.memory_allocated(0) == base
