"""Streams and events: torch.qdev.Stream/Event, torch.Stream/torch.Event, ordering."""
from __future__ import annotations

import gc
import time

import pytest
import torch


def test_default_and_current_stream():
    d = torch.qdev.default_stream()
    c = torch.qdev.current_stream()
    assert d.stream_id == 0 and c.stream_id == 0
    assert d.device == torch.device("qdev:0")
    assert torch.qdev.default_stream(1).device_index == 1
    assert torch.accelerator.current_stream().stream_id == 0


def test_new_streams_come_from_pools_with_priorities():
    s = torch.qdev.Stream()
    h = torch.qdev.Stream(priority=-1)
    assert s.stream_id != 0 and s.priority == 0
    assert h.priority == -1
    assert torch.qdev.Stream.priority_range() == (0, -1)
    assert torch.qdev.Stream(device=1).device_index == 1
    assert isinstance(s, torch.Stream)


def test_stream_context_sets_and_restores():
    s = torch.qdev.Stream()
    with torch.qdev.stream(s):
        assert torch.qdev.current_stream() == s
        assert torch.accelerator.current_stream().stream_id == s.stream_id
    assert torch.qdev.current_stream().stream_id == 0
    other = torch.qdev.Stream(device=1)
    with torch.qdev.stream(other):  # switches the device too, like torch.cuda.stream
        assert torch.qdev.current_device() == 1
        assert torch.qdev.current_stream().stream_id == other.stream_id
    assert torch.qdev.current_device() == 0
    assert torch.qdev.current_stream(1).stream_id == 0
    with torch.qdev.stream(None):
        assert torch.qdev.current_stream().stream_id == 0


def test_torch_stream_generic_api():
    s = torch.Stream("qdev")
    with s:
        assert torch.accelerator.current_stream() == s
    assert s.query()
    s.synchronize()
    e = s.record_event()
    assert e.query()
    torch.qdev.set_stream(s)
    assert torch.qdev.current_stream().stream_id == s.stream_id


def test_event_timing_and_queries():
    start = torch.qdev.Event(enable_timing=True)
    end = torch.qdev.Event(enable_timing=True)
    assert isinstance(start, torch.qdev.Event) and isinstance(start, torch.Event)
    start.record()
    x = torch.randn(512, 512, device="qdev")
    y = x @ x
    end.record()
    end.synchronize()
    assert end.query()
    ms = start.elapsed_time(end)
    assert 0.0 <= ms < 60_000
    assert y.shape == (512, 512)


def test_elapsed_time_needs_timing():
    a, b = torch.qdev.Event(), torch.qdev.Event()
    a.record()
    b.record()
    with pytest.raises((RuntimeError, ValueError), match="enable_timing=True"):
        a.elapsed_time(b)


def test_non_blocking_copy_is_ordered_on_its_stream():
    s = torch.qdev.Stream()
    src = torch.arange(1 << 20, dtype=torch.float32).pin_memory()
    with torch.qdev.stream(s):
        dst = src.to("qdev", non_blocking=True)
        twice = dst * 2  # host op on the same stream waits for the queued copy
    s.synchronize()
    assert torch.equal(twice.cpu(), src * 2)


def test_non_blocking_round_trip_with_event():
    src = torch.randn(1000).pin_memory()
    q = src.to("qdev", non_blocking=True)
    back = torch.empty(1000).pin_memory()
    back.copy_(q, non_blocking=True)
    ev = torch.qdev.Event()
    ev.record()
    ev.synchronize()
    assert torch.equal(back, src)


def test_wait_stream_and_wait_event():
    s1, s2 = torch.qdev.Stream(), torch.qdev.Stream()
    src = torch.randn(256).pin_memory()
    with torch.qdev.stream(s1):
        q = src.to("qdev", non_blocking=True)
        ev = s1.record_event()
    s2.wait_event(ev)
    s2.wait_stream(s1)
    with torch.qdev.stream(s2):
        r = q + 1
    torch.qdev.synchronize()
    assert torch.equal(r.cpu(), src + 1)


def test_synchronize_all_streams_of_device():
    streams = [torch.qdev.Stream() for _ in range(3)]
    src = torch.randn(4096).pin_memory()
    outs = []
    for s in streams:
        with torch.qdev.stream(s):
            outs.append(src.to("qdev", non_blocking=True))
    torch.qdev.synchronize()
    assert all(s.query() for s in streams)
    torch.accelerator.synchronize()
    for o in outs:
        assert torch.equal(o.cpu(), src)


def test_record_stream_delays_reuse_until_the_stream_is_done():
    gc.collect()  # no stray 1 MiB blocks may enter the cache during the test
    torch.qdev.empty_cache()
    s = torch.qdev.Stream()
    x = torch.empty(1 << 18, device="qdev")  # 1 MiB block of the default stream
    ptr = x.data_ptr()
    big = torch.empty(64 << 20, dtype=torch.uint8).pin_memory()
    with torch.qdev.stream(s):
        big_q = big.to("qdev", non_blocking=True)  # keeps s busy for milliseconds
    x.record_stream(s)
    del x
    y = torch.empty(1 << 18, device="qdev")
    assert y.data_ptr() != ptr  # x's block waits for s's queued work
    s.synchronize()
    y_ptr = y.data_ptr()
    del y
    z = torch.empty(1 << 18, device="qdev")
    assert z.data_ptr() in (ptr, y_ptr)  # both blocks are back in the cache
    assert big_q.shape == big.shape
    with pytest.raises(RuntimeError, match="qdev stream"):
        z.record_stream(torch.Stream("cpu"))


def test_stream_on_invalid_device():
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.Stream(device=7)
