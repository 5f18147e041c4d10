"""Soak: several threads issue quantized matmuls, copies and stream/event work on qdev:0 and qdev:1
for a bounded time, every result checked against a reference computed up front on the CPU; after
every phase the device memory is back to its baseline. Then repeated quantize_/free cycles of a
small model keep the caching allocator's peak bounded.

Bounded for CI (~20 s); ``QDEV_SOAK_SECONDS=<s>`` sets each threaded phase's length (default 4)
and ``QDEV_SOAK_CYCLES=<n>`` the quantize_ cycles per config (default 3), e.g.
``QDEV_SOAK_SECONDS=120 QDEV_SOAK_CYCLES=20 python3 run.py test tests/test_soak.py``.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from typing import Callable

import pytest
import torch
from torch import nn
from torch.testing._internal.common_quantization import _group_quantize_tensor_symmetric

import torch_qdev
from torch_qdev.quantization import A8W8DynamicConfig, A16W4Config, A16W8Config, W4A8DynamicConfig, quantize_

import quant_reference as ref

PHASE_SECONDS = float(os.environ.get("QDEV_SOAK_SECONDS", "4"))
QUANTIZE_CYCLES = int(os.environ.get("QDEV_SOAK_CYCLES", "3"))
THREADS_PER_DEVICE = 2
DEVICES = (0, 1)


def setup_module():
    if torch.qdev.device_count() < 2:
        pytest.skip("the soak needs two qdev devices (QDEV_DEVICE_COUNT >= 2)")


def settle() -> None:
    """Everything queued has run and every dead tensor is gone (tracebacks hold tensors too)."""
    for d in DEVICES:
        torch.qdev.synchronize(d)
    gc.collect()


def allocated() -> dict[int, int]:
    return {d: torch.qdev.memory_allocated(d) for d in DEVICES}


# --- the work items: (name, fn(device) -> None); each fn raises AssertionError on a wrong result ---

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_a8w8():
    gen = _gen(11)
    m, k, n = 7, 160, 48
    x1 = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
    x2 = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=gen)
    scale = torch.rand(n, generator=gen) * 1e-3 + 1e-4
    pt = torch.rand(m, generator=gen) + 0.5
    bias = torch.randn(n, generator=gen).bfloat16()
    want_i8 = ref.quant_matmul(x1, x2, scale)
    want_bf16 = ref.quant_matmul(x1, x2, scale, pertoken_scale=pt, bias=bias, output_dtype=torch.bfloat16)
    want_i32 = ref.quant_matmul(x1, x2, scale, output_dtype=torch.int32)

    def run(device: str) -> None:
        a, b, s = x1.to(device), x2.to(device), scale.to(device)
        got = torch_qdev.npu_quant_matmul(a, b, s)
        assert got.device == a.device and torch.equal(got.cpu(), want_i8), "A8W8 int8 output"
        got = torch_qdev.npu_quant_matmul(a, b, s, pertoken_scale=pt.to(device), bias=bias.to(device),
                                          output_dtype=torch.bfloat16)
        assert torch.equal(got.cpu(), want_bf16), "A8W8 bf16 per-token output"
        got = torch_qdev.npu_quant_matmul(a, b.t().contiguous().t(), s, output_dtype=torch.int32)
        assert torch.equal(got.cpu(), want_i32), "A8W8 int32 output, transposed x2"

    return run


def make_w4a8():
    gen = _gen(12)
    m, k, n, gs = 5, 128, 64, 32
    w_u8, s = _group_quantize_tensor_symmetric(torch.randn(k, n, generator=gen), 4, gs)
    s = s.bfloat16()
    bias = torch.randn(n, generator=gen)
    x = torch.randn(m, k, generator=gen)
    # PyTorch's own CPU path is the reference (its numerics are what the op reproduces bit for bit).
    want = torch._dyn_quant_matmul_4bit(x, torch._dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, k, n), gs, k, n)

    def run(device: str) -> None:
        packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8.to(device), s.to(device), bias.to(device), gs, k, n)
        got = torch_qdev.dyn_quant_matmul_4bit(x.to(device), packed, gs, k, n)
        assert got.device == packed.device and torch.equal(got.cpu(), want), "W4A8 dynamic"

    return run


def make_a16w8():
    gen = _gen(13)
    m, k, n = 3, 128, 40
    x = torch.randn(m, k, generator=gen).bfloat16()
    w = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=gen)
    scale = (torch.rand(n, generator=gen) * 0.02).bfloat16()
    offset = torch.randn(n, generator=gen).bfloat16()
    # CANN's golden: (w + offset) * scale rounded in bf16, fp32 matmul, bf16 result.
    want = (x.float() @ ((w.bfloat16() + offset) * scale).float()).bfloat16()

    def run(device: str) -> None:
        got = torch_qdev.npu_weight_quant_batchmatmul(x.to(device), w.to(device), scale.to(device), offset.to(device))
        assert got.device.type == "qdev" and torch.equal(got.cpu(), want), "A16W8 weight-only"

    return run


def make_copies():
    src = torch.arange(4096, dtype=torch.float32)
    pinned = src.pin_memory()

    def run(device: str) -> None:
        other = f"qdev:{1 - torch.device(device).index}"
        side = torch.qdev.Stream()
        with torch.qdev.stream(side):
            d = pinned.to(device, non_blocking=True)  # queued on the side stream
            back = torch.empty(4096).pin_memory()
            back.copy_(d, non_blocking=True)
        side.synchronize()
        assert torch.equal(back, src), "pinned H2D/D2H on a side stream"
        e = d.to(other)  # device to device
        assert e.device == torch.device(other) and torch.equal(e.cpu(), src), "qdev:i -> qdev:j"
        v = d.view(64, 64)[::2, 1::3].contiguous()
        assert torch.equal(v.cpu(), src.view(64, 64)[::2, 1::3]), "strided view copy"

    return run


def make_stream_events():
    x_cpu = torch.randn(256, 256, generator=_gen(14))
    want = (x_cpu * 2 + 1).sum(0)

    def run(device: str) -> None:
        producer, consumer = torch.qdev.Stream(), torch.qdev.Stream()
        start, done = torch.qdev.Event(enable_timing=True), torch.qdev.Event(enable_timing=True)
        x = x_cpu.to(device)
        start.record(producer)
        with torch.qdev.stream(producer):
            y = x * 2 + 1
            y.record_stream(consumer)
        done.record(producer)
        consumer.wait_event(done)
        with torch.qdev.stream(consumer):
            z = y.sum(0)
        consumer.synchronize()
        assert done.query() and start.elapsed_time(done) >= 0
        assert torch.allclose(z.cpu(), want, rtol=1e-5, atol=1e-4), "producer/consumer streams"

    return run


def run_threads(work: list[tuple[str, Callable[[str], None]]], seconds: float) -> dict[str, int]:
    """THREADS_PER_DEVICE threads per device run ``work`` round robin until ``seconds`` pass."""
    errors: list[str] = []
    counts: dict[str, int] = {name: 0 for name, _ in work}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(tid: int, device_index: int) -> None:
        device = f"qdev:{device_index}"
        torch.qdev.set_device(device_index)
        i = tid
        try:
            while time.monotonic() < deadline and not errors:
                name, fn = work[i % len(work)]
                fn(device)
                with lock:
                    counts[name] += 1
                i += 1
            torch.qdev.synchronize()
        except BaseException as e:  # noqa: BLE001 - reported below with its thread
            with lock:
                errors.append(f"thread {tid} on {device}, {work[i % len(work)][0]}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t, d), daemon=True)
               for d in DEVICES for t in range(THREADS_PER_DEVICE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    assert not any(t.is_alive() for t in threads), "a soak thread hangs"
    assert not errors, errors
    assert all(c > 0 for c in counts.values()), counts
    return counts


PHASES = {
    "matmuls": lambda: [("A8W8", make_a8w8()), ("W4A8", make_w4a8()), ("A16W8", make_a16w8())],
    "copies+streams": lambda: [("copies", make_copies()), ("streams", make_stream_events())],
    "mixed": lambda: [("A8W8", make_a8w8()), ("copies", make_copies()), ("W4A8", make_w4a8()),
                      ("streams", make_stream_events()), ("A16W8", make_a16w8())],
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_threaded_soak_keeps_results_and_memory(phase):
    settle()
    base = allocated()
    work = PHASES[phase]()
    counts = run_threads(work, PHASE_SECONDS)
    del work
    settle()
    assert allocated() == base, f"device memory not back to its baseline after {phase} ({counts})"


# --- quantize_/free cycles ---------------------------------------------------------------------

def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.SiLU(), nn.Linear(512, 256), nn.SiLU(), nn.Linear(256, 128))


CONFIGS = [A8W8DynamicConfig(), W4A8DynamicConfig(group_size=32), A16W8Config(), A16W4Config(group_size=64)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_quantize_free_cycles_keep_peak_bounded(config):
    dtype = getattr(config, "dtype", torch.float32)
    x = torch.randn(9, 256, generator=_gen(15)).to(dtype)
    with torch.no_grad():
        float_out = small_model().to(dtype)(x).float()
    settle()
    base = allocated()[0]
    first = None
    peaks, reserved = [], []
    for cycle in range(QUANTIZE_CYCLES):
        torch.qdev.reset_peak_memory_stats(0)
        model = quantize_(small_model().to(dtype), config, device="qdev", progress=False)
        with torch.no_grad():
            out = model(x.to("qdev")).float().cpu()
        if first is None:
            first = out
            cos = torch.nn.functional.cosine_similarity(out.flatten(), float_out.flatten(), dim=0)
            assert cos > 0.99, f"{config.name}: far from the float model (cosine {cos:.4f})"
        else:
            assert torch.equal(out, first), f"{config.name}: cycle {cycle} differs from cycle 0"
        del model, out
        settle()
        assert allocated()[0] == base, f"{config.name}: memory not back to baseline after cycle {cycle}"
        peaks.append(torch.qdev.max_memory_allocated(0) - base)
        reserved.append(torch.qdev.max_memory_reserved(0))
    # The same model in every cycle: the peak of live memory never grows, and the cache's peak stops
    # growing after the first cycle (its blocks are reused, not accumulated).
    assert max(peaks) == peaks[0], f"{config.name}: peak grows over cycles: {peaks}"
    assert max(reserved[1:], default=reserved[0]) <= reserved[0] * 1.25 + (1 << 20), (
        f"{config.name}: peak reserved memory grows over cycles: {reserved}")
