"""The accurate 4-bit recipe: asymmetric W4A8 buffers (bit-exact against an emulator of the
documented formula on every ISA), the error-minimising search, A16W4 offsets, 8-bit head and
embeddings, calibration."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import torch_qdev
from torch_qdev.contrib.module import LinearW4A8Dynamic, LinearWeightQuant, LinearA8W8Dynamic
from torch_qdev.quantization import A16W4Config, W4A8DynamicConfig, quantize_
from torch_qdev.quantization.embedding import QuantizedEmbedding
from torch_qdev.quantization.int4_search import quantize_groups_asym, search_scale_min

from test_w4a8 import quant_rows


def emulate_asym(x, u, scales, zeros, gs, K, N, bias=None):
    """qd_w4a8.h's asymmetric formula: per group acc = (acc + iacc * s) + asum * z."""
    q, nzp, recip = quant_rows(x)
    w = u.to(torch.int64) - 8
    a = q - nzp[:, None]
    G = K // gs
    acc = torch.einsum("mgk,ngk->mng", a.reshape(-1, G, gs).double(), w.reshape(N, G, gs).double()).to(torch.int64)
    asum = a.reshape(-1, G, gs).sum(-1)  # (M, G)
    s, z = scales.float().reshape(N, G), zeros.float().reshape(N, G)
    main = torch.zeros(x.shape[0], N)
    for g in range(G):
        main = main + acc[:, :, g].float() * s[:, g]
        main = main + asum[:, g, None].float() * z[:, g]
    out = main * recip[:, None]
    return out + bias if bias is not None else out


def make_asym(K, N, gs, seed=0, with_bias=False):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.uint8)
    dt = torch.float32 if gs == K else torch.bfloat16
    s = ((torch.rand(N * (K // gs), generator=gen) + 0.05) * 0.02).to(dt)
    z = (torch.randn(N * (K // gs), generator=gen) * 0.05).to(dt)
    bias = torch.randn(N, generator=gen) if with_bias else None
    return u, (u[:, 1::2] << 4) | u[:, ::2], s, z, bias


@pytest.mark.parametrize("gs,with_bias,m", list(itertools.product([32, 64, "K"], [False, True], [1, 2, 5, 9])))
def test_asym_bit_exact_with_emulator(isa, gs, with_bias, m):
    K, N = 256, 80
    gs = K if gs == "K" else gs
    u, w_u8, s, z, bias = make_asym(K, N, gs, seed=m, with_bias=with_bias)
    x = torch.randn(m, K, generator=torch.Generator().manual_seed(2))
    expected = emulate_asym(x, u, s, z, gs, K, N, bias)
    packed = torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, z, bias, gs, K, N)
    assert packed.numel() == torch_qdev.ops.w4_packed_bytes(K, N, gs, bias is not None, s.dtype == torch.bfloat16,
                                                            has_zeros=True)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x, packed, gs, K, N), expected)
    pq = torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8.qdev(), s.qdev(), z.qdev(),
                                                    None if bias is None else bias.qdev(), gs, K, N)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x.qdev(), pq, gs, K, N).cpu(), expected)


def test_asym_with_zero_zeros_is_the_symmetric_result():
    K, N, gs = 128, 64, 32
    _, w_u8, s, z, _ = make_asym(K, N, gs)
    x = torch.randn(3, K)
    sym = torch_qdev.dyn_quant_matmul_4bit(x, torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, None, gs, K, N), gs, K, N)
    asym = torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, torch.zeros_like(z), None, gs, K, N)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x, asym, gs, K, N), sym)


def test_asym_pack_errors_and_opcheck():
    K, N, gs = 64, 32, 32
    _, w_u8, s, z, bias = make_asym(K, N, gs, with_bias=True)
    with pytest.raises(RuntimeError, match="expected 64 zeros"):
        torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, z[:-1], None, gs, K, N)
    with pytest.raises(RuntimeError, match="zeros must be float32 or bfloat16"):
        torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, z.to(torch.int32), None, gs, K, N)
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, z.qdev(), None, gs, K, N)
    packed = torch_qdev.dyn_quant_pack_4bit_weight_asym(w_u8, s, z, bias, gs, K, N)
    bad = packed.clone()
    bad[4] = 3  # version 3 with the zero flag set
    with pytest.raises(RuntimeError, match="version and zero flag disagree"):
        torch_qdev.dyn_quant_matmul_4bit(torch.randn(1, K), bad, gs, K, N)
    for device in ("cpu", "qdev"):
        torch.library.opcheck(torch.ops.qdev.dyn_quant_pack_4bit_weight_asym.default,
                              (w_u8.to(device), s.to(device), z.to(device), bias.to(device), gs, K, N))


