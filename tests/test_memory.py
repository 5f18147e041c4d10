"""The caching device allocator: accounting, caching, stats, OOM, pinned memory."""
from __future__ import annotations

import gc

import pytest
import torch

from conftest import run_python

MiB = 1 << 20


def setup_function():
    gc.collect()
    torch.qdev.empty_cache()


def test_allocated_tracks_live_tensors():
    base = torch.qdev.memory_allocated(0)
    x = torch.empty(MiB, dtype=torch.uint8, device="qdev")
    assert torch.qdev.memory_allocated(0) == base + MiB
    assert torch.accelerator.memory_allocated(0) == base + MiB
    del x
    assert torch.qdev.memory_allocated(0) == base


def test_memory_is_per_device():
    base0, base1 = torch.qdev.memory_allocated(0), torch.qdev.memory_allocated(1)
    y = torch.empty(4 * MiB, dtype=torch.uint8, device="qdev:1")
    assert torch.qdev.memory_allocated(1) == base1 + 4 * MiB
    assert torch.qdev.memory_allocated(0) == base0
    del y


def test_freed_blocks_are_cached_and_reused():
    x = torch.empty(3 * MiB, dtype=torch.uint8, device="qdev")
    reserved = torch.qdev.memory_reserved()
    ptr = x.data_ptr()
    del x
    assert torch.qdev.memory_reserved() == reserved  # still cached
    y = torch.empty(3 * MiB, dtype=torch.uint8, device="qdev")
    assert y.data_ptr() == ptr
    assert torch.qdev.memory_stats()["num_device_alloc"] >= 1
    del y
    torch.qdev.empty_cache()
    assert torch.qdev.memory_reserved() == reserved - 4 * MiB  # 3 MiB rounds to a 4 MiB block


def test_empty_cache_returns_memory_to_the_device():
    free_before, _ = torch.qdev.mem_get_info()
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="qdev")
    free_during, total = torch.qdev.mem_get_info()
    assert free_during <= free_before - 64 * MiB
    del x
    torch.qdev.empty_cache()
    assert torch.qdev.mem_get_info()[0] == free_before
    assert total == torch.qdev.get_device_properties().total_memory


def test_peak_and_reset():
    torch.qdev.reset_peak_memory_stats()
    base = torch.qdev.memory_allocated()
    x = torch.empty(8 * MiB, dtype=torch.uint8, device="qdev")
    del x
    assert torch.qdev.max_memory_allocated() >= base + 8 * MiB
    torch.qdev.reset_peak_memory_stats()
    assert torch.qdev.max_memory_allocated() == torch.qdev.memory_allocated()
    assert torch.qdev.max_memory_reserved() >= torch.qdev.memory_reserved()


def test_memory_stats_keys_and_accumulated_reset():
    x = torch.empty(1000, device="qdev")
    stats = torch.qdev.memory_stats()
    for key in ("allocated_bytes.all.current", "reserved_bytes.all.peak", "allocation.all.allocated",
                "active_bytes.small_pool.current", "segment.large_pool.current", "num_ooms"):
        assert key in stats, key
    assert stats["allocation.all.current"] >= 1
    assert stats["requested_bytes.all.current"] >= 4000
    torch.qdev.reset_accumulated_memory_stats()
    assert torch.qdev.memory_stats()["allocation.all.allocated"] == 0
    del x
    assert "allocated" in torch.qdev.memory_summary()


def test_zero_sized_tensor_allocates_nothing():
    base = torch.qdev.memory_allocated()
    e = torch.empty(0, 5, device="qdev")
    assert e.numel() == 0 and torch.qdev.memory_allocated() == base
    assert e.cpu().shape == (0, 5)


def test_out_of_memory_raises_and_process_continues():
    total = torch.qdev.get_device_properties().total_memory
    with pytest.raises(torch.OutOfMemoryError, match=r"QDEV out of memory\. Tried to allocate .* GiB"):
        torch.empty(total + (1 << 30), dtype=torch.uint8, device="qdev")
    assert torch.qdev.memory_stats()["num_ooms"] >= 1
    assert torch.ones(3, device="qdev").sum().item() == 3.0


def test_oom_frees_cache_and_retries():
    r = run_python("""
        import torch
        MiB = 1 << 20
        a = torch.empty(40 * MiB, dtype=torch.uint8, device='qdev')
        del a                         # 40 MiB stays cached ...
        b = torch.empty(50 * MiB, dtype=torch.uint8, device='qdev')  # ... and must be released
        s = torch.qdev.memory_stats()
        print(s['num_alloc_retries'], s['num_ooms'], torch.qdev.memory_reserved() // MiB)
        try:
            torch.empty(20 * MiB, dtype=torch.uint8, device='qdev')
        except torch.OutOfMemoryError as e:
            print('OOM', 'capacity of 64.00 MiB' in str(e))
    """, env={"QDEV_MEMORY_LIMIT": "64MiB"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0", "50", "OOM", "True"]


def test_caching_can_be_disabled():
    r = run_python("""
        import torch
        x = torch.empty(1 << 20, dtype=torch.uint8, device='qdev')
        del x
        print(torch.qdev.memory_reserved())
    """, env={"PYTORCH_NO_QDEV_MEMORY_CACHING": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


def test_pinned_memory():
    x = torch.randn(100)
    p = x.pin_memory()
    assert p.is_pinned() and not x.is_pinned()
    assert p.device.type == "cpu"
    assert torch.equal(p, x)
    assert p[10:].is_pinned()
    e = torch.empty(10, pin_memory=True)
    assert e.is_pinned()
    s = x.untyped_storage().pin_memory()
    assert s.is_pinned()


def test_many_allocations_do_not_leak():
    base = torch.qdev.memory_allocated()
    for i in range(200):
        t = torch.randn(257 + i, device="qdev")
        t = t * 2
    del t
    assert torch.qdev.memory_allocated() == base
