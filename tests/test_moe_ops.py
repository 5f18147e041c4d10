"""torch_npu's MoE ops on qdev and CPU: npu_grouped_matmul in every quantization mode and
group-list form against plain-PyTorch references, routing, SwiGLU / RMSNorm + quantization,
error texts, opcheck and torch.compile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_qdev
from conftest import ISAS, cpu_isa
from quant_reference import decode_offset, decode_scale, dynamic_quant, pack_int4, trans_quant_param, unpack_int4

DEVICES = ["cpu", "qdev"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _ranges(counts):
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    return list(zip(starts[:-1], starts[1:]))


def _group_list(counts, glt):
    t = torch.tensor(counts, dtype=torch.int64)
    return t.cumsum(0) if glt == 0 else t


# --- references ----------------------------------------------------------------------------

def ref_w8a8(x, w, counts, scale=None, pts=None, bias=None, out=torch.int32):
    """x (M, K) int8, w (E, K, N) int8; scale (E, N) float/int64, pts (M,), bias (E, N)."""
    ys = []
    for e, (a, b) in enumerate(_ranges(counts)):
        acc = x[a:b].to(torch.int64) @ w[e].to(torch.int64)
        acc = acc.to(torch.int32)
        if bias is not None and bias.dtype == torch.int32:
            acc = acc + bias[e]
        if out == torch.int32:
            ys.append(acc)
            continue
        if out == torch.int8:
            s, o = decode_scale(scale[e]), decode_offset(scale[e])
            v = torch.round((acc.float() * s).clamp(-256, 255)) + o.float()
            ys.append(v.clamp(-128, 127).to(torch.int8))
            continue
        f = acc.float() * scale[e].float()
        if pts is not None:
            f = f * pts[a:b, None]
        if bias is not None and bias.dtype != torch.int32:
            f = f + bias[e].float()
        ys.append(f.to(out))
    return ys


def ref_w4a8(x, w4, counts, scale, pts, bias, out):
    """scale (E, G, N): y = ((sum_g (x_g @ w_g) * scale[g]) * pts) + bias, fp32 in group order."""
    w = unpack_int4(w4)  # (E, K, N/8) int32 -> (E, K, N) int8
    E, K, N = w.shape
    G = scale.shape[1]
    gs = K // G
    ys = []
    for e, (a, b) in enumerate(_ranges(counts)):
        acc = torch.zeros(b - a, N)
        for g in range(G):
            ig = (x[a:b, g * gs:(g + 1) * gs].to(torch.int64) @ w[e, g * gs:(g + 1) * gs].to(torch.int64))
            acc = acc + ig.float() * scale[e, g].float()
        acc = acc * pts[a:b, None]
        if bias is not None:
            acc = acc + bias[e].float()
        ys.append(acc.to(out))
    return ys


def ref_weight_only(x, w, counts, ascale, aoffset, bias):
    """w (E, K, N) int8 values; ascale/aoffset (E, G, N) in x's dtype; W' rounded in x's dtype."""
    dt = x.dtype
    E, K, N = w.shape
    G = ascale.shape[1]
    ys = []
    for e, (a, b) in enumerate(_ranges(counts)):
        s = ascale[e].repeat_interleave(K // G, 0)
        wd = w[e].to(dt)
        if aoffset is not None:
            wd = wd + aoffset[e].repeat_interleave(K // G, 0)
        wd = wd * s
        y = x[a:b].float() @ wd.float()
        if bias is not None:
            y = y + bias[e].float()
        ys.append(y.to(dt))
    return ys


def _w8a8_data(seed, E=5, K=96, N=80, counts=(3, 0, 7, 1, 0)):
    g = _gen(seed)
    M = sum(counts)
    x = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
    w = torch.randint(-128, 128, (E, K, N), dtype=torch.int8, generator=g)
    return x, w, list(counts)


def _cat(ys, split_item):
    return torch.cat(ys, 0) if split_item >= 2 else ys


def _check(out, ys, split_item, exact=True, **tol):
    if split_item >= 2:
        assert len(out) == 1
        got, want = out[0].cpu(), torch.cat(ys, 0)
        if exact:
            assert torch.equal(got, want)
        else:
            torch.testing.assert_close(got, want, **tol)
    else:
        assert len(out) == len(ys)
        for o, y in zip(out, ys):
            if exact:
                assert torch.equal(o.cpu(), y)
            else:
                torch.testing.assert_close(o.cpu(), y, **tol)


# --- npu_grouped_matmul: W8A8 --------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("glt", [0, 1])
@pytest.mark.parametrize("split_item", [0, 1, 2, 3])
def test_gmm_w8a8_int32_every_isa(device, glt, split_item):
    x, w, counts = _w8a8_data(1)
    ref = ref_w8a8(x, w, counts)
    for isa in ISAS:
        with cpu_isa(isa):
            out = torch_qdev.npu_grouped_matmul([x.to(device)], [w.to(device)],
                                                group_list=_group_list(counts, glt).to(device),
                                                split_item=split_item, group_type=0, group_list_type=glt,
                                                output_dtype=torch.int32)
            assert out[0].device.type == device
            _check(out, ref, split_item)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias_dtype", [None, torch.int32, torch.float32])
def test_gmm_w8a8_dynamic_per_token(device, out_dtype, scale_dtype, bias_dtype):
    x, w, counts = _w8a8_data(2, E=4, K=64, N=72, counts=(5, 0, 9, 2))
    g = _gen(3)
    E, N, M = w.shape[0], w.shape[2], x.shape[0]
    scale = (torch.rand(E, N, generator=g) * 1e-3).to(scale_dtype)
    pts = torch.rand(M, generator=g) * 0.05
    bias = None
    if bias_dtype is torch.int32:
        bias = torch.randint(-1000, 1000, (E, N), dtype=torch.int32, generator=g)
    elif bias_dtype is not None:
        bias = torch.randn(E, N, generator=g)
    d = lambda t: None if t is None else [t.to(device)]
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [w.to(device)], bias=d(bias), scale=d(scale),
                                        per_token_scale=d(pts), group_list=_group_list(counts, 1).to(device),
                                        split_item=2, group_type=0, group_list_type=1, output_dtype=out_dtype)
    _check(out, ref_w8a8(x, w, counts, scale=scale, pts=pts, bias=bias, out=out_dtype), 2)


@pytest.mark.parametrize("device", DEVICES)
def test_gmm_w8a8_int8_out_int64_scale(device):
    x, w, counts = _w8a8_data(4, E=3, K=64, N=40, counts=(4, 6, 0))
    g = _gen(5)
    scale = trans_quant_param(torch.rand(3, 40, generator=g) * 1e-3, torch.randint(-5, 5, (3, 40), generator=g).float())
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [w.to(device)], scale=[scale.to(device)],
                                        group_list=torch.tensor(counts).cumsum(0).to(device), split_item=3,
                                        group_type=0, output_dtype=torch.int8)
    _check(out, ref_w8a8(x, w, counts, scale=scale, out=torch.int8), 3)


