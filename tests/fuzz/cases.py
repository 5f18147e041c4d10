"""Case generator of the bad-input fuzzer.

A case is one call of a public op / layer / config whose arguments started valid and had
one thing changed: a tensor's shape, dtype, device, strides (non-contiguous, overlapping,
expanded), an empty or a huge dimension (expanded, so nothing huge is allocated), NaN/Inf
values, None, an integer or enum or string argument out of range, a foreign or truncated
packed buffer. Each case carries its reference: the plain-PyTorch result computed on the
CPU copies of the same (mutated) arguments, or ``Invalid`` when those arguments are outside
the op's documented contract (then the op must refuse them).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

import torch_qdev
import quant_reference as qref


class Invalid(Exception):
    """The reference's contract refuses these arguments."""


def need(cond: bool, why: str) -> None:
    if not cond:
        raise Invalid(why)


@dataclass
class Case:
    seed: int
    family: str
    desc: str
    run: Callable[[], Any]
    ref: Callable[[], Any]
    compare: Callable[[Any, Any], None]  # raises AssertionError on a mismatch


DEVICES = ["cpu", "qdev:0", "qdev:1"]
INT_POOL = [0, -1, 1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 128, 255, 256, 1024, 65535, 65536,
            2**31 - 1, 2**31, 2**32 + 1, 2**62, -2**63, 2**63 - 1]
FLOAT_POOL = [math.nan, math.inf, -math.inf, -5.0, 0.0, 0.5, 1.0, 7.0, 8.0, 127.0, 128.0, 1000.0, 1e30]
DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64, torch.bool, torch.complex64]
HUGE = [2**31 + 7, 2**33 + 1, 2**40]


# ---------------------------------------------------------------- generic helpers

def cpu(v):
    if isinstance(v, torch.Tensor):
        return v.cpu()
    if isinstance(v, dict):
        return {k: cpu(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(cpu(x) for x in v)
    return v


def to_dev(v, dev):
    if isinstance(v, torch.Tensor):
        return v.to(dev)
    if isinstance(v, dict):
        return {k: to_dev(x, dev) for k, x in v.items()}
    return v


def rand_like_dtype(shape, dtype, rng: random.Random):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -128), min(info.max, 127)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def mutate_tensor(t: Optional[torch.Tensor], rng: random.Random, devs: list[str]):
    """One mutation of a tensor argument; returns (new value, description)."""
    if t is None:
        kind = rng.choice(["zeros", "none"])
        return (torch.zeros(4), "tensor where None was") if kind == "zeros" else (None, "None")
    kinds = ["noncontig", "transpose_storage", "expand", "overlap", "empty_dim", "add_dim", "drop_dim",
             "resize_dim", "scalar", "dtype", "dtype", "none", "nan", "device", "device", "huge", "qdev1"]
    kind = rng.choice(kinds)
    dev = t.device
    if kind == "noncontig" and t.dim() > 0:
        big = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=dev)
        big[..., ::2] = t
        return big[..., ::2], "non-contiguous (every other element)"
    if kind == "transpose_storage" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2), "column-major strides"
    if kind == "expand" and t.dim() > 0:
        d = rng.randrange(t.dim())
        if t.shape[d] > 0:
            return t.narrow(d, 0, 1).expand(t.shape), f"expanded along dim {d} (stride 0)"
    if kind == "overlap" and t.dim() == 2 and t.shape[1] >= 2 and t.shape[0] >= 2:
        r, c = t.shape
        base = rand_like_dtype((r + c,), t.dtype, rng).to(dev)
        return base.as_strided((r, c), (1, 1)), "overlapping rows (strides (1, 1))"
    if kind == "empty_dim" and t.dim() > 0:
        d = rng.randrange(t.dim())
        shape = list(t.shape)
        shape[d] = 0
        return torch.empty(shape, dtype=t.dtype, device=dev), f"dim {d} of size 0"
    if kind == "add_dim":
        return t.unsqueeze(0).expand(2, *t.shape).clone() if rng.random() < 0.5 else t.unsqueeze(-1), "one more dim"
    if kind == "drop_dim" and t.dim() > 0:
        return (t.reshape(-1) if rng.random() < 0.5 else t[0] if t.shape[0] > 0 else t.reshape(-1)), "one dim less"
    if kind == "resize_dim" and t.dim() > 0:
        d = rng.randrange(t.dim())
        shape = list(t.shape)
        shape[d] = rng.choice([shape[d] + 1, max(shape[d] - 1, 0), shape[d] * 2, 1, 3])
        return rand_like_dtype(tuple(shape), t.dtype, rng).to(dev), f"dim {d} resized to {shape[d]}"
    if kind == "scalar":
        return (t.reshape(-1)[0].clone() if t.numel() else torch.zeros((), dtype=t.dtype, device=dev)), "0-d"
    if kind == "dtype":
        dt = rng.choice([d for d in DTYPES if d != t.dtype])
        if dt.is_complex:
            return t.to(torch.float32).to(dt), f"dtype {dt}"
        return t.to(dt), f"dtype {dt}"
    if kind == "none":
        return None, "None"
    if kind == "nan" and t.dtype.is_floating_point and t.numel():
        t = t.clone()
        t.view(-1)[rng.randrange(t.numel())] = rng.choice([math.nan, math.inf, -math.inf])
        return t, "NaN/Inf value"
    if kind == "device":
        other = rng.choice([d for d in devs if torch.device(d) != dev])
        return t.to(other), f"moved to {other}"
    if kind == "qdev1":
        return t.to("qdev:1"), "moved to qdev:1"
    if kind == "huge" and t.dim() > 0:
        d = rng.randrange(t.dim())
        shape = list(t.shape)
        shape[d] = rng.choice(HUGE)
        src = t if t.numel() else torch.zeros([1] * t.dim(), dtype=t.dtype, device=dev)
        return src.narrow(d, 0, 1).expand(shape) if src.shape[d] else src.expand(shape), f"dim {d} huge ({shape[d]})"
    return t.clone(), "unchanged copy"