def test_search_beats_minmax_and_respects_importance():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(512, 32, generator=gen) * torch.rand(512, 1, generator=gen)
    w[::7, 3] *= 6  # outliers

    def err(s, m, imp):
        u = torch.round((w - m[:, None]) / s[:, None]).clamp(0, 15)
        return (imp * (u * s[:, None] + m[:, None] - w) ** 2).sum()

    ones = torch.ones_like(w)
    mn, mx = w.amin(1), w.amax(1)
    s, m = search_scale_min(w, ones)
    assert err(s, m, ones) < 0.85 * err((mx - mn) / 15, mn, ones)
    # a strongly weighted column is fitted better when its importance says so
    imp = ones.clone()
    imp[:, 5] = 100.0
    s2, m2 = search_scale_min(w, imp)
    col = torch.zeros_like(w)
    col[:, 5] = 1
    assert err(s2, m2, col) < err(s, m, col)


def test_quantize_groups_asym_levels_are_nearest_for_rounded_params():
    w = torch.randn(16, 64)
    rp = lambda s, m: (s.bfloat16().float(), m.bfloat16().float())
    u, s, m = quantize_groups_asym(w, 32, round_params=rp)
    assert torch.equal(s, s.bfloat16().float()) and torch.equal(m, m.bfloat16().float())
    assert u.min() >= 0 and u.max() <= 15
    deq = (u.reshape(16, 2, 32) * s[..., None] + m[..., None]).reshape(16, 64)
    # the step is the scale: nothing inside the range is off by more than half a step
    inside = ((w - m.repeat_interleave(32, 1)) / s.repeat_interleave(32, 1)).abs() <= 15
    assert ((deq - w).abs() <= s.repeat_interleave(32, 1) / 2 + 1e-6)[inside].all()


def _relerr(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("gs", [32, None])
def test_w4a8_default_recipe_more_accurate_than_pytorch_recipe(gs):
    torch.manual_seed(0)
    lin = nn.Linear(256, 96)
    with torch.no_grad():
        lin.weight.add_(torch.randn(96, 1) * 0.02)  # rows not centred: the zero term matters
    x = torch.randn(16, 256)
    ref = lin(x)
    new = W4A8DynamicConfig(group_size=gs).convert(lin)
    old = W4A8DynamicConfig.pytorch_recipe(gs).convert(lin)
    assert isinstance(new, LinearW4A8Dynamic) and new.asymmetric and not old.asymmetric
    assert _relerr(new(x), ref) < 0.8 * _relerr(old(x), ref)
    # the state dict round-trips into a layer built the same way
    fresh = LinearW4A8Dynamic(256, 96, group_size=gs, asymmetric=True)
    fresh.load_state_dict(new.state_dict())
    assert torch.equal(fresh(x), new(x))


def test_a16w4_default_recipe_uses_offsets_and_is_more_accurate():
    torch.manual_seed(1)
    lin = nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        lin.weight.add_(torch.randn(64, 1) * 0.02)
    x = torch.randn(4, 256).bfloat16()
    ref = nn.functional.linear(x.float(), lin.weight)
    new = A16W4Config().convert(lin)
    old = A16W4Config.pytorch_recipe(32).convert(lin)
    assert isinstance(new, LinearWeightQuant) and new.antiquant_offset is not None and old.antiquant_offset is None
    assert _relerr(new(x), ref) < 0.8 * _relerr(old(x), ref)


class TinyLM(nn.Module):
    def __init__(self, tied=True):
        super().__init__()
        self.embed = nn.Embedding(100, 64)
        self.body = nn.Linear(64, 64)
        self.lm_head = nn.Linear(64, 100, bias=False)
        if tied:
            self.lm_head.weight = self.embed.weight

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, ids):
        return self.lm_head(torch.relu(self.body(self.embed(ids))))