def test_gmm_w8a8_nz_weight_matches_nd_and_tracks_writes():
    x, w, counts = _w8a8_data(6, E=4, K=96, N=64, counts=(2, 0, 5, 1))
    w_nz = torch_qdev.npu_format_cast(w.qdev(), 29)
    assert torch_qdev.get_npu_format(w_nz) == 29
    gl = torch.tensor(counts).qdev()
    run = lambda wt: torch_qdev.npu_grouped_matmul([x.qdev()], [wt], group_list=gl, split_item=3, group_type=0,
                                                   group_list_type=1, output_dtype=torch.int32)[0].cpu()
    assert torch.equal(run(w_nz), torch.cat(ref_w8a8(x, w, counts), 0))
    # a write through the logical view changes the weight: the cached column sums must follow
    w_nz[2].fill_(1)
    w2 = w.clone()
    w2[2].fill_(1)
    assert torch.equal(run(w_nz), torch.cat(ref_w8a8(x, w2, counts), 0))


@pytest.mark.parametrize("device", DEVICES)
def test_gmm_weight_lists_and_multi_x(device):
    g = _gen(7)
    ws = [torch.randint(-128, 128, (32, 24), dtype=torch.int8, generator=g) for _ in range(3)]
    xs = [torch.randint(-128, 128, s, dtype=torch.int8, generator=g) for s in [(2, 32), (3, 2, 32), (1, 32)]]
    # split_item 0, no group_list: one output per x, x's leading dims kept
    out = torch_qdev.npu_grouped_matmul([t.to(device) for t in xs], [t.to(device) for t in ws], split_item=0,
                                        output_dtype=torch.int32)
    for o, xi, wi in zip(out, xs, ws):
        assert o.shape == (*xi.shape[:-1], 24)
        assert torch.equal(o.cpu(), (xi.to(torch.int64) @ wi.to(torch.int64)).to(torch.int32))
    # single x + weight list + group_list, split_item 2
    x = torch.randint(-128, 128, (6, 32), dtype=torch.int8, generator=g)
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [t.to(device) for t in ws], group_list=[1, 1, 6],
                                        split_item=2, group_type=0, output_dtype=torch.int32)
    want = torch.cat(ref_w8a8(x, torch.stack(ws), [1, 0, 5]), 0)
    assert torch.equal(out[0].cpu(), want)


# --- W4A8 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("counts", [(1, 0, 2), (9, 4, 0)])
def test_gmm_w4a8(device, groups, counts):
    g = _gen(8)
    E, K, N = 3, 64, 48
    M = sum(counts)
    x = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
    wv = torch.randint(-8, 8, (E, K, N), dtype=torch.int8, generator=g)
    w4 = pack_int4(wv)  # (E, K, N/8) int32, nibbles along N
    scale = torch.rand(E, groups, N, generator=g) * 1e-2
    pts = torch.rand(M, generator=g) * 0.1
    bias = torch.randn(E, N, generator=g)
    for isa in ISAS:
        with cpu_isa(isa):
            out = torch_qdev.npu_grouped_matmul(
                [x.to(device)], [w4.to(device)], bias=[bias.to(device)],
                scale=[scale.reshape(E, -1).to(device) if groups == 1 else scale.to(device)],
                per_token_scale=[pts.to(device)], group_list=torch.tensor(counts).to(device), split_item=3,
                group_type=0, group_list_type=1, output_dtype=torch.bfloat16)
            _check(out, ref_w4a8(x, w4, list(counts), scale, pts, bias, torch.bfloat16), 3, exact=False,
                   rtol=1e-2, atol=1e-2)