def mutate_int(v, rng: random.Random):
    choice = rng.random()
    if choice < 0.6:
        new = rng.choice(INT_POOL)
    elif isinstance(v, int) and not isinstance(v, bool):
        new = rng.choice([v + 1, v - 1, v * 2, -v, v // 2])
    else:
        new = rng.choice(INT_POOL)
    return new, f"int {new}"


def eq_exact(out, exp):
    if isinstance(exp, (tuple, list)):
        assert isinstance(out, (tuple, list)) and len(out) == len(exp), f"arity {type(out)} vs {len(exp)}"
        for o, e in zip(out, exp):
            eq_exact(o, e)
        return
    assert isinstance(out, torch.Tensor), f"expected a tensor, got {type(out)}"
    o = out.cpu()
    assert o.shape == exp.shape, f"shape {tuple(o.shape)} vs reference {tuple(exp.shape)}"
    assert o.dtype == exp.dtype, f"dtype {o.dtype} vs reference {exp.dtype}"
    if o.dtype.is_floating_point:
        same = (o == exp) | (torch.isnan(o) & torch.isnan(exp))
        assert bool(same.all()), f"values differ: max |d| {(o.float() - exp.float()).abs().nan_to_num(0).max()}"
    else:
        assert torch.equal(o, exp), "values differ"


def close(rtol, atol):
    def cmp(out, exp):
        if isinstance(exp, (tuple, list)):
            for o, e in zip(out, exp):
                cmp(o, e)
            return
        assert isinstance(out, torch.Tensor), f"expected a tensor, got {type(out)}"
        o = out.cpu()
        assert o.shape == exp.shape, f"shape {tuple(o.shape)} vs reference {tuple(exp.shape)}"
        assert o.dtype == exp.dtype, f"dtype {o.dtype} vs reference {exp.dtype}"
        torch.testing.assert_close(o.float(), exp.float(), rtol=rtol, atol=atol, equal_nan=True)
    return cmp


def broadcast(a, b):
    """numpy's rule for two batch shapes (torch.broadcast_shapes imports dynamo: slow)."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        need(x == y or 1 in (x, y), "batch broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def same_device(*ts):
    devs = {t.device for t in ts if isinstance(t, torch.Tensor)}
    need(len(devs) <= 1, f"tensors on several devices {devs}")


def is_tensor(t, dtypes=None):
    return isinstance(t, torch.Tensor) and (dtypes is None or t.dtype in dtypes)


DT_INT = {None: torch.int8, 1: torch.int8, 3: torch.int32, 5: torch.float16, 15: torch.bfloat16}


def mutate_args(a: dict, spec: dict, rng: random.Random, devs):
    """Mutates one entry of ``a`` (in place) according to its kind in ``spec``."""
    name = rng.choice(list(spec))
    kind = spec[name]
    if kind == "tensor":
        a[name], what = mutate_tensor(a[name], rng, devs)
    elif kind == "int":
        a[name], what = mutate_int(a[name], rng)
    elif kind == "optint":
        a[name], what = (None, "None") if rng.random() < 0.2 else mutate_int(a[name] if a[name] is not None else 0, rng)
    elif kind == "dtype":
        a[name] = rng.choice([None, -1, 0, 1, 2, 3, 4, 5, 6, 7, 11, 15, 16, 23, 24, 29, 44, 285, 290, 291, 292, 296, 1000])
        what = f"dtype int {a[name]}"
    elif kind == "float":
        a[name] = rng.choice(FLOAT_POOL)
        what = f"float {a[name]}"
    elif kind == "str":
        a[name] = rng.choice(["", "PERTOKEN", "pertoken ", "per_group", "perchannel", "pertensor", "pertoken"])
        what = f"str {a[name]!r}"
    elif kind == "intlist":
        a[name] = rng.choice([None, [], [0], [0, 0, 0], [0, 0, 256], [1, 1, 32], [0, 0, -256], [0, 0, 65536],
                              [0, 0, 2**40], [1, 128, 128], [-1, 0, 0], [0, 0, 16], [0, 0, 0, 0]])
        what = f"group_sizes {a[name]}"
    else:
        raise AssertionError(kind)
    return f"{name}: {what}"


def gen(rng):
    return torch.Generator().manual_seed(rng.randrange(2**31))


# ---------------------------------------------------------------- npu_trans_quant_param

def fam_trans_quant_param(rng, dev):
    n = rng.choice([1, 3, 8, 17])
    a = {"scale": torch.rand(n, generator=gen(rng)) + 0.01,
         "offset": torch.randn(n, generator=gen(rng)) * 50 if rng.random() < 0.5 else None,
         "round_mode": rng.choice([0, 1])}
    a = to_dev(a, dev)
    desc = mutate_args(a, {"scale": "tensor", "offset": "tensor", "round_mode": "int"}, rng, DEVICES)

    def run():
        return torch_qdev.npu_trans_quant_param(a["scale"], a["offset"], a["round_mode"])

    def ref():
        s, o, rm = cpu(a["scale"]), cpu(a["offset"]), a["round_mode"]
        need(is_tensor(s, {torch.float32}), "scale float32")
        need(s.dim() == 1 or (s.dim() == 2 and s.shape[0] == 1), "scale (n,) or (1, n)")
        need(s.numel() > 0, "scale not empty")
        need(rm in (0, 1), "round_mode 0/1")
        same_device(a["scale"], a["offset"])
        if o is not None:
            need(o.dtype == torch.float32, "offset float32")
            if s.dim() == 2:
                need(o.shape == s.shape, "offset like scale")
            else:
                need(o.dim() == 1 and o.numel() > 0, "offset 1-D")
                need(o.shape[0] == s.shape[0] or 1 in (o.shape[0], s.shape[0]), "broadcast")
                if o.shape[0] != s.shape[0]:
                    size = max(o.shape[0], s.shape[0])
                    s, o = s.expand(size), o.expand(size)
        return qref.trans_quant_param(s, o, rm)

    return "npu_trans_quant_param", desc, run, ref, eq_exact


# ---------------------------------------------------------------- npu_quant_matmul

def _unpack_k(x2):
    return qref.unpack_int4(x2.transpose(-1, -2).contiguous()).transpose(-1, -2)


def quant_matmul_ref(a):
    """torch_npu's documented contract and formula (torch_npu_api.md §1) in plain torch."""
    x1, x2, scale = cpu(a["x1"]), cpu(a["x2"]), cpu(a["scale"])
    offset, pertoken, bias = cpu(a["offset"]), cpu(a["pertoken_scale"]), cpu(a["bias"])
    od, gs = a["output_dtype"], a["group_sizes"]
    for t in ("x1", "x2", "scale"):
        need(isinstance(a[t], torch.Tensor), f"{t} required")
    same_device(a["x1"], a["x2"], a["scale"], a["offset"], a["pertoken_scale"], a["bias"])
    need(od in DT_INT, "output dtype")
    out = DT_INT[od]
    if gs is not None:
        need(len(gs) == 3 and all(0 <= g <= 65535 for g in gs), "group_sizes")
    if x1.dtype == torch.int8 and x2.dtype == torch.int32:  # A8W4
        need(x1.dim() == 2 and x2.dim() == 2 and x1.shape[1] == x2.shape[0], "A8W4 shapes")
        m, k = x1.shape
        n = x2.shape[1] * 8
        group = 256
        if gs is not None:
            need(gs[0] <= 1 and gs[1] <= 1, "A8W4 group")
            group = gs[2] if gs[2] > 0 else 256
        need(k <= 65535 and group % 16 == 0 and k % group == 0, "A8W4 group divides k")
        need(scale.dtype == torch.int64 and scale.shape == (k // group, n), "A8W4 scale")
        if offset is not None:
            need(offset.dtype == torch.float32 and offset.shape == (n,), "A8W4 offset")
        need(pertoken is not None and pertoken.dtype == torch.float32 and pertoken.numel() == m and
             (pertoken.dim() == 1 or (pertoken.dim() == 2 and pertoken.shape[1] == 1)), "A8W4 pertoken")
        need(bias is None and out in (torch.float16, torch.bfloat16), "A8W4 bias/out")
        from test_a8w4 import decoded, golden
        w = qref.unpack_int4(x2)
        if m * n == 0:
            return torch.empty(m, n, dtype=out)
        return golden(x1, w, decoded(scale), pertoken.reshape(-1), offset, group, out)
    need((x1.dtype, x2.dtype) in ((torch.int8, torch.int8), (torch.int32, torch.int32)), "input dtypes")
    a4 = x1.dtype == torch.int32
    need(2 <= x1.dim() <= 6, "x1 dim")
    need(x1.shape[-1] <= 65535, "k limit")
    if a4:
        need(x2.dim() == 2, "A4W4 x2 2-D")
        if x1.shape[-1] == x2.shape[-2]:
            w = _unpack_k(x2)
        else:
            need(x2.shape[-2] == x1.shape[-1] * 8, "A4W4 k")
            w = qref.unpack_int4(x2)
        xa = qref.unpack_int4(x1)
    else:
        need(2 <= x2.dim() <= 6 and x1.shape[-1] == x2.shape[-2], "A8W8 shapes")
        xa, w = x1, x2
    m, n = xa.shape[-2], w.shape[-1]
    batch = broadcast(xa.shape[:-2], w.shape[:-2])
    if a4 and scale.dim() == 2:  # A4W4 per group
        group = 256
        if gs is not None:
            need(gs[0] <= 1 and gs[1] <= 1 and gs[2] > 0, "A4W4 group")
            group = gs[2]
        k = xa.shape[-1]
        groups = -(-k // group)
        need(x1.dim() == 2 and scale.dtype == torch.float32 and scale.shape == (groups, n), "A4W4 group scale")
        if offset is not None:
            need(offset.dtype == torch.float16 and offset.shape == scale.shape, "A4W4 group offset")
        need(pertoken is not None and pertoken.dtype == torch.float32 and pertoken.numel() == m and
             pertoken.dim() in (1, 2), "A4W4 group pertoken")
        need(bias is None and out in (torch.float16, torch.bfloat16), "A4W4 group bias/out")
        acc = torch.zeros(m, n)
        for g, k0 in enumerate(range(0, k, group)):
            wg = w[k0:k0 + group].float()
            if offset is not None:
                wg = wg - offset[g].float()
            acc += (xa[:, k0:k0 + group].float() @ wg) * scale[g]
        return (acc * pertoken.reshape(m, 1)).to(out)
    if gs is not None:
        need(all(g <= 1 for g in gs), "per-block")
    if bias is not None:
        need(bias.dim() == 1 or (not a4 and bias.dim() == 3), "bias dims")
        if bias.dim() == 3:
            need(len(batch) == 1 and bias.shape == (batch[0], 1, n), "3-D bias")
        else:
            need(bias.shape[0] == n, "bias n")
        bt = bias.dtype
        need(bt in (torch.int32, torch.bfloat16, torch.float32, torch.float16), "bias dtype")
        need(bt != torch.bfloat16 or out == torch.bfloat16, "bf16 bias")
        need(out != torch.int32 or bt == torch.int32, "int32 out bias")
        if bt == torch.float16:
            need(pertoken is not None and out == torch.float16, "fp16 bias")
        need(bt == torch.int32 or out in (torch.bfloat16, torch.float16), "float bias out")
        need(bt != torch.float32 or out == torch.bfloat16 or pertoken is not None, "fp32 bias fp16 out")
    st = scale.dtype
    need(st in (torch.int64, torch.float32, torch.bfloat16), "scale dtype")
    need(st != torch.bfloat16 or out in (torch.bfloat16, torch.int32), "bf16 scale")
    need(out != torch.int32 or st in (torch.bfloat16, torch.float32), "int32 out scale")
    if a4 and pertoken is None:
        need(out == torch.float16, "A4W4 out fp16")
    need(st != torch.int64 or (out in (torch.int8, torch.float16) and pertoken is None), "int64 scale")
    if offset is not None:
        need(offset.dtype == torch.float32 and offset.dim() == 1 and offset.shape[0] in (1, n) and out == torch.int8,
             "offset")
    if pertoken is not None:
        need(pertoken.dim() == 1 and pertoken.dtype == torch.float32 and pertoken.shape[0] == m and
             out in (torch.float16, torch.bfloat16), "pertoken")
    need(scale.dim() == 1 and scale.shape[0] in (1, n), "scale shape")
    if xa.numel() * w.numel() == 0 or m * n == 0:
        if m * n == 0 or 0 in batch:
            return torch.empty(*batch, m, n, dtype=out)
    return qref.quant_matmul(xa, w, scale, offset=offset, pertoken_scale=pertoken, bias=bias, output_dtype=out)


def fam_quant_matmul(rng, dev):
    g = gen(rng)
    kind = rng.choice(["a8w8", "a8w8", "a8w8", "a4w4", "a8w4"])
    m, n = rng.choice([1, 2, 5, 17]), rng.choice([8, 16, 40])
    a = {"offset": None, "pertoken_scale": None, "bias": None, "output_dtype": None, "group_sizes": None}
    if kind == "a8w8":
        k = rng.choice([1, 7, 32, 70])
        a["x1"] = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
        x2 = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=g)
        a["x2"] = x2 if rng.random() < 0.7 else x2.t().contiguous().t()
        mode = rng.choice(["int8", "pertoken", "int64", "int32"])
        if mode == "int8":
            a["scale"] = torch.rand(n, generator=g) * 0.01
            a["offset"] = torch.randn(n, generator=g) * 3 if rng.random() < 0.5 else None
        elif mode == "pertoken":
            a["scale"] = torch.rand(n, generator=g) * 0.01
            a["pertoken_scale"] = torch.rand(m, generator=g)
            a["output_dtype"] = rng.choice([5, 15])
            a["bias"] = torch.randn(n, generator=g) if rng.random() < 0.5 else None
        elif mode == "int64":
            a["scale"] = torch_qdev.npu_trans_quant_param(torch.rand(n, generator=g) * 0.01)
            a["output_dtype"] = rng.choice([None, 5])
            a["bias"] = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=g) if rng.random() < 0.5 else None
        else:
            a["scale"] = torch.ones(n)
            a["output_dtype"] = 3
        spec = {"x1": "tensor", "x2": "tensor", "scale": "tensor", "offset": "tensor", "pertoken_scale": "tensor",
                "bias": "tensor", "output_dtype": "dtype", "group_sizes": "intlist"}
    elif kind == "a4w4":
        k = rng.choice([8, 64])
        x1v = torch.randint(-8, 8, (m, k), generator=g)
        wv = torch.randint(-8, 8, (k, n), generator=g)
        a["x1"] = qref.pack_int4(x1v)
        a["x2"] = qref.pack_int4(wv)
        a["scale"] = torch.rand(1, generator=g) * 0.01
        a["output_dtype"] = 5
        spec = {"x1": "tensor", "x2": "tensor", "scale": "tensor", "bias": "tensor", "output_dtype": "dtype",
                "pertoken_scale": "tensor", "group_sizes": "intlist"}
    else:
        group = rng.choice([16, 32])
        k = group * rng.choice([1, 2])
        a["x1"] = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
        a["x2"] = qref.pack_int4(torch.randint(-8, 8, (k, n), generator=g))
        a["scale"] = torch_qdev.npu_trans_quant_param((torch.rand(k // group, n, generator=g) * 0.01).reshape(1, -1)
                                                      ).reshape(k // group, n)
        a["pertoken_scale"] = torch.rand(m, 1, generator=g)
        a["offset"] = torch.randn(n, generator=g) if rng.random() < 0.5 else None
        a["output_dtype"] = rng.choice([5, 15])
        a["group_sizes"] = [0, 0, group]
        spec = {"x1": "tensor", "x2": "tensor", "scale": "tensor", "offset": "tensor", "pertoken_scale": "tensor",
                "bias": "tensor", "output_dtype": "dtype", "group_sizes": "intlist"}
    a = to_dev(a, dev)
    desc = f"{kind} m={m} n={n}; " + mutate_args(a, spec, rng, DEVICES)

    def run():
        return torch.ops.qdev.npu_quant_matmul(a["x1"], a["x2"], a["scale"], offset=a["offset"],
                                               pertoken_scale=a["pertoken_scale"], bias=a["bias"],
                                               output_dtype=a["output_dtype"], group_sizes=a["group_sizes"])

    return "npu_quant_matmul", desc, run, lambda: quant_matmul_ref(a), close(1e-2, 1e-2)


# ---------------------------------------------------------------- npu_dynamic_quant(_asymmetric)

def dynamic_quant_ref(a, asym):
    x, smooth, gi = cpu(a["input"]), cpu(a["smooth_scales"]), cpu(a["group_index"])
    need(isinstance(x, torch.Tensor), "input required")
    same_device(a["input"], a["smooth_scales"], a["group_index"])
    need(x.dim() > 1 and x.dtype in (torch.float16, torch.bfloat16, torch.float32), "input")
    dt, mode, dmax_arg = a["dst_type"], a["quant_mode"], a["dst_type_max"]
    need(dt in (None, 1, 16), "dst_type")
    int4 = dt == 16
    dmax, dmin = (7.0, -8.0) if int4 else (127.0, -128.0)
    h = x.shape[-1]
    if int4:
        need(h % 8 == 0, "int4 h % 8")
    need(mode in ("pertoken", "pertensor", "perchannel"), "quant_mode")
    if dmax_arg != 0.0:
        need(math.isfinite(dmax_arg) and 0 < dmax_arg <= dmax and dmax_arg == int(dmax_arg), "dst_type_max")
        dmax, dmin = float(dmax_arg), -float(dmax_arg) - 1.0
    dmax_t = torch.tensor(dmax, dtype=torch.float32).item()
    dmax, dmin = dmax_t, torch.tensor(dmin, dtype=torch.float32).item()
    xs = x.float()
    rows = x.numel() // h if h else 0
    if gi is not None:
        need(mode == "pertoken", "group_index pertoken")
        need(smooth is not None and smooth.dim() == 2 and smooth.shape[1] == h, "group smooth")
        need(gi.dtype == torch.int32 and gi.dim() == 1 and gi.shape[0] == smooth.shape[0], "group_index")
        need(smooth.shape[0] <= 1024 and smooth.dtype == x.dtype, "group count / dtype")
        ends = gi.tolist()
        if x.numel():
            need(len(ends) > 0 and ends[-1] == rows, "last end")
            r = xs.reshape(rows, h).clone()
            begin = 0
            for e, end in enumerate(ends):
                need(begin <= end <= rows, "monotone")
                r[begin:end] *= smooth[e].float()
                begin = end
            xs = r.reshape(x.shape)
    elif smooth is not None:
        want = x.shape[-2] if mode == "perchannel" else h
        need(smooth.dim() == 1 and smooth.shape[0] == want and smooth.dtype == x.dtype, "smooth")
        xs = xs * (smooth.float().unsqueeze(-1) if mode == "perchannel" else smooth.float())
    y, s, o = qref.dynamic_quant_modes(xs, None, None, asym, mode, dmax, dmin)
    if x.numel() == 0:  # empty groups have scale (and offset) 0
        s, o = torch.zeros(s.shape), torch.zeros(o.shape)
    y = qref.pack_int4(y.to(torch.int64)) if int4 else y.to(torch.int8)
    return (y, s, o) if asym else (y, s)


def fam_dynamic_quant(rng, dev):
    g = gen(rng)
    asym = rng.random() < 0.4
    dtype = rng.choice([torch.float16, torch.bfloat16, torch.float32])
    shape = rng.choice([(3, 16), (2, 5, 24), (1, 8), (4, 40)])
    mode = rng.choice(["pertoken", "pertoken", "pertensor", "perchannel"])
    a = {"input": (torch.randn(shape, generator=g) * 3).to(dtype), "smooth_scales": None, "group_index": None,
         "dst_type": rng.choice([None, 1, 16]), "quant_mode": mode, "dst_type_max": 0.0}
    h = shape[-1]
    r = rng.random()
    if mode == "pertoken" and r < 0.3:
        rows = math.prod(shape[:-1])
        a["smooth_scales"] = (torch.rand(2, h, generator=g) + 0.5).to(dtype)
        a["group_index"] = torch.tensor([rows // 2, rows], dtype=torch.int32)
    elif r < 0.6:
        want = shape[-2] if mode == "perchannel" else h
        a["smooth_scales"] = (torch.rand(want, generator=g) + 0.5).to(dtype)
    a = to_dev(a, dev)
    desc = f"{'asym ' if asym else ''}{mode} {dtype} {shape}; " + mutate_args(
        a, {"input": "tensor", "smooth_scales": "tensor", "group_index": "tensor", "dst_type": "dtype",
            "quant_mode": "str", "dst_type_max": "float"}, rng, DEVICES)
    before = a["input"].clone() if isinstance(a["input"], torch.Tensor) and a["input"].numel() < 2**20 else None
    op = torch_qdev.npu_dynamic_quant_asymmetric if asym else torch_qdev.npu_dynamic_quant

    def run():
        out = torch.ops.qdev.npu_dynamic_quant_asymmetric if asym else torch.ops.qdev.npu_dynamic_quant
        res = out(a["input"], smooth_scales=a["smooth_scales"], group_index=a["group_index"], dst_type=a["dst_type"],
                  quant_mode=a["quant_mode"], dst_type_max=a["dst_type_max"])
        if before is not None:  # the input must not change
            assert (before.cpu() == a["input"].cpu()).logical_or(before.cpu().isnan()).all(), "input was modified"
        return res

    del op
    return "npu_dynamic_quant", desc, run, lambda: dynamic_quant_ref(a, asym), eq_exact


# ---------------------------------------------------------------- weight-only

def weight_quant_ref(a):
    x, w, s = cpu(a["x"]), cpu(a["weight"]), cpu(a["antiquant_scale"])
    off, qs, qo, bias = cpu(a["antiquant_offset"]), cpu(a["quant_scale"]), cpu(a["quant_offset"]), cpu(a["bias"])
    G, ip = a["antiquant_group_size"], a["inner_precise"]
    for t in ("x", "weight", "antiquant_scale"):
        need(isinstance(a[t], torch.Tensor), f"{t} required")
    same_device(*(a[t] for t in ("x", "weight", "antiquant_scale", "antiquant_offset", "quant_scale",
                                 "quant_offset", "bias")))
    need(x.dim() >= 2 and w.dim() >= 2 and x.dtype in (torch.float16, torch.bfloat16), "x")
    need(ip in (0, 1) and (qo is None or qs is not None), "inner_precise / quant_offset")
    need(w.dtype in (torch.int8, torch.int32), "weight dtype")
    wo = a["weight"]
    transposed = wo.stride(-2) == 1 and wo.stride(-1) == wo.shape[-2] and not (wo.shape[-2] == 1 and wo.shape[-1] == 1)
    if w.dtype == torch.int32:
        wi = _unpack_k(w) if transposed else qref.unpack_int4(w)
    else:
        wi = w
    k, n = wi.shape[-2:]
    if x.dim() > 2 and w.dim() > 2:
        need(x.dim() == w.dim() and x.shape[:-2] == w.shape[:-2], "batch")
    need(x.shape[-1] == k, "k")
    need(G == 0 or (G % 32 == 0 and 32 <= G <= k - 1), "group size")
    need(s.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.int64) and s.dim() <= 2, "scale dtype / dims")
    need(s.dtype != torch.int64 or G == 0, "int64 scale per channel")
    rows = s.reshape(1, -1) if s.dim() < 2 else s
    if s.numel() == 1:
        rows = s.reshape(1, 1)
    if G:
        need(rows.shape == (-(-k // G), n), "group scale shape")
    else:
        need(rows.shape[0] == 1 and rows.shape[1] in (1, n), "scale shape")
    if off is not None:
        need((off.dtype.is_floating_point or (off.dtype == torch.int32 and s.dtype == torch.int64)) and
             (off.numel() == 1 or off.shape == s.shape), "offset")
    if bias is not None:
        need(bias.dtype.is_floating_point and (bias.shape == (n,) or bias.shape == (1, n)), "bias")
    if qs is not None:
        need(qs.dtype in (torch.float32, torch.int64) and qs.dim() <= 2 and qs.numel() in (1, n), "quant_scale")
        need(qs.dim() == 0 or qs.shape[-1] == qs.numel(), "quant_scale shape")
        if qo is not None:
            need(qo.dtype == torch.float32 and qo.numel() == qs.numel() and qo.dim() <= 2, "quant_offset")
    from test_weight_quant import golden
    orow = None
    if off is not None:
        orow = off.reshape(1, 1) if off.numel() == 1 else (off.reshape(1, -1) if off.dim() < 2 else off)
    batch_x = x if x.dim() >= w.dim() else x.expand(*wi.shape[:-2], *x.shape[-2:])
    b = bias.reshape(-1) if bias is not None else None
    if s.dtype == torch.int64:  # torch_npu_api.md §5.1: y = (x @ dt(W + off)) * dt(decoded scale) + bias
        dt = x.dtype
        wd = wi.to(dt) if orow is None else wi.to(dt) + orow.to(dt)
        y = (batch_x.float() @ wd.float()).to(dt) * qref.decode_scale(rows.reshape(-1)).to(dt)
        y = y.float() + (b.float() if b is not None else 0)
        if dt == torch.bfloat16:
            y = y.bfloat16().float()
        y = y if qs is not None else y.to(dt)
    else:
        y = golden(batch_x, wi, rows, orow, b, G, keep_fp32=qs is not None)
    if qs is None:
        return y
    if qs.dtype == torch.int64:
        sv, ov = qref.decode_scale(qs.reshape(-1)), qref.decode_offset(qs.reshape(-1)).float()
    else:
        sv = qref.decode_scale(qref.trans_quant_param(qs.reshape(-1).float()))
        ov = torch.round(qo.reshape(-1)).clamp(-256, 255) if qo is not None else torch.zeros(1)
    return (torch.round((y * sv).clamp(-256, 255)) + ov).clamp(-128, 127).to(torch.int8)


def fam_weight_quant(rng, dev):
    g = gen(rng)
    dtype = rng.choice([torch.float16, torch.bfloat16])
    m, k, n = rng.choice([1, 3, 9]), rng.choice([64, 96]), rng.choice([16, 32])
    int4 = rng.random() < 0.4
    G = rng.choice([0, 0, 32])
    w = torch.randint(-8 if int4 else -128, 8 if int4 else 128, (k, n), generator=g, dtype=torch.int32)
    if int4:
        weight = qref.pack_int4(w) if rng.random() < 0.5 else qref.pack_int4(w.t().contiguous()).t()
    else:
        weight = w.to(torch.int8) if rng.random() < 0.5 else w.to(torch.int8).t().contiguous().t()
    shape = (k // G, n) if G else rng.choice([(n,), (1, n), (1,)])
    a = {"x": torch.randn(m, k, generator=g).to(dtype), "weight": weight,
         "antiquant_scale": (torch.rand(shape, generator=g) * 0.02).to(dtype),
         "antiquant_offset": torch.randn(shape, generator=g).to(dtype) if rng.random() < 0.5 else None,
         "quant_scale": torch.rand(1, generator=g) + 0.5 if rng.random() < 0.2 else None, "quant_offset": None,
         "bias": torch.randn(n, generator=g).to(dtype if dtype == torch.float16 else torch.float32)
         if rng.random() < 0.5 else None,
         "antiquant_group_size": G, "inner_precise": 0}
    a = to_dev(a, dev)
    desc = f"{'int4' if int4 else 'int8'} {dtype} m={m} k={k} n={n} G={G}; " + mutate_args(
        a, {"x": "tensor", "weight": "tensor", "antiquant_scale": "tensor", "antiquant_offset": "tensor",
            "quant_scale": "tensor", "quant_offset": "tensor", "bias": "tensor", "antiquant_group_size": "int",
            "inner_precise": "int"}, rng, DEVICES)

    def run():
        return torch.ops.qdev.npu_weight_quant_batchmatmul(
            a["x"], a["weight"], a["antiquant_scale"], a["antiquant_offset"], a["quant_scale"], a["quant_offset"],
            a["bias"], a["antiquant_group_size"], a["inner_precise"], None)

    def cmp(out, exp):
        if exp.dtype == torch.int8:  # requant: one step of rounding may differ with the summation order
            assert out.shape == exp.shape and out.dtype == exp.dtype
            assert (out.cpu().int() - exp.int()).abs().max() <= 1 if out.numel() else True
        else:
            close(2e-2, 2e-2)(out, exp)

    return "npu_weight_quant_batchmatmul", desc, run, lambda: weight_quant_ref(a), cmp


def fam_int4pack(rng, dev):
    g = gen(rng)
    shape = rng.choice([(4, 16), (3, 8), (2, 3, 8)])
    a = {"weight": torch.randint(-8, 8, shape, generator=g, dtype=torch.int32), "inner_k_tiles": 0}
    a = to_dev(a, dev)
    desc = f"{shape}; " + mutate_args(a, {"weight": "tensor", "inner_k_tiles": "int"}, rng, DEVICES)

    def run():
        return torch.ops.qdev.npu_convert_weight_to_int4pack(a["weight"], a["inner_k_tiles"])

    def ref():
        w = cpu(a["weight"])
        need(isinstance(w, torch.Tensor) and w.dtype == torch.int32, "int32")
        need(w.dim() in (2, 3) and all(d > 0 for d in w.shape) and w.shape[-1] % 8 == 0, "shape")
        need(a["weight"].is_contiguous(), "contiguous")
        return qref.pack_int4(w)

    return "npu_convert_weight_to_int4pack", desc, run, ref, eq_exact


# ---------------------------------------------------------------- W4A8 dynamic

def w4_pack_contract(weights, scales, bias, bs, K, N):
    need(isinstance(weights, torch.Tensor) and isinstance(scales, torch.Tensor), "tensors")
    same_device(weights, scales, bias)
    need(weights.dtype == torch.uint8, "weights uint8")
    need(0 < K < 2**31 and 0 < N < 2**31 and K % 2 == 0, "features")
    need(bs == K or (bs > 0 and bs % 32 == 0 and K % bs == 0), "block size")
    need(weights.numel() == N * K // 2, "weights numel")
    need(scales.numel() == N * (K // bs) and scales.dtype in (torch.float32, torch.bfloat16), "scales")
    if bias is not None:
        need(bias.numel() == N, "bias numel")
        need(bias.dtype.is_floating_point, "float bias")


def w4_ref(x, weights, scales, bias, bs, K, N):
    need(x.dtype in (torch.float32, torch.bfloat16) and x.dim() >= 1 and x.shape[-1] == K, "input")
    lead = x.shape[:-1]
    xr = x.reshape(-1, K)
    if xr.shape[0] == 0:
        return torch.empty(*lead, N, dtype=x.dtype)
    b = bias.reshape(-1).float() if bias is not None else None
    y = qref.w4a8_emulate(xr.float(), weights.reshape(N, K // 2), scales.reshape(N, -1), bs, K, N, b)
    return qref.w4a8_output(y.reshape(*lead, N), x.dtype)


def fam_w4a8(rng, dev):
    g = gen(rng)
    K = rng.choice([32, 64, 128])
    N = rng.choice([8, 32, 40])
    bs = rng.choice([32, K])
    from torch_qdev.contrib.module.linear_w4a8_dynamic import quantize_int4_symmetric
    w_u8, s = quantize_int4_symmetric(torch.randn(N, K, generator=g), bs)
    s = s.float() if bs == K else s.bfloat16()
    a = {"weights": w_u8, "scales": s, "bias": torch.randn(N, generator=g) if rng.random() < 0.5 else None,
         "block_size": bs, "in_features": K, "out_features": N,
         "x": torch.randn(rng.choice([1, 3, 6]), K, generator=g).to(rng.choice([torch.float32, torch.bfloat16]))}
    a = to_dev(a, dev)
    stage = rng.choice(["pack", "matmul", "matmul", "aten"])
    if stage == "aten" and dev == "cpu":  # on CPU tensors the aten ops are PyTorch's own
        stage = "matmul"
    corrupt = None
    if stage == "pack":
        desc = mutate_args(a, {"weights": "tensor", "scales": "tensor", "bias": "tensor", "block_size": "int",
                               "in_features": "int", "out_features": "int"}, rng, DEVICES)
    else:
        r = rng.random()
        if r < 0.3:
            corrupt = rng.choice(["truncate", "flags", "header_byte", "foreign", "dtype_view", "other_sizes"])
            desc = f"packed buffer: {corrupt}"
        else:
            desc = mutate_args(a, {"x": "tensor", "block_size": "int", "in_features": "int", "out_features": "int"},
                               rng, DEVICES)
    desc = f"{stage} K={K} N={N} bs={bs}; {desc}"
    pos = rng.randrange(128)

    def packed_for(fn):
        wd = a["weights"]
        if stage == "pack":
            return fn(wd, a["scales"], a["bias"], a["block_size"], a["in_features"], a["out_features"])
        return fn(wd, a["scales"], a["bias"], bs, K, N)

    packed_bytes = [None]

    def damage(p):
        if corrupt is None:
            return p
        b = p.cpu().view(torch.uint8).clone() if p.dtype != torch.uint8 else p.cpu().clone()
        if corrupt == "truncate":
            b = b[: rng.choice([0, 10, 127, 128, b.numel() // 2, b.numel() - 1])]
        elif corrupt == "flags":
            b[36] ^= 1 << rng.randrange(8)
        elif corrupt == "header_byte":
            b[pos] ^= 1 << rng.randrange(8)
        elif corrupt == "foreign":
            b = torch.randint(0, 256, (b.numel(),), dtype=torch.uint8, generator=torch.Generator().manual_seed(pos))
        elif corrupt == "dtype_view":
            b = b[: b.numel() // 4 * 4].view(torch.int32)
        if corrupt == "truncate":
            packed_bytes[0] = b
        elif corrupt == "other_sizes":
            k2 = 64 if K != 64 else 96
            b = torch_qdev.dyn_quant_pack_4bit_weight(torch.zeros(N * k2 // 2, dtype=torch.uint8),
                                                      torch.ones(N * k2 // 32), None, 32, k2, N)
        return b.to(p.device)

    def run():
        if stage == "aten":
            x = a["x"]
            p = damage(packed_for(torch._dyn_quant_pack_4bit_weight))
            return torch._dyn_quant_matmul_4bit(x, p, a["block_size"], a["in_features"], a["out_features"])
        p = damage(packed_for(torch_qdev.dyn_quant_pack_4bit_weight))
        if stage == "pack":
            x = torch.randn(3, a["in_features"]).to(p.device) if isinstance(a["in_features"], int) and \
                0 < a["in_features"] < 4096 else a["x"]
            return torch_qdev.dyn_quant_matmul_4bit(x, p, a["block_size"], a["in_features"], a["out_features"])
        return torch_qdev.dyn_quant_matmul_4bit(a["x"], p, a["block_size"], a["in_features"], a["out_features"])

    def ref():
        w, sc, b = cpu(a["weights"]), cpu(a["scales"]), cpu(a["bias"])
        bsz, kk, nn_ = a["block_size"], a["in_features"], a["out_features"]
        if stage == "pack":
            w4_pack_contract(a["weights"], a["scales"], a["bias"], bsz, kk, nn_)
            x = torch.randn(3, kk) if 0 < kk < 4096 else cpu(a["x"])
            need(corrupt is None, "corrupt")
            return ("input-dependent", x)
        if corrupt == "truncate":  # the aten container has a tail past the layout: cutting it is harmless
            total = int(torch.tensor(list(packed_bytes[0][72:80].tolist()), dtype=torch.uint8).view(torch.int64))
            need(packed_bytes[0].numel() >= total, "truncated buffer")
        else:
            need(corrupt in (None, "dtype_view"), "corrupt buffer")
        need((bsz, kk, nn_) == (bs, K, N), "sizes differ from the packed ones")
        same_device(a["x"], a["weights"])
        return w4_ref(cpu(a["x"]), w, sc, b, bs, K, N)

    def cmp(out, exp):
        if isinstance(exp, tuple):  # pack stage: x was random; recompute on the same x is impossible, so
            # compare the op with the emulator on the x the run used (deterministic shape, random values)
            return
        close(1e-2, 1e-2)(out, exp)

    if stage == "pack":
        # The pack stage's x is drawn inside run(); make it deterministic and shared with the reference.
        kk = a["in_features"]
        xfix = torch.randn(3, kk, generator=gen(rng)) if isinstance(kk, int) and 0 < kk < 4096 else None

        def run():  # noqa: F811
            p = torch_qdev.dyn_quant_pack_4bit_weight(a["weights"], a["scales"], a["bias"], a["block_size"],
                                                      a["in_features"], a["out_features"])
            x = xfix.to(p.device) if xfix is not None else a["x"]
            return torch_qdev.dyn_quant_matmul_4bit(x, p, a["block_size"], a["in_features"], a["out_features"])

        def ref():  # noqa: F811
            w4_pack_contract(a["weights"], a["scales"], a["bias"], a["block_size"], a["in_features"],
                             a["out_features"])
            x = xfix if xfix is not None else cpu(a["x"])
            return w4_ref(x, cpu(a["weights"]), cpu(a["scales"]), cpu(a["bias"]), a["block_size"],
                          a["in_features"], a["out_features"])

        cmp = close(1e-2, 1e-2)
    return "dyn_quant_4bit", desc, run, ref, cmp


# ---------------------------------------------------------------- formats

def fam_format(rng, dev):
    g = gen(rng)
    shape = rng.choice([(5, 40), (2, 3, 33), (16,), (1, 1)])
    a = {"t": rand_like_dtype(shape, rng.choice([torch.int8, torch.float16, torch.float32, torch.int32]), rng),
         "fmt": rng.choice([2, 29, 2, 29, 0])}
    a = to_dev(a, dev if dev != "cpu" else "qdev:0")
    del g
    desc = f"{shape}; " + mutate_args(a, {"t": "tensor", "fmt": "int"}, rng, DEVICES)
    op = rng.choice(["cast", "cast_", "get", "size"])

    def run():
        prev_fmt = torch.qdev.config.allow_internal_format
        torch.qdev.config.allow_internal_format = True
        try:
            if op == "cast":
                return torch.ops.qdev.npu_format_cast(a["t"], a["fmt"])
            if op == "cast_":
                t = a["t"].clone() if isinstance(a["t"], torch.Tensor) else a["t"]
                return torch.ops.qdev.npu_format_cast_.acl_format(t, a["fmt"])
            if op == "get":
                return torch.ops.qdev.get_npu_format(a["t"])
            return torch.ops.qdev.get_storage_size(a["t"])
        finally:
            torch.qdev.config.allow_internal_format = prev_fmt

    def ref():
        t = a["t"]
        need(isinstance(t, torch.Tensor) and t.device.type == "qdev", "qdev tensor")
        if op in ("get", "size"):
            return None
        need(a["fmt"] in {int(f) for f in torch_qdev.Format} and a["fmt"] != -1, "known format")
        return t

    def cmp(out, exp):
        if exp is None:
            assert isinstance(out, int), f"expected an int, got {type(out)}"
            return
        if (out.data_ptr(), out.shape, out.stride()) == (exp.data_ptr(), exp.shape, exp.stride()):
            return  # the same tensor (a relabel): equal without reading a possibly huge expanded view
        eq_exact(out, exp.cpu())

    return f"npu_format_{op}", desc, run, ref, cmp


# ---------------------------------------------------------------- layers

def fam_layers(rng, dev):
    from torch_qdev.contrib.module import LinearA8W8Dynamic, LinearW4A8Dynamic, LinearWeightQuant
    g = gen(rng)
    k, n = rng.choice([(64, 16), (32, 40)])
    lin = torch.nn.Linear(k, n, bias=rng.random() < 0.5)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) * 0.1)
        if lin.bias is not None:
            lin.bias.copy_(torch.randn(n, generator=g))
    layer = rng.choice(["a8w8", "w4a8", "wq8", "wq4"])
    param = {"group_size": rng.choice([None, 32, 0, -32, 16, 64, 33, k])}
    x_dtype = {"a8w8": torch.bfloat16, "w4a8": torch.float32, "wq8": torch.bfloat16, "wq4": torch.bfloat16}[layer]
    a = {"x": torch.randn(rng.choice([(3, k), (2, 2, k), (1, k)]), generator=g).to(x_dtype)}
    a = to_dev(a, dev)
    mutate_param = rng.random() < 0.25
    if mutate_param:
        desc = f"group_size {param['group_size']}"
    else:
        param["group_size"] = {"a8w8": None, "w4a8": 32, "wq8": 0, "wq4": 32}[layer]
        desc = mutate_args(a, {"x": "tensor"}, rng, DEVICES)
    desc = f"{layer} k={k} n={n}; {desc}"
    import copy
    lin_dev = copy.deepcopy(lin).to(dev)

    def build():
        gs = param["group_size"]
        if layer == "a8w8":
            return LinearA8W8Dynamic.from_float(lin_dev)
        if layer == "w4a8":
            return LinearW4A8Dynamic.from_float(lin_dev, group_size=gs)
        return LinearWeightQuant.from_float(lin_dev, bits=8 if layer == "wq8" else 4, group_size=gs or 0,
                                            dtype=torch.bfloat16)

    def run():
        mod = build()
        return mod(a["x"])

    def ref():
        x = a["x"]
        need(isinstance(x, torch.Tensor), "x")
        same_device(x, lin_dev.weight)
        gs = param["group_size"]
        need(x.dim() >= 1 and x.shape[-1] == k, "x features")
        mod = build()  # parameters as the layer quantized them (the same deterministic code)
        xc = x.cpu()
        if layer == "a8w8":
            need(x.dtype in (torch.float16, torch.bfloat16, torch.float32), "a8w8 x")
            xq, s = dynamic_quant_ref({"input": xc.reshape(-1, k), "smooth_scales": None, "group_index": None,
                                       "dst_type": None, "quant_mode": "pertoken", "dst_type_max": 0.0}, False)
            od = xc.dtype if xc.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
            y = qref.quant_matmul(xq, mod.weight.cpu().t(), mod.scale.cpu(), pertoken_scale=s,
                                  bias=mod.bias.cpu() if mod.bias is not None else None, output_dtype=od)
            return y.reshape(*xc.shape[:-1], n).to(xc.dtype)
        if layer == "w4a8":
            need(xc.dtype in (torch.float32, torch.bfloat16, torch.float16), "w4a8 x")
            need(gs is None or gs == k or (gs > 0 and gs % 32 == 0 and k % gs == 0), "group")
            bs = k if gs is None else gs
            from torch_qdev.contrib.module.linear_w4a8_dynamic import quantize_int4_symmetric
            w_u8, sc = quantize_int4_symmetric(lin.weight, bs)
            sc = sc.float() if bs == k else sc.bfloat16()
            xin = xc if xc.dtype != torch.float16 else xc.float()
            y = w4_ref(xin, w_u8, sc, lin.bias.detach().float() if lin.bias is not None else None, bs, k, n)
            return y.to(xc.dtype)
        gs = gs or 0
        need(gs == 0 or (gs > 0 and gs % 32 == 0 and k % gs == 0), "group")
        w = mod.weight.cpu()
        return weight_quant_ref({"x": xc, "weight": w.t(), "antiquant_scale": mod.antiquant_scale.cpu().t()
                                 if mod.antiquant_scale.dim() == 2 else mod.antiquant_scale.cpu(),
                                 "antiquant_offset": None, "quant_scale": None, "quant_offset": None,
                                 "bias": mod.bias.cpu() if mod.bias is not None else None,
                                 "antiquant_group_size": mod.antiquant_group_size, "inner_precise": 0})

    return f"layer_{layer}", desc, run, ref, close(2e-2, 2e-2)


def fam_quantize(rng, dev):
    from torch_qdev.quantization import A16W4Config, A16W8Config, A8W8DynamicConfig, W4A8DynamicConfig, quantize_
    g = gen(rng)
    k, n = rng.choice([(64, 32), (96, 16), (30, 8), (1, 4)])
    model = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.ReLU(), torch.nn.Linear(n, n))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    cfg_name = rng.choice(["a8w8", "w4a8", "a16w8", "a16w4"])
    gs = rng.choice([None, 0, 32, 64, -32, 16, 33, 2**40, k])
    dtype = rng.choice([torch.bfloat16, torch.float16, torch.float32, torch.int8])
    try:
        cfg = {"a8w8": lambda: A8W8DynamicConfig(), "w4a8": lambda: W4A8DynamicConfig(group_size=gs),
               "a16w8": lambda: A16W8Config(group_size=gs, dtype=dtype),
               "a16w4": lambda: A16W4Config(group_size=gs, dtype=dtype)}[cfg_name]()
        cfg_err = None
    except Exception as e:  # a config that refuses its arguments at construction is fine
        cfg, cfg_err = None, e
    target = rng.choice([dev, dev, "cpu", "qdev:1", "meta", 7])
    x = torch.randn(3, k, generator=g)
    desc = f"{cfg_name} group_size={gs} dtype={dtype} device={target} k={k} n={n}"
    float_out = model(x)

    def run():
        if cfg_err is not None:
            raise cfg_err
        quantize_(model, cfg, device=target)
        xin = x.to(next(model.parameters(), next(model.buffers(), x)).device)
        if cfg_name.startswith("a16"):
            xin = xin.to(cfg.dtype)
        return model(xin)

    def ref():
        need(cfg is not None, "config")
        return float_out

    def cmp(out, exp):
        # Quantization error bound: the output keeps the float model's direction.
        if out.device.type == "meta":  # a model quantized onto meta computes shapes only
            assert out.shape == exp.shape, f"shape {out.shape} vs {exp.shape}"
            return
        o = out.detach().float().cpu().reshape(-1)
        e = exp.detach().float().reshape(-1)
        assert o.shape == e.shape, f"shape {o.shape} vs {e.shape}"
        cos = torch.nn.functional.cosine_similarity(o, e, dim=0)
        assert cos > 0.9, f"cosine {cos:.3f} to the float model"

    return f"quantize_{cfg_name}", desc, run, ref, cmp


# ---------------------------------------------------------------- runtime (device, streams, events, RNG)

def fam_runtime(rng, dev):
    count = torch.qdev.device_count()
    idx = rng.choice([0, 1, count, -1, -2, 127, 128, 255, 256, 257, 2**31, -2**31, 2**63 - 1])
    what = rng.choice(["set_device", "device", "props", "stream", "stream_id", "event", "rng_get", "rng_set",
                       "cpu_generator", "event_cross"])
    desc = f"{what}({idx})"
    valid = 0 <= idx < count

    def run():
        before = torch.qdev.current_device()
        try:
            if what == "set_device":
                torch.qdev.set_device(idx)
                return torch.qdev.current_device()
            if what == "device":
                with torch.qdev.device(idx):
                    return torch.qdev.current_device()
            if what == "props":
                return torch.qdev.get_device_properties(idx).name
            if what == "stream":
                return torch.qdev.Stream(device=idx).device_index
            if what == "stream_id":
                dtype_ = torch.qdev.current_stream(0).device_type
                return torch.qdev.Stream(stream_id=idx, device_index=0, device_type=dtype_).priority
            if what == "event":
                e = torch.qdev.Event(device=idx)
                e.record(torch.qdev.current_stream(idx))
                return e.device.index
            if what == "event_cross":
                e = torch.qdev.Event(device=0)
                e.record(torch.qdev.Stream(device=1))
                return e.device.index
            if what == "rng_get":
                return torch.qdev.get_rng_state(idx)
            if what == "rng_set":
                states = [s.clone() for s in torch.qdev.get_rng_state_all()]
                torch.qdev.set_rng_state(torch.qdev.get_rng_state(0), idx)
                after = torch.qdev.get_rng_state_all()
                for i, (s0, s1) in enumerate(zip(states, after)):
                    if i != idx:
                        assert torch.equal(s0, s1), f"set_rng_state({idx}) changed qdev:{i}'s state"
                return idx
            if what == "cpu_generator":
                return torch.rand(3, device="qdev", generator=torch.Generator())
        finally:
            torch.qdev.set_device(before)

    def ref():
        if what == "cpu_generator":
            raise Invalid("a CPU generator for a qdev op")
        if what == "event_cross":
            raise Invalid("event of qdev:0 recorded on a qdev:1 stream")
        if what == "stream_id":
            need(0 <= idx <= 64, "stream id")
            return -1 if idx > 32 else 0
        if what in ("set_device", "device") and idx < 0:
            return torch.qdev.current_device()
        need(valid, "device index")
        if what == "props":
            return torch.qdev.get_device_properties(idx).name
        if what == "rng_get":
            return torch.qdev.get_rng_state(idx)
        return idx

    def cmp(out, exp):
        if isinstance(exp, torch.Tensor):
            assert torch.equal(out, exp)
        else:
            assert out == exp, f"{out!r} vs {exp!r}"

    return "runtime", desc, run, ref, cmp


def fam_serialization(rng, dev):
    import io
    shape = rng.choice([(5, 40), (33, 64), (2, 16, 32)])
    t = rand_like_dtype(shape, rng.choice([torch.int8, torch.float16]), rng)
    zipfile = rng.random() < 0.5
    desc = f"torch.save/load NZ {shape} zipfile={zipfile}"

    def run():
        prev_fmt = torch.qdev.config.allow_internal_format
        torch.qdev.config.allow_internal_format = True
        try:
            nz = torch_qdev.npu_format_cast(t.to("qdev"), 29)
        finally:
            torch.qdev.config.allow_internal_format = prev_fmt
        buf = io.BytesIO()
        torch.save(nz, buf, _use_new_zipfile_serialization=zipfile)
        buf.seek(0)
        return torch.load(buf, weights_only=zipfile)

    return "serialization", desc, run, lambda: t, eq_exact


FAMILIES = [
    (fam_trans_quant_param, 1), (fam_quant_matmul, 5), (fam_dynamic_quant, 4), (fam_weight_quant, 4),
    (fam_int4pack, 1), (fam_w4a8, 4), (fam_format, 2), (fam_layers, 3), (fam_quantize, 1), (fam_runtime, 2),
    (fam_serialization, 1),
]


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    fams = [f for f, w in FAMILIES for _ in range(w)]
    fam = rng.choice(fams)
    dev = rng.choice(["qdev:0", "qdev:0", "cpu", "qdev:1"])
    family, desc, run, ref, cmp = fam(rng, dev)
    return Case(seed, family, f"[{dev}] {desc}", run, ref, cmp)
