"""A short tour of the qdev device (``python3 run.py tour``)."""
from __future__ import annotations

import argparse
import time

import torch

import torch_qdev  # noqa: F401  (also autoloaded by `import torch`)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile", action="store_true", help="also run the model under torch.compile")
    args = parser.parse_args(argv)

    qdev = torch.qdev
    print(f"torch {torch.__version__}, torch_qdev {torch_qdev.__version__}")
    print(f"accelerator: {torch.accelerator.current_accelerator()}, {qdev.device_count()} devices")
    for i in range(qdev.device_count()):
        props = qdev.get_device_properties(i)
        free, total = qdev.mem_get_info(i)
        print(f"  qdev:{i}  {props.name}  capacity {total / 2**30:.1f} GiB, free {free / 2**30:.1f} GiB")

    torch.manual_seed(0)  # seeds the qdev generators too
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 10)
    )
    x = torch.randn(64, 256)
    expected = model(x)

    model = model.qdev()
    xq = x.to("qdev", non_blocking=True)
    start, end = qdev.Event(enable_timing=True), qdev.Event(enable_timing=True)
    start.record()
    y = model(xq)
    end.record()
    end.synchronize()
    print(f"MLP forward on {y.device}: max |qdev - cpu| = {(y.cpu() - expected).abs().max():.2e}, "
          f"{start.elapsed_time(end):.2f} ms")

    loss = y.square().mean()
    loss.backward()
    grad = model[0].weight.grad
    print(f"backward: grad on {grad.device}, norm {grad.norm().item():.4f}")

    s = qdev.Stream()
    with qdev.stream(s):
        z = torch.randn(1024, 1024, device="qdev") @ torch.randn(1024, 1024, device="qdev")
    s.synchronize()
    print(f"side stream {s.stream_id} (priority {s.priority}) produced {tuple(z.shape)}")

    with qdev.device(1):
        w = torch.ones(4, device="qdev")
    print(f"with torch.qdev.device(1): tensor on {w.device}; copy to qdev:0 -> {w.to('qdev:0').device}")

    qdev.manual_seed(1234)
    a = torch.rand(3, device="qdev")
    qdev.manual_seed(1234)
    b = torch.rand(3, device="qdev")
    print(f"qdev RNG reproducible after manual_seed: {torch.equal(a, b)}")

    # A8W8: the same first layer as an int8 layer (torch_npu's LinearQuant API), weights pre-packed.
    from torch_qdev.contrib import use_internal_format_weight
    from torch_qdev.contrib.module import LinearQuant

    lin = model[0]
    x_scale = xq.abs().max().item() / 127
    qlin = LinearQuant.from_float(lin, input_scale=x_scale, output_dtype=torch.bfloat16).qdev()
    use_internal_format_weight(qlin)
    yq = qlin(qlin.quantize_input(xq)).float()
    y1 = lin(xq)
    rel = ((yq - y1).norm() / y1.norm()).item()
    print(f"A8W8 LinearQuant ({torch_qdev.get_npu_format(qlin.weight).name} int8 weight, "
          f"{torch_qdev._C._get_cpu_isa()} kernels): relative error vs fp32 {rel * 100:.2f}%")

    # W4A8 dynamic: int4 weights in groups of 32, per-token int8 activations (aten._dyn_quant_* numerics).
    from torch_qdev.contrib.module import LinearW4A8Dynamic

    w4 = LinearW4A8Dynamic.from_float(lin, group_size=32)
    y4 = w4(xq)
    rel4 = ((y4 - y1).norm() / y1.norm()).item()
    print(f"W4A8 LinearW4A8Dynamic (int4 g32, {w4.packed_weight.numel() / 2**10:.0f} KiB packed vs "
          f"{lin.weight.numel() * 4 / 2**10:.0f} KiB fp32): relative error vs fp32 {rel4 * 100:.2f}%")

    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(model)
        yc = compiled(xq)
        print(f"torch.compile (inductor): max |compiled - eager| = {(yc - y).abs().max().item():.2e}, "
              f"first call {time.perf_counter() - t0:.1f} s")

    print(f"memory: allocated {qdev.memory_allocated() / 2**20:.2f} MiB, "
          f"reserved {qdev.memory_reserved() / 2**20:.2f} MiB, "
          f"peak {qdev.max_memory_allocated() / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