# --- W8A16 / W4A16 ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nd", "transposed"])
@pytest.mark.parametrize("counts", [(1, 0, 2, 1), (12, 0, 3, 20)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_gmm_w8a16(device, dtype, layout, counts, with_bias):
    g = _gen(9)
    E, K, N = 4, 64, 40
    x = torch.randn(sum(counts), K, generator=g).to(dtype)
    w = torch.randint(-128, 128, (E, K, N), dtype=torch.int8, generator=g)
    ws = (torch.rand(E, 1, N, generator=g) * 0.02).to(dtype)
    wo = torch.randn(E, 1, N, generator=g).to(dtype)
    bias = torch.randn(E, N, generator=g).to(dtype if dtype == torch.float16 else torch.float32)
    bias = bias if with_bias else None
    wt = w.to(device) if layout == "nd" else w.transpose(1, 2).contiguous().to(device).transpose(1, 2)
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [wt], bias=None if bias is None else [bias.to(device)],
                                        antiquant_scale=[ws.reshape(E, N).to(device)],
                                        antiquant_offset=[wo.reshape(E, N).to(device)],
                                        group_list=torch.tensor(counts).cumsum(0).to(device), split_item=2,
                                        group_type=0, output_dtype=dtype)
    _check(out, ref_weight_only(x, w, list(counts), ws, wo, bias), 2, exact=False, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups", [1, 2])
def test_gmm_w4a16(device, groups):
    g = _gen(10)
    E, K, N = 3, 64, 32
    counts = [2, 5, 0]
    x = torch.randn(sum(counts), K, generator=g).half()
    wv = torch.randint(-8, 8, (E, K, N), dtype=torch.int8, generator=g)
    ws = (torch.rand(E, groups, N, generator=g) * 0.1).half()
    wo = torch.randn(E, groups, N, generator=g).half()
    args = dict(antiquant_scale=[(ws if groups > 1 else ws.reshape(E, N)).to(device)],
                antiquant_offset=[(wo if groups > 1 else wo.reshape(E, N)).to(device)])
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [pack_int4(wv).to(device)], **args,
                                        group_list=torch.tensor(counts).to(device), split_item=3, group_type=0,
                                        group_list_type=1)
    assert out[0].shape == (sum(counts), N)
    _check(out, ref_weight_only(x, wv, counts, ws, wo, None), 3, exact=False, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_gmm_float(device):
    g = _gen(11)
    counts = [3, 0, 4]
    x = torch.randn(7, 16, generator=g).bfloat16()
    w = torch.randn(3, 16, 8, generator=g).bfloat16()
    out = torch_qdev.npu_grouped_matmul([x.to(device)], [w.to(device)], group_list=torch.tensor(counts).to(device),
                                        split_item=0, group_type=0, group_list_type=1)
    assert [tuple(o.shape) for o in out] == [(3, 8), (0, 8), (4, 8)]
    for o, (a, b), e in zip(out, _ranges(counts), range(3)):
        assert torch.equal(o.cpu(), (x[a:b].float() @ w[e].float()).bfloat16())


def test_gmm_errors():
    x, w, counts = _w8a8_data(12, E=2, K=32, N=32, counts=(2, 3))
    gl = torch.tensor(counts)
    call = lambda **kw: torch_qdev.npu_grouped_matmul(
        [kw.pop("x", x)], [kw.pop("w", w)], **{**dict(group_list=gl, split_item=3, group_type=0, group_list_type=1,
                                                      output_dtype=torch.int32), **kw})
    with pytest.raises(RuntimeError, match=r"Invalid value of split_item \[5\], which should only be one of 0/1/2/3."):
        call(split_item=5)
    with pytest.raises(RuntimeError, match="Requires manual passing group_type, current is None."):
        call(group_type=None)
    with pytest.raises(RuntimeError, match="group_type currently only support -1 and 0, current value is 1"):
        call(group_type=1)
    with pytest.raises(RuntimeError, match="the sum of group_list \\(4\\) must equal the rows of x \\(5\\)"):
        call(group_list=torch.tensor([1, 3]))
    with pytest.raises(RuntimeError, match="non-negative and non-decreasing"):
        call(group_list=torch.tensor([3, 2]), group_list_type=0)
    with pytest.raises(RuntimeError, match="group_list must be non-negative when group_list_type is 1"):
        call(group_list=torch.tensor([-1, 6]))
    with pytest.raises(RuntimeError, match="length of group_list \\(3\\) must equal the number of weights \\(2\\)"):
        call(group_list=torch.tensor([1, 2, 2]))
    with pytest.raises(RuntimeError, match="same device"):
        call(w=w.qdev())
    with pytest.raises(RuntimeError, match="int8 output needs an int64 scale"):
        call(output_dtype=torch.int8, scale=[torch.ones(2, 32)])
    with pytest.raises(RuntimeError, match="with torch.bfloat16 output needs scale"):
        call(output_dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="int32 output takes no scale"):
        call(scale=[torch.ones(2, 32)])
    with pytest.raises(RuntimeError, match="scale must hold 32 values for each of the 2 experts"):
        call(output_dtype=torch.bfloat16, scale=[torch.ones(2, 16)], per_token_scale=[torch.ones(5)])
    with pytest.raises(RuntimeError, match="the K of x \\(16\\) and of weight \\(32\\) must be equal"):
        call(x=x[:, :16])
    with pytest.raises(RuntimeError, match="need antiquant_scale"):
        call(x=x.half(), output_dtype=None)
    with pytest.raises(RuntimeError, match="Invalid inputs: neither x nor weight could be empty."):
        torch.ops.qdev.npu_grouped_matmul([], [w], group_type=0)


@pytest.mark.parametrize("device", DEVICES)
def test_gmm_opcheck(device):
    x, w, counts = _w8a8_data(13, E=3, K=32, N=32, counts=(2, 0, 3))
    gl = torch.tensor(counts).to(device)
    torch.library.opcheck(torch.ops.qdev.npu_grouped_matmul.default, ([x.to(device)], [w.to(device)]),
                          dict(group_list=gl, split_item=3, group_type=0, group_list_type=1, output_dtype=3))
    scale, pts = torch.rand(3, 32) * 1e-3, torch.rand(5)
    torch.library.opcheck(torch.ops.qdev.npu_grouped_matmul.default, ([x.to(device)], [w.to(device)]),
                          dict(scale=[scale.to(device)], per_token_scale=[pts.to(device)], group_list=gl,
                               split_item=2, group_type=0, group_list_type=1, output_dtype=15))


@pytest.mark.parametrize("device", DEVICES)
def test_gmm_opcheck_other_modes(device):
    """split_item 0 with group_list (data-dependent output sizes), W8A16 and W4A8."""
    g = _gen(16)
    x = torch.randint(-128, 128, (5, 32), dtype=torch.int8, generator=g).to(device)
    w = torch.randint(-128, 128, (3, 32, 16), dtype=torch.int8, generator=g).to(device)
    gl = torch.tensor([2, 0, 3]).to(device)
    op = torch.ops.qdev.npu_grouped_matmul.default
    torch.library.opcheck(op, ([x], [w]), dict(group_list=gl, split_item=0, group_type=0, group_list_type=1,
                                                output_dtype=3))
    torch.library.opcheck(op, ([torch.randn(5, 32, generator=g).bfloat16().to(device)], [w]),
                          dict(antiquant_scale=[torch.rand(3, 16, generator=g).bfloat16().to(device)], group_list=gl,
                               split_item=3, group_type=0, group_list_type=1))
    w4 = torch.randint(-2**31, 2**31 - 1, (3, 32, 2), dtype=torch.int32, generator=g).to(device)
    torch.library.opcheck(op, ([x], [w4]), dict(scale=[torch.rand(3, 16, generator=g).to(device)],
                                                 per_token_scale=[torch.rand(5, generator=g).to(device)],
                                                 group_list=gl, split_item=3, group_type=0, group_list_type=1,
                                                 output_dtype=15))


def test_gmm_compile_fullgraph():
    x, w, counts = _w8a8_data(14, E=3, K=32, N=32, counts=(2, 1, 3))
    scale, pts = torch.rand(3, 32) * 1e-3, torch.rand(6)

    def f(x, w, gl, s, p):
        return torch_qdev.npu_grouped_matmul([x], [w], scale=[s], per_token_scale=[p], group_list=gl, split_item=3,
                                             group_type=0, group_list_type=1, output_dtype=torch.bfloat16)[0]

    args = (x.qdev(), w.qdev(), torch.tensor(counts).qdev(), scale.qdev(), pts.qdev())
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(*args)
    assert torch.equal(got.cpu(), f(*args).cpu())


# --- routing ---------------------------------------------------------------------------------

def ref_init_routing(x, idx, e0, e1, active_num=-1):
    flat = idx.reshape(-1).to(torch.int64)
    keep = (flat >= e0) & (flat < e1)
    order = torch.argsort(torch.where(keep, flat, torch.full_like(flat, 1 << 40)), stable=True)[: int(keep.sum())]
    if active_num > 0:
        order = order[:active_num]
    row_idx = torch.full((flat.numel(),), -1, dtype=torch.int32)
    row_idx[order] = torch.arange(order.numel(), dtype=torch.int32)
    counts = torch.bincount(flat[keep] - e0, minlength=e1 - e0)
    return order, row_idx, counts


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rng", [(), (2, 6)])
def test_init_routing_v2_and_back(device, dtype, rng):
    g = _gen(20)
    N, H, K, E = 7, 32, 3, 8
    x = torch.randn(N, H, generator=g).to(dtype)
    idx = torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(N)]).to(torch.int32)
    e0, e1 = rng if rng else (0, E)
    order, row_idx, counts = ref_init_routing(x, idx, e0, e1)
    ex, ri, tok, es = torch_qdev.npu_moe_init_routing_v2(
        x.to(device), idx.to(device), active_num=N * K, expert_num=E, expert_tokens_num_type=1,
        expert_tokens_num_flag=True, quant_mode=-1, active_expert_range=list(rng))
    assert ex.shape == (N * K, H) and ri.dtype == torch.int32 and tok.dtype == torch.int64
    assert torch.equal(ri.cpu(), row_idx)
    assert torch.equal(tok.cpu(), counts)
    assert torch.equal(ex.cpu()[: order.numel()], x[order // K])
    assert torch.equal(ex.cpu()[order.numel():], torch.zeros(N * K - order.numel(), H, dtype=dtype))
    _, _, cum, _ = torch_qdev.npu_moe_init_routing_v2(x.to(device), idx.to(device), expert_num=E, quant_mode=-1,
                                                     active_expert_range=list(rng))
    assert torch.equal(cum.cpu(), counts.cumsum(0))
    # back: weighted sum of each token's expert rows (dropped pairs contribute nothing)
    probs = torch.rand(N, K, generator=g)
    y = ex.float() * 2 + 1   # some per-row "expert output"
    keep = (idx >= e0) & (idx < e1)
    want = torch.zeros(N, H)
    for r in range(N):
        for k in range(K):
            if keep[r, k]:
                want[r] += probs[r, k] * (x[r].float() * 2 + 1)
    un = torch_qdev.npu_moe_token_unpermute(y.to(device), ri.to(device), probs.to(device))
    torch.testing.assert_close(un.cpu(), want, rtol=1e-5, atol=1e-4)
    fin = torch_qdev.npu_moe_finalize_routing(y.to(device), None, None, None, probs.to(device), ri.to(device),
                                              idx.to(device), drop_pad_mode=2)
    torch.testing.assert_close(fin.cpu(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_init_routing_v2_dynamic_quant_and_finalize_v1_layout(device):
    g = _gen(21)
    N, H, K, E = 5, 48, 2, 4
    x = torch.randn(N, H, generator=g).half()
    idx = torch.randint(0, E, (N, K), generator=g).to(torch.int32)
    smooth = torch.rand(E, H, generator=g) + 0.5
    ex, ri, tok, es = torch_qdev.npu_moe_init_routing_v2(x.to(device), idx.to(device), scale=smooth.to(device),
                                                         expert_num=E, quant_mode=1, expert_tokens_num_type=1)
    order, row_idx, counts = ref_init_routing(x, idx, 0, E)
    experts = idx.reshape(-1)[order].long()
    q, s = dynamic_quant(x[order // K], smooth=smooth[experts])
    assert ex.dtype == torch.int8
    assert torch.equal(ex.cpu(), q.to(torch.int8)) and torch.equal(es.cpu(), s)
    # finalize, drop_pad_mode 0: index k * N + r; skip1 + bias per expert
    ex_rows = torch.randn(N * K, H, generator=g)
    v1 = torch.randperm(N * K, generator=g).to(torch.int32)
    skip = torch.randn(N, H, generator=g)
    bias = torch.randn(E, H, generator=g)
    probs = torch.rand(N, K, generator=g)
    want = skip.clone()
    for r in range(N):
        for k in range(K):
            want[r] += probs[r, k] * (ex_rows[v1[k * N + r]] + bias[idx[r, k]])
    got = torch_qdev.npu_moe_finalize_routing(ex_rows.to(device), skip.to(device), None, bias.to(device),
                                              probs.to(device), v1.to(device), idx.to(device), drop_pad_mode=0)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)


def test_routing_errors_and_opcheck():
    x, idx = torch.randn(3, 16), torch.tensor([[0, 1], [1, 2], [3, 0]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="expert_idx holds 3, outside \\[0, expert_num = 3\\)"):
        torch_qdev.npu_moe_init_routing_v2(x, idx, expert_num=3, quant_mode=-1)
    with pytest.raises(RuntimeError, match="static quantization \\(0\\) is not supported"):
        torch_qdev.npu_moe_init_routing_v2(x, idx, expert_num=4)
    with pytest.raises(RuntimeError, match="only drop_pad_mode 0"):
        torch_qdev.npu_moe_init_routing_v2(x, idx, expert_num=4, drop_pad_mode=1, quant_mode=-1)
    for dev in DEVICES:
        torch.library.opcheck(torch.ops.qdev.npu_moe_init_routing_v2.default, (x.to(dev), idx.to(dev)),
                              dict(expert_num=4, quant_mode=1, expert_tokens_num_type=1))
        ri = torch.arange(6, dtype=torch.int32).to(dev)
        torch.library.opcheck(torch.ops.qdev.npu_moe_token_unpermute.default,
                              (torch.randn(6, 16).to(dev), ri, torch.rand(3, 2).to(dev)))
        torch.library.opcheck(torch.ops.qdev.npu_moe_finalize_routing.default,
                              (torch.randn(6, 16).to(dev), None, None, None, torch.rand(3, 2).to(dev), ri,
                               idx.to(dev), 2))


# --- activation / norm + quant -------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activate_left", [True, False])
@pytest.mark.parametrize("smooth", [False, True])
def test_dequant_swiglu_quant(device, activate_left, smooth):
    g = _gen(30)
    T, H, E = 9, 40, 3
    counts = [4, 0, 5]
    x = torch.randint(-50000, 50000, (T, 2 * H), dtype=torch.int32, generator=g)
    ws = torch.rand(E, 2 * H, generator=g) * 1e-3
    act = torch.rand(T, generator=g) * 1e-2
    qs = torch.rand(E, H, generator=g) + 0.5 if smooth else None
    y, s = torch_qdev.npu_dequant_swiglu_quant(
        x.to(device), weight_scale=ws.to(device), activation_scale=act.to(device),
        quant_scale=None if qs is None else qs.to(device), group_index=torch.tensor(counts).to(device),
        activate_left=activate_left, quant_mode=1)
    grp = torch.repeat_interleave(torch.arange(E), torch.tensor(counts))
    v = x.float() * ws[grp] * act[:, None]
    a, b = (v[:, :H], v[:, H:]) if activate_left else (v[:, H:], v[:, :H])
    sw = a / (1 + torch.exp(-a)) * b
    q, sc = dynamic_quant(sw, smooth=None if qs is None else qs[grp])
    assert y.dtype == torch.int8 and s.shape == (T,)
    # exp may differ from libm in the last ulp: allow a one-step difference in rare elements
    assert (y.cpu().int() - q.int()).abs().max() <= 1
    assert (y.cpu().int() != q.int()).float().mean() < 0.01
    torch.testing.assert_close(s.cpu(), sc, rtol=1e-5, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_swiglu(device, dtype):
    x = torch.randn(3, 4, 10, generator=_gen(31)).to(dtype)
    for dim in (-1, 1):
        y = torch_qdev.npu_swiglu(x.to(device), dim=dim)
        a, b = x.float().chunk(2, dim=dim)
        torch.testing.assert_close(y.cpu(), (F.silu(a) * b).to(dtype), rtol=1e-5, atol=1e-5)


def ref_rms(x1, x2, gamma, beta, eps):
    x = (x1 + x2)  # rounded to the input dtype, as the op's x output
    xf = x.float().reshape(-1, gamma.numel())
    inv = 1.0 / torch.sqrt((xf * xf).sum(-1, keepdim=True) / gamma.numel() + eps)
    y = xf * inv * gamma.float().reshape(-1)
    if beta is not None:
        y = y + beta.float().reshape(-1)
    return x, y


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape,gshape", [((2, 3, 64), (64,)), ((4, 8, 32), (8, 32))])
@pytest.mark.parametrize("div_mode", [True, False])
def test_add_rms_norm_quant(device, dtype, shape, gshape, div_mode):
    g = _gen(32)
    x1, x2 = torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)
    gamma, beta = torch.randn(gshape, generator=g).to(dtype), torch.randn(gshape, generator=g).to(dtype)
    s1 = torch.rand(gshape, generator=g) * 0.05 + 0.01
    z1 = torch.randint(-5, 5, gshape, generator=g).to(torch.int32)
    s2 = torch.rand(gshape, generator=g) * 0.05 + 0.01
    d = lambda t: t.to(device)
    y1, y2, x = torch_qdev.npu_add_rms_norm_quant(d(x1), d(x2), d(gamma), d(s1), d(z1), d(beta), d(s2),
                                                  epsilon=1e-6, div_mode=div_mode)
    xr, y = ref_rms(x1, x2, gamma, beta, 1e-6)
    f = (lambda s: y / s.reshape(-1)) if div_mode else (lambda s: y * s.reshape(-1))
    q1 = torch.round(f(s1) + z1.reshape(-1).float()).clamp(-128, 127).to(torch.int8).reshape(shape)
    q2 = torch.round(f(s2)).clamp(-128, 127).to(torch.int8).reshape(shape)
    assert torch.equal(x.cpu(), xr)
    # the sum of squares is accumulated in another order than torch's: rare 1-step differences
    for got, want in ((y1, q1), (y2, q2)):
        diff = (got.cpu().int() - want.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_add_rms_norm_dynamic_quant(device, dtype):
    g = _gen(33)
    shape = (2, 5, 96)
    x1, x2 = torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)
    gamma = torch.randn(96, generator=g).to(dtype)
    sm1, sm2 = torch.rand(96, generator=g) + 0.5, torch.rand(96, generator=g) + 0.5
    d = lambda t: t.to(device)
    y1, y2, x, sc1, sc2 = torch_qdev.npu_add_rms_norm_dynamic_quant(d(x1), d(x2), d(gamma), smooth_scale1=d(sm1),
                                                                    smooth_scale2=d(sm2))
    xr, y = ref_rms(x1, x2, gamma, None, 1e-6)
    assert torch.equal(x.cpu(), xr)
    for got, gs, sm in ((y1, sc1, sm1), (y2, sc2, sm2)):
        q, s = dynamic_quant(y, smooth=sm)
        assert gs.shape == shape[:-1]
        torch.testing.assert_close(gs.cpu().reshape(-1), s, rtol=1e-5, atol=0)
        diff = (got.cpu().reshape(-1, 96).int() - q.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    y1, y2, _, sc1, sc2 = torch_qdev.npu_add_rms_norm_dynamic_quant(d(x1), d(x2), d(gamma))
    assert y2.shape == (1,) and sc2.shape == (1,)


def test_norm_act_errors_and_opcheck():
    x = torch.randn(4, 32).half()
    g = torch.randn(32).half()
    with pytest.raises(RuntimeError, match="gamma's shape \\[16\\] must equal the trailing dims of x1"):
        torch_qdev.npu_add_rms_norm_quant(x, x, g[:16], torch.ones(16))
    with pytest.raises(RuntimeError, match="x1 and x2 must have one shape"):
        torch_qdev.npu_add_rms_norm_dynamic_quant(x, x[:2], g)
    with pytest.raises(RuntimeError, match="the last dim of x must be even"):
        torch_qdev.npu_dequant_swiglu_quant(torch.ones(2, 3, dtype=torch.int32), weight_scale=torch.ones(3),
                                            quant_mode=1)
    with pytest.raises(RuntimeError, match="int32 x needs weight_scale"):
        torch_qdev.npu_dequant_swiglu_quant(torch.ones(2, 4, dtype=torch.int32), quant_mode=1)
    for dev in DEVICES:
        d = lambda t: t.to(dev)
        torch.library.opcheck(torch.ops.qdev.npu_add_rms_norm_quant.default,
                              (d(x), d(x), d(g), d(torch.rand(32) + 0.1)))
        torch.library.opcheck(torch.ops.qdev.npu_add_rms_norm_dynamic_quant.default, (d(x), d(x), d(g)))
        torch.library.opcheck(torch.ops.qdev.npu_dequant_swiglu_quant.default,
                              (d(torch.randint(-99, 99, (5, 8), dtype=torch.int32)),),
                              dict(weight_scale=d(torch.rand(2, 8)), activation_scale=d(torch.rand(5)),
                                   group_index=d(torch.tensor([2, 3])), quant_mode=1))
        torch.library.opcheck(torch.ops.qdev.npu_swiglu.default, (d(x),))


def test_gmm_w4a8_nz_weight_cache_follows_writes_and_scales():
    g = _gen(15)
    E, K, N, counts = 3, 64, 32, [2, 0, 3]
    x = torch.randint(-128, 128, (5, K), dtype=torch.int8, generator=g)
    wv = torch.randint(-8, 8, (E, K, N), dtype=torch.int8, generator=g)
    w_nz = torch_qdev.npu_format_cast(pack_int4(wv).qdev(), 29)
    scale = (torch.rand(E, 1, N, generator=g) * 1e-2).qdev()
    pts = torch.rand(5, generator=g)
    run = lambda: torch_qdev.npu_grouped_matmul(
        [x.qdev()], [w_nz], scale=[scale], per_token_scale=[pts.qdev()], group_list=torch.tensor(counts).qdev(),
        split_item=3, group_type=0, group_list_type=1, output_dtype=torch.float16)[0].cpu()
    want = lambda: torch.cat(ref_w4a8(x, pack_int4(wv), counts, scale.cpu(), pts, None, torch.float16), 0)
    torch.testing.assert_close(run(), want(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(run(), want(), rtol=1e-3, atol=1e-3)   # from the cache
    scale.mul_(2)                                                      # new scales: repacked
    torch.testing.assert_close(run(), want(), rtol=1e-3, atol=1e-3)
    wv[2] = 7 - wv[2]                                                  # new weights: repacked
    w_nz.copy_(pack_int4(wv).qdev())
    torch.testing.assert_close(run(), want(), rtol=1e-3, atol=1e-3)


# --- static quantization -------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xdt", [torch.float32, torch.float16, torch.bfloat16])
def test_npu_quantize(device, xdt):
    g = _gen(40)
    x = (torch.randn(3, 5, 16, generator=g) * 4).to(xdt)
    # div_mode: per channel along axis 1 (size 5), int8 / uint8 / int32 outputs, int32 zero points
    s = torch.rand(5, generator=g) + 0.05
    z = torch.randint(-3, 3, (5,), generator=g).to(torch.int32)
    v = x.float() / s[:, None] + z[:, None].float()
    for dt, lo, hi, out in ((torch.qint8, -128, 127, torch.int8), (torch.quint8, 0, 255, torch.uint8),
                            (torch.int32, -2**31, 2**31 - 1, torch.int32)):
        y = torch_qdev.npu_quantize(x.to(device), s.to(device), z.to(device), dt, axis=1)
        assert y.dtype == out and torch.equal(y.cpu(), torch.round(v).clamp(lo, hi).to(out))
    # multiply mode along the last axis, int8 and int4 (int32 words)
    s2 = (torch.rand(16, generator=g) * 3).to(xdt)
    v2 = torch.round(x.float() * s2.float())
    y = torch_qdev.npu_quantize(x.to(device), s2.to(device), None, torch.qint8, -1, False)
    assert torch.equal(y.cpu(), v2.clamp(-128, 127).to(torch.int8))
    y4 = torch_qdev.npu_quantize(x.to(device), s2.to(device), None, torch.quint4x2, -1, False)
    assert y4.dtype == torch.int32 and y4.shape == (3, 5, 2)
    assert torch.equal(y4.cpu(), pack_int4(v2.clamp(-8, 7)))
    # the documented example: 0.5 rounds to 0 (half to even), -2.33 -> -2
    e = torch_qdev.npu_quantize(torch.tensor([[0.5 / 3, -0.7783]]).to(device), torch.tensor([3.0]).to(device), None,
                                torch.qint8, -1, False)
    assert e.cpu().tolist() == [[0, -2]]
    with pytest.raises(RuntimeError, match="must be divisible by 8 for torch.quint4x2"):
        torch_qdev.npu_quantize(x[..., :12], s2[:12], None, torch.quint4x2, -1, False)
    with pytest.raises(RuntimeError, match="scales must hold 1 or 5 values"):
        torch_qdev.npu_quantize(x, s[:3], None, torch.qint8, 1)
    torch.library.opcheck(torch.ops.qdev.npu_quantize.default, (x.to(device), s2.to(device), None, torch.quint4x2, -1,
                                                                False))


@pytest.mark.parametrize("device", DEVICES)
def test_npu_anti_quant(device):
    x = torch.tensor([1, 2, 3, 4], dtype=torch.int8)
    out = torch_qdev.npu_anti_quant(x.to(device), torch.tensor([2.0]).to(device), offset=torch.tensor([2.0]).to(device),
                                    dst_dtype=torch.float16)
    assert out.cpu().tolist() == [6.0, 8.0, 10.0, 12.0] and out.dtype == torch.float16   # the documented example
    g = _gen(41)
    v = torch.randint(-8, 8, (3, 16), dtype=torch.int8, generator=g)
    s, o = torch.rand(16, generator=g), torch.randn(16, generator=g)
    out = torch_qdev.npu_anti_quant(pack_int4(v).to(device), s.to(device), offset=o.to(device),
                                    dst_dtype=torch.bfloat16)
    assert torch.equal(out.cpu(), ((v.float() + o) * s).bfloat16())
    with pytest.raises(RuntimeError, match="x must be int8 or int32"):
        torch_qdev.npu_anti_quant(torch.ones(4), torch.ones(1))
    torch.library.opcheck(torch.ops.qdev.npu_anti_quant.default, (pack_int4(v).to(device), s.to(device)),
                          dict(offset=o.to(device), dst_dtype=15))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("glt", [0, 1])
def test_swiglu_quant(device, glt):
    g = _gen(42)
    x = torch.randn(2, 5, 24, generator=g)
    counts = [3, 0, 7]
    gi = torch.tensor(counts, dtype=torch.int32)
    gi = gi.cumsum(0).to(torch.int32) if glt == 0 else gi
    sm = torch.rand(3, 12, generator=g) + 0.5
    y, s = torch_qdev.npu_swiglu_quant(x.to(device), smooth_scales=sm.to(device), group_index=gi.to(device),
                                       activate_left=True, quant_mode=1, group_list_type=glt)
    assert y.shape == (2, 5, 12) and s.shape == (2, 5)
    xf = x.reshape(10, 24)
    sw = F.silu(xf[:, :12]) * xf[:, 12:]
    grp = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    q, sc = dynamic_quant(sw, smooth=sm[grp])
    assert (y.cpu().reshape(10, 12).int() - q.int()).abs().max() <= 1
    torch.testing.assert_close(s.cpu().reshape(-1), sc, rtol=1e-5, atol=0)
    with pytest.raises(RuntimeError, match="only dynamic quantization \\(quant_mode 1\\)"):
        torch_qdev.npu_swiglu_quant(x, quant_mode=0)
    torch.library.opcheck(torch.ops.qdev.npu_swiglu_quant.default, (x.to(device),),
                          dict(smooth_scales=sm.to(device), group_index=gi.to(device), quant_mode=1,
                               group_list_type=glt))


def test_row_kernel_variants_agree():
    """The SIMD row kernels against the scalar reference (QDEV ISA switch): quantization of the same
    fp32 rows is bit-identical; RMSNorm / SwiGLU differ only in summation order / exp ulps."""
    g = _gen(43)
    x = torch.randn(37, 2 * 72, generator=g) * 3
    x[3] = 0.0                                      # zero row: scale 0
    x1, x2 = torch.randn(9, 100, generator=g).bfloat16(), torch.randn(9, 100, generator=g).bfloat16()
    gamma = torch.randn(100, generator=g).bfloat16()
    s1 = torch.rand(100, generator=g) + 0.01
    res = {}
    for isa in ISAS:
        with cpu_isa(isa):
            res[isa] = (torch_qdev.npu_swiglu_quant(x, quant_mode=1),
                        torch_qdev.npu_add_rms_norm_dynamic_quant(x1, x2, gamma),
                        torch_qdev.npu_add_rms_norm_quant(x1, x2, gamma, s1, div_mode=False),
                        torch_qdev.npu_quantize(x, torch.tensor([0.3]), None, torch.qint8, -1, False),
                        torch_qdev.npu_swiglu(x))
    ref = res["ref"]
    for isa, r in res.items():
        (y, s), (q1, _, xo, sc1, _), (p1, _, _), qz, sw = r
        assert (y.int() - ref[0][0].int()).abs().max() <= 1 and torch.allclose(s, ref[0][1], rtol=1e-6, atol=0)
        assert (q1.int() - ref[1][0].int()).abs().max() <= 1 and torch.equal(xo, ref[1][2])
        torch.testing.assert_close(sc1, ref[1][3], rtol=1e-5, atol=0)
        assert (p1.int() - ref[2][0].int()).abs().max() <= 1
        assert torch.equal(qz, ref[3])
        torch.testing.assert_close(sw, ref[4], rtol=1e-5, atol=1e-6)