@pytest.mark.parametrize("tied", [True, False])
def test_head_and_embeddings_at_8_bits(tied):
    torch.manual_seed(0)
    model = TinyLM(tied)
    ids = torch.randint(0, 100, (2, 7))
    ref = model(ids)
    quantize_(model, W4A8DynamicConfig())
    assert isinstance(model.lm_head, LinearA8W8Dynamic)
    assert isinstance(model.body, LinearW4A8Dynamic)
    assert isinstance(model.embed, QuantizedEmbedding)
    assert _relerr(model(ids), ref) < 0.1
    m2 = quantize_(TinyLM(tied), W4A8DynamicConfig(head_bits=None, embedding_bits=None))
    assert type(m2.lm_head) is nn.Linear and type(m2.embed) is nn.Embedding
    m3 = quantize_(TinyLM(tied), W4A8DynamicConfig(head_bits=4))
    assert isinstance(m3.lm_head, LinearW4A8Dynamic)
    m4 = quantize_(TinyLM(tied).to(torch.bfloat16), A16W4Config())
    assert isinstance(m4.lm_head, LinearWeightQuant) and m4.lm_head.weight.dtype == torch.int8
    assert m4(ids).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="head_bits"):
        W4A8DynamicConfig(head_bits=6)


def test_quantized_embedding_keeps_embed_scale():
    emb = nn.Embedding(10, 8)
    emb.embed_scale = torch.tensor(3.0)
    q = QuantizedEmbedding.from_float(emb)
    ids = torch.tensor([1, 2, 3])
    expected = emb(ids) * 3.0
    assert _relerr(q(ids), expected) < 0.01


@pytest.mark.parametrize("config", [W4A8DynamicConfig(), A16W4Config()], ids=["w4a8", "a16w4"])
def test_calibration_reduces_error_on_outlier_channels(config):
    torch.manual_seed(0)
    k = 128
    model = nn.Sequential(nn.Linear(k, 64), nn.Linear(64, 64))
    chan = torch.ones(k)
    chan[::16] = 30.0  # a few salient input channels, as in real activations

    def batch(n):
        return torch.randn(n, k) * chan

    dt = torch.float32 if isinstance(config, W4A8DynamicConfig) else torch.bfloat16
    x = batch(64)
    ref = model(x)
    import copy
    plain = quantize_(copy.deepcopy(model), config).to(dt)
    calib = quantize_(copy.deepcopy(model), config, calibration=[batch(32) for _ in range(4)]).to(dt)
    e_plain, e_calib = _relerr(plain(x.to(dt)), ref), _relerr(calib(x.to(dt)), ref)
    assert e_calib < 0.9 * e_plain, (e_calib, e_plain)


def test_search_kernel_matches_torch_search():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(300, 64, generator=gen)
    imp = torch.rand(300, 64, generator=gen)
    def err(s, m, a):
        u = torch.round((w - m[:, None]) / s[:, None]).clamp(0, 15)
        return (a * (u * s[:, None] + m[:, None] - w) ** 2).sum(1)

    for i in (None, imp):
        a = i if i is not None else w.abs() + w.square().mean(1, keepdim=True).sqrt()
        s_k, m_k = search_scale_min(w, i)
        s_t, m_t = search_scale_min(w, i, use_kernel=False)
        # the same fits, but for near-ties that float rounding decides either way
        assert (torch.isclose(s_k, s_t, rtol=1e-4) & torch.isclose(m_k, m_t, rtol=1e-4, atol=1e-6)).float().mean() > 0.95
        ek, et = err(s_k, m_k, a), err(s_t, m_t, a)
        assert ek.sum() <= et.sum() * 1.002 and (ek <= et * 1.05 + 1e-6).all()
    with pytest.raises(RuntimeError, match="must be a 2-D float32"):
        torch.ops.qdev.int4_group_search(w.double(), None, [0.0], 15)
    torch.library.opcheck(torch.ops.qdev.int4_group_search.default, (w, imp, [0.0, 0.5], 15))
