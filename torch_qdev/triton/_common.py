"""Pieces shared by the Triton kernels: exact rounding helpers, the launch
options, and the switch between the interpreter and compiled kernels.

Bit-exactness with the CPU kernels rests on three rules kept by every kernel:
float products and sums are written in the CPU reference's order, kernels are
launched with ``enable_fp_fusion=False`` (no mul+add -> FMA contraction), and
rounding to integers uses the helpers below (no libdevice: the interpreter has
no extern calls, and these are exact on both).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Read once, as triton.jit does when it decorates the kernels below (the variable
# must be set before this package is imported).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Every launch passes these: no FMA contraction, so float order is the source's.
LAUNCH_OPTS = dict(enable_fp_fusion=False)

# 1.5 * 2**23: adding and subtracting it rounds an fp32 of magnitude < 2**22 to an
# integer, half to even (the FPU's rounding), without any library call.
_RINT_MAGIC = 12582912.0


@triton.jit
def rint(x):
    """Round half to even (std::nearbyint / torch.round) of fp32 values; NaN stays NaN."""
    r = (x + 12582912.0) - 12582912.0
    return tl.where(tl.abs(x) < 4194304.0, r, x)


@triton.jit
def round_half_away(x):
    """std::round of fp32 values of magnitude < 2**31 (ties away from zero)."""
    t = x.to(tl.int32).to(tl.float32)  # truncation toward zero
    d = x - t  # exact
    return t + tl.where(d >= 0.5, 1.0, 0.0) - tl.where(d <= -0.5, 1.0, 0.0)


@triton.jit
def fp19(x):
    """torch_npu's scale truncation to 19 bits (sign, exponent, 10 mantissa bits)."""
    return (x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def check_same_device(ref: torch.Tensor, *others) -> None:
    for t in others:
        if t is not None and t.device != ref.device:
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                               f"{ref.device} and {t.device}!")


def check_device(t: torch.Tensor, op: str) -> None:
    """Kernels run on CUDA tensors, and on CPU tensors under the interpreter."""
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and INTERPRET:
        return
    raise RuntimeError(f"{op} (Triton): expected CUDA tensors{' (or CPU tensors with TRITON_INTERPRET=1)' if t.device.type == 'cpu' else ''}, "
                       f"but the input is on {t.device}")


def device_guard(t: torch.Tensor):
    """The tensor's CUDA device as the current one while launching (a no-op on CPU)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    import contextlib
    return contextlib.nullcontext()


@triton.jit
def to_bf16_rne(x):
    """fp32 -> bfloat16, round to nearest even (integer arithmetic: the interpreter's own
    conversion truncates, the GPU's rounds; this is the same on both)."""
    b = x.to(tl.int32, bitcast=True)
    r = b + (0x7FFF + ((b >> 16) & 1))
    r = tl.where(x != x, b | 0x400000, r)  # NaN stays a (quiet) NaN
    return (r >> 16).to(tl.int16).to(tl.bfloat16, bitcast=True)


@triton.jit
def to_bf16_trunc(x):
    """fp32 -> bfloat16 by dropping the low 16 bits (torch's x86 W4A8 path)."""
    return (x.to(tl.int32, bitcast=True) >> 16).to(tl.int16).to(tl.bfloat16, bitcast=True)


def launcher(kernel):
    """kernel as launched inside the ops: through torch.library.wrap_triton when compiled, so that
    torch.compile traces the launch into the graph (the interpreter's kernels are launched as they are)."""
    return kernel if INTERPRET else torch.library.wrap_triton(kernel)
