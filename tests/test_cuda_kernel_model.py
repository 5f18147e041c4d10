"""A CPU model of the CUDA kernels' data movement, run on every machine.

The CUDA kernels (csrc/kernels/cuda) cannot run without a GPU, but most of what
can go wrong in them is index arithmetic: the W4 packing, the activation
"decode order", which bytes each lane loads, the shared-memory swizzles seen
through ldmatrix, the k permutation shared by A and B fragments, the column
sums gathered with shuffles and the per-group float flushes. This file
transliterates those index computations from the .cu sources into Python and
feeds them to a model of the two warp instructions they rely on, written from
the PTX ISA's fragment layouts:

  mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32   (a0..a3, b0..b1, c0..c3 per lane)
  ldmatrix.sync.aligned.m8n8.x4.shared.b16          (lane l addresses row l % 8 of matrix l / 8)

The results must equal the CPU kernels' bit for bit. This checks the kernels'
layouts and their arithmetic order, not the CUDA code itself (nor the PTX
model): the GPU tests (test_cuda_ops.py) do that where a GPU exists.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_qdev  # noqa: F401
from test_w4a8 import make

ops = torch.ops.qdev
HIGH_NIBBLES = 0xF0F0F0F0


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def sbytes(word: int) -> list[int]:
    out = []
    for e in range(4):
        b = (word >> (8 * e)) & 0xFF
        out.append(b - 256 if b >= 128 else b)
    return out


def u32(buf: np.ndarray, off: int) -> int:
    return int.from_bytes(buf[off:off + 4].astype(np.uint8).tobytes(), "little")


def words(buf: np.ndarray, off: int, n: int) -> list[int]:
    return [u32(buf, off + 4 * i) for i in range(n)]


def dp4a_ones(word: int, acc: int) -> int:
    return acc + sum(sbytes(word))


def mma_s8_16832(c, a, b0, b1):
    """c[lane][0..3] += A (16x32) @ B (32x8) from per-lane fragments, PTX layout."""
    A = np.zeros((16, 32), np.int64)
    B = np.zeros((32, 8), np.int64)
    for lane in range(32):
        gid, tig = lane >> 2, lane & 3
        for i, (row, kb) in enumerate(((gid, 0), (gid + 8, 0), (gid, 16), (gid + 8, 16))):
            A[row, kb + 4 * tig:kb + 4 * tig + 4] = sbytes(a[lane][i])
        B[4 * tig:4 * tig + 4, gid] = sbytes(b0[lane])
        B[16 + 4 * tig:20 + 4 * tig, gid] = sbytes(b1[lane])
    C = A @ B
    for lane in range(32):
        gid, tig = lane >> 2, lane & 3
        for e, (r, col) in enumerate(((gid, 2 * tig), (gid, 2 * tig + 1), (gid + 8, 2 * tig), (gid + 8, 2 * tig + 1))):
            c[lane][e] = wrap32(c[lane][e] + int(C[r, col]))


def ldmatrix_x4(smem: np.ndarray, addrs: list[int]):
    """Lane t receives, from matrix j (rows addressed by lanes 8j..8j+7), row t / 4, bytes 4 (t % 4)..+3."""
    return [[u32(smem, addrs[8 * j + t // 4] + 4 * (t % 4)) for j in range(4)] for t in range(32)]


# --- A8W8 ------------------------------------------------------------------------------------

def swizzle64(row, chunk):
    return row * 64 + ((chunk ^ ((row >> 1) & 3)) << 4)


def model_tiled_block(a, b, m, n, k, tile_m, tile_n):
    """qgemm_s8_tiled_kernel for one block: int32 accumulators of its 128 x 128 tile."""
    BM = BN = 128
    BK = 64
    m0, n0 = tile_m * BM, tile_n * BN
    out = {}
    accs = {(w, mi, ni): [[0] * 4 for _ in range(32)] for w in range(8) for mi in range(4) for ni in range(4)}

    def load_tile(src, row0, rows_total, k0):
        smem = np.zeros(128 * BK, np.int64)
        for cidx in range(128 * BK // 16):
            row, chunk = cidx >> 2, cidx & 3
            grow, gk = row0 + row, k0 + chunk * 16
            nbytes = min(16, k - gk) if grow < rows_total and gk < k else 0
            dst = swizzle64(row, chunk)
            if nbytes:
                smem[dst:dst + nbytes] = src[grow, gk:gk + nbytes]
        return smem

    for kt in range((k + BK - 1) // BK):
        sa = load_tile(a, m0, m, kt * BK)
        sb = load_tile(b, n0, n, kt * BK)
        for ks in range(BK // 32):
            for warp in range(8):
                wm, wn = warp // 4, warp % 4
                af = [ldmatrix_x4(sa, [swizzle64(wm * 64 + mi * 16 + (lane & 15), ks * 2 + (lane >> 4))
                                       for lane in range(32)]) for mi in range(4)]
                bf = [None] * 4
                for nj in range(2):
                    r = ldmatrix_x4(sb, [swizzle64(wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3),
                                                   ks * 2 + ((lane >> 3) & 1)) for lane in range(32)])
                    bf[2 * nj] = ([r[l][0] for l in range(32)], [r[l][1] for l in range(32)])
                    bf[2 * nj + 1] = ([r[l][2] for l in range(32)], [r[l][3] for l in range(32)])
                for mi in range(4):
                    for ni in range(4):
                        mma_s8_16832(accs[(warp, mi, ni)], af[mi], bf[ni][0], bf[ni][1])
    for (warp, mi, ni), c in accs.items():
        wm, wn = warp // 4, warp % 4
        for lane in range(32):
            gid, tig = lane >> 2, lane & 3
            row, col = m0 + wm * 64 + mi * 16 + gid, n0 + wn * 32 + ni * 8 + tig * 2
            for e, (r, cc) in enumerate(((row, col), (row, col + 1), (row + 8, col), (row + 8, col + 1))):
                if r < m and cc < n:
                    out[(r, cc)] = c[lane][e]
    return out


def test_tiled_gemm_model_matches_int_matmul():
    gen = torch.Generator().manual_seed(0)
    m, k, n = 40, 200, 136  # a partial m tile, a k tail of 8 bytes, a partial second n tile
    a = torch.randint(-128, 128, (m, k), generator=gen).numpy()
    b = torch.randint(-128, 128, (n, k), generator=gen).numpy()
    ref = a.astype(np.int64) @ b.astype(np.int64).T
    got = {}
    for tile_n in range(2):
        got.update(model_tiled_block(a, b, m, n, k, 0, tile_n))
    assert len(got) == m * n
    assert all(got[(r, c)] == ref[r, c] for r in range(m) for c in range(n))


@pytest.mark.parametrize("m,k", [(1, 100), (16, 200), (9, 64)])
def test_gemv_model_matches_int_matmul(m, k):
    """qgemm_s8_gemv_kernel: 4 warps split the 64-byte k-chunks, lanes feed mma straight from 16-byte loads."""
    gen = torch.Generator().manual_seed(m + k)
    n = 13
    a = torch.randint(-128, 128, (m, k), generator=gen).numpy()
    b = torch.randint(-128, 128, (n, k), generator=gen).numpy()
    ref = a.astype(np.int64) @ b.astype(np.int64).T
    lda = (k + 15) // 16 * 16
    a_pad = np.zeros((m, lda), np.int64)
    a_pad[:, :k] = a
    b_pad = np.zeros((n, lda), np.int64)
    b_pad[:, :k] = b

    def load_row16(rows, r, k0):  # bytes past k are masked to zero
        if r is None or k0 >= k:
            return [0, 0, 0, 0]
        v = np.zeros(16, np.int64)
        valid = min(16, k - k0)
        v[:valid] = rows[r, k0:k0 + valid]
        return words(v, 0, 4)

    chunks = (k + 63) // 64
    for block in range((n + 7) // 8):
        n0 = block * 8
        partial = []
        for warp in range(4):
            c = [[0] * 4 for _ in range(32)]
            for chunk in range(warp, chunks, 4):
                per_lane = []
                for lane in range(32):
                    gid, tig = lane >> 2, lane & 3
                    k0 = chunk * 64 + tig * 16
                    per_lane.append((load_row16(b_pad, n0 + gid if n0 + gid < n else None, k0),
                                     load_row16(a_pad, gid if gid < m else None, k0),
                                     load_row16(a_pad, gid + 8 if gid + 8 < m else None, k0)))
                for step in range(2):
                    af = [[lo[2 * step], hi[2 * step], lo[2 * step + 1], hi[2 * step + 1]] for _, lo, hi in per_lane]
                    mma_s8_16832(c, af, [bv[2 * step] for bv, _, _ in per_lane],
                                 [bv[2 * step + 1] for bv, _, _ in per_lane])
            partial.append(c)
        for lane in range(32):
            gid, tig = lane >> 2, lane & 3
            tot = [sum(partial[w][lane][e] for w in range(4)) for e in range(4)]
            for e, (r, col) in enumerate(((gid, n0 + 2 * tig), (gid, n0 + 2 * tig + 1),
                                          (gid + 8, n0 + 2 * tig), (gid + 8, n0 + 2 * tig + 1))):
                if r < m and col < n:
                    assert tot[e] == ref[r, col], (r, col)


# --- W4A8 ------------------------------------------------------------------------------------

def cuda_layout(K, N, group):
    n_pad, k_pad = (N + 7) // 8 * 8, (K + 127) // 128 * 128
    return dict(K=K, N=N, group=group, channelwise=group == K, groups=1 if group == K else K // group,
                n_pad=n_pad, k_pad=k_pad, k_chunks=k_pad // 128)


def model_pack(w_u8, scales, L):
    """w4_pack_nibbles_kernel + w4_pack_scales_bias_kernel (scales widened to fp32 here)."""
    weights = w_u8.reshape(-1).numpy().astype(np.int64)
    K, N, k_chunks = L["K"], L["N"], L["k_chunks"]

    def signed_nibble(kk, n):
        if kk >= K or n >= N:
            return 0
        byte = int(weights[n * (K // 2) + kk // 2])
        nib = (byte >> 4) if kk & 1 else (byte & 0xF)
        return nib ^ 8

    nwords = (L["n_pad"] // 8) * k_chunks * 128
    nib = np.zeros(nwords * 4, np.int64)
    for w in range(nwords):
        tile_chunk, within = divmod(w, 128)
        tile, chunk = divmod(tile_chunk, k_chunks)
        g, q, s = within // 16, (within // 4) % 4, within % 4
        n, k_lo = tile * 8 + g, chunk * 128 + s * 32 + q * 4
        word = 0
        for j in range(4):
            word |= (signed_nibble(k_lo + j, n) | (signed_nibble(k_lo + 16 + j, n) << 4)) << (8 * j)
        nib[4 * w:4 * w + 4] = [(word >> (8 * j)) & 0xFF for j in range(4)]
    sc = scales.float().reshape(N, L["groups"]).numpy()
    sc_cuda = np.zeros(L["groups"] * L["n_pad"], np.float32)
    for i in range(sc_cuda.size):
        g, n = divmod(i, L["n_pad"])
        sc_cuda[i] = sc[n, g] if n < N else 0.0
    return nib, sc_cuda


def model_quant_rows(x, L, decode_order):
    """w4a8_quant_rows_kernel: float32 steps of the CPU reference; q in natural or decode order."""
    f32 = np.float32
    rows = x.shape[0]
    q = np.zeros((rows, L["k_pad"]), np.int64)
    recip, zp = np.zeros(rows, np.float32), np.zeros(rows, np.int64)
    for r in range(rows):
        xr = x[r].numpy().astype(np.float32)
        rmin, rmax = min(f32(0), xr.min()), max(f32(0), xr.max())
        scale = f32(1) if rmin == rmax else f32(f32(255) / f32(rmax - rmin))
        recip[r] = f32(f32(1) / scale) if scale != 0 else f32(0)
        dmin, dmax = f32(rmin * scale), f32(rmax * scale)
        zpf = f32(-128 - dmin) if f32(f32(-128 + dmin) + f32(127 + dmax)) > 0 else f32(127 - dmax)
        zp[r] = int(np.rint(min(max(zpf, f32(-128)), f32(127))))
        for p in range(L["k_pad"]):
            c, rr = divmod(p, 128)
            kk = c * 128 + (32 * ((rr // 8) % 4) + 16 * ((rr // 4) % 2) + 4 * (rr // 32) + rr % 4
                            if decode_order else rr)
            if kk < L["K"]:
                v = float(f32(xr[kk] * scale))
                rv = int(np.sign(v) * np.floor(abs(v) + 0.5))  # roundf: half away from zero
                q[r, p] = min(max(rv + int(zp[r]), -128), 127)
    return q, recip, zp


def column_sums(cs, lane_tig):
    cs1 = [cs[l] + cs[l ^ 1] for l in range(32)]
    cs2 = [cs1[l] + cs1[l ^ 2] for l in range(32)]
    return [cs2[(2 * lane_tig[l]) * 4] for l in range(32)], [cs2[(2 * lane_tig[l] + 1) * 4] for l in range(32)]


def flush_group(c, acc, zp_lo, zp_hi, cs_even, cs_odd, s_even, s_odd):
    f32 = np.float32
    iacc = [(c[0] >> 4) - zp_lo * (cs_even >> 4), (c[1] >> 4) - zp_lo * (cs_odd >> 4),
            (c[2] >> 4) - zp_hi * (cs_even >> 4), (c[3] >> 4) - zp_hi * (cs_odd >> 4)]
    s = [s_even, s_odd, s_even, s_odd]
    for e in range(4):
        acc[e] = f32(acc[e] + f32(f32(iacc[e]) * f32(s[e])))
        c[e] = 0


def store(out, bias, recip, m, N, row, col, acc):
    if row < m and col < N:
        y = np.float32(acc * recip[row])
        if bias is not None:
            y = np.float32(y + np.float32(bias[col]))
        out[row, col] = y


def group_ends(L, k_end):
    return not L["channelwise"] and k_end <= L["K"] and k_end % L["group"] == 0


def model_decode(x, nib, sc, bias, L):
    m = x.shape[0]
    q, recip, zp = model_quant_rows(x, L, decode_order=True)
    out = np.zeros((m, L["N"]), np.float32)
    tig_of = [l & 3 for l in range(32)]
    for tile in range(L["n_pad"] // 8):
        c = [[0] * 4 for _ in range(32)]
        acc = [[np.float32(0)] * 4 for _ in range(32)]
        cs = [0] * 32

        def flush(g):
            even, odd = column_sums(cs, tig_of)
            for lane in range(32):
                gid, tig = lane >> 2, lane & 3
                col = tile * 8 + 2 * tig
                flush_group(c[lane], acc[lane], int(zp[gid]) if gid < m else 0,
                            int(zp[gid + 8]) if gid + 8 < m else 0, even[lane], odd[lane],
                            sc[g * L["n_pad"] + col], sc[g * L["n_pad"] + col + 1])
                cs[lane] = 0

        for chunk in range(L["k_chunks"]):
            base = (tile * L["k_chunks"] + chunk) * 512
            lanes = []
            for lane in range(32):
                gid, tig = lane >> 2, lane & 3
                bw = words(nib, base + lane * 16, 4)
                lo = words(q[gid], chunk * 128 + tig * 32, 8) if gid < m else [0] * 8
                hi = words(q[gid + 8], chunk * 128 + tig * 32, 8) if gid + 8 < m else [0] * 8
                lanes.append((bw, lo, hi))
            for s in range(4):
                b0 = [(bw[s] << 4) & HIGH_NIBBLES for bw, _, _ in lanes]
                b1 = [bw[s] & HIGH_NIBBLES for bw, _, _ in lanes]
                for lane in range(32):
                    cs[lane] = dp4a_ones(b1[lane], dp4a_ones(b0[lane], cs[lane]))
                af = [[lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]] for _, lo, hi in lanes]
                mma_s8_16832(c, af, b0, b1)
                k_end = ((chunk * 4) + s + 1) * 32
                if group_ends(L, k_end):
                    flush(k_end // L["group"] - 1)
        if L["channelwise"]:
            flush(0)
        for lane in range(32):
            gid, tig = lane >> 2, lane & 3
            col = tile * 8 + 2 * tig
            for e, (r, cc) in enumerate(((gid, col), (gid, col + 1), (gid + 8, col), (gid + 8, col + 1))):
                store(out, bias, recip, m, L["N"], r, cc, acc[lane][e])
    return out


def swizzle128(row, chunk):
    return row * 128 + ((chunk ^ (row & 7)) << 4)


def model_prefill_block(x, nib, sc, bias, L, tile_m, tile_n):
    m = x.shape[0]
    q, recip, zp = model_quant_rows(x, L, decode_order=False)
    out = np.full((m, L["N"]), np.nan, np.float32)
    m0, tile0 = tile_m * 128, tile_n * 16
    n_tiles = L["n_pad"] // 8
    tig_of = [l & 3 for l in range(32)]
    state = {}
    for warp in range(8):
        state[warp] = dict(c=[[[[0] * 4 for _ in range(32)] for _ in range(4)] for _ in range(4)],
                           acc=[[[[np.float32(0)] * 4 for _ in range(32)] for _ in range(4)] for _ in range(4)],
                           cs=[[0] * 32 for _ in range(4)])

    def zp_of(row):
        return int(zp[row]) if row < m else 0

    def flush(warp, g):
        wm, wn = warp // 4, warp % 4
        st = state[warp]
        for ni in range(4):
            even, odd = column_sums(st["cs"][ni], tig_of)
            st["cs"][ni] = [0] * 32
            for lane in range(32):
                gid, tig = lane >> 2, lane & 3
                col = (tile0 + wn * 4 + ni) * 8 + 2 * tig
                s_even = sc[g * L["n_pad"] + col] if col < L["n_pad"] else 0.0
                s_odd = sc[g * L["n_pad"] + col + 1] if col + 1 < L["n_pad"] else 0.0
                for mi in range(4):
                    row = m0 + wm * 64 + mi * 16 + gid
                    flush_group(st["c"][mi][ni][lane], st["acc"][mi][ni][lane], zp_of(row), zp_of(row + 8),
                                even[lane], odd[lane], s_even, s_odd)

    for chunk in range(L["k_chunks"]):
        sa = np.zeros(128 * 128, np.int64)
        sb = np.zeros(16 * 512, np.int64)
        for cidx in range(128 * 128 // 16):
            row, ch = cidx >> 3, cidx & 7
            if m0 + row < m:
                dst = swizzle128(row, ch)
                sa[dst:dst + 16] = q[m0 + row, chunk * 128 + ch * 16:chunk * 128 + ch * 16 + 16]
        for cidx in range(16 * 512 // 16):
            t, part = cidx >> 5, cidx & 31
            if tile0 + t < n_tiles:
                src = ((tile0 + t) * L["k_chunks"] + chunk) * 512 + part * 16
                sb[t * 512 + part * 16:t * 512 + part * 16 + 16] = nib[src:src + 16]
        for warp in range(8):
            wm, wn = warp // 4, warp % 4
            st = state[warp]
            bw = [[words(sb, (wn * 4 + ni) * 512 + lane * 16, 4) for lane in range(32)] for ni in range(4)]
            for s in range(4):
                af = [ldmatrix_x4(sa, [swizzle128(wm * 64 + mi * 16 + (lane & 15), 2 * s + (lane >> 4))
                                       for lane in range(32)]) for mi in range(4)]
                for ni in range(4):
                    b0 = [(bw[ni][lane][s] << 4) & HIGH_NIBBLES for lane in range(32)]
                    b1 = [bw[ni][lane][s] & HIGH_NIBBLES for lane in range(32)]
                    for lane in range(32):
                        st["cs"][ni][lane] = dp4a_ones(b1[lane], dp4a_ones(b0[lane], st["cs"][ni][lane]))
                    for mi in range(4):
                        mma_s8_16832(st["c"][mi][ni], af[mi], b0, b1)
                k_end = (chunk * 4 + s + 1) * 32
                if group_ends(L, k_end):
                    flush(warp, k_end // L["group"] - 1)
    for warp in range(8):
        if L["channelwise"]:
            flush(warp, 0)
        wm, wn = warp // 4, warp % 4
        for mi in range(4):
            for ni in range(4):
                for lane in range(32):
                    gid, tig = lane >> 2, lane & 3
                    row, col = m0 + wm * 64 + mi * 16 + gid, (tile0 + wn * 4 + ni) * 8 + 2 * tig
                    a = state[warp]["acc"][mi][ni][lane]
                    for e, (r, cc) in enumerate(((row, col), (row, col + 1), (row + 8, col), (row + 8, col + 1))):
                        store(out, bias, recip, m, L["N"], r, cc, a[e])
    return out


W4_MODEL_CASES = [(256, 16, 32, False), (256, 16, 128, True), (200, 12, 200, True)]  # (K, N, group, bias)


@pytest.mark.parametrize("K,N,gs,with_bias", W4_MODEL_CASES)
@pytest.mark.parametrize("m", [1, 11])
def test_w4a8_decode_model_matches_cpu(K, N, gs, with_bias, m):
    _, w_u8, s, bias = make(K, N, gs, seed=K + m, with_bias=with_bias)
    x = torch.randn(m, K, generator=torch.Generator().manual_seed(m))
    expected = ops.dyn_quant_matmul_4bit(x, ops.dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, K, N), gs, K, N)
    L = cuda_layout(K, N, gs)
    nib, sc = model_pack(w_u8, s, L)
    out = model_decode(x, nib, sc, None if bias is None else bias.numpy(), L)
    assert np.array_equal(out, expected.numpy())


@pytest.mark.parametrize("K,N,gs,with_bias", W4_MODEL_CASES[:2])
def test_w4a8_prefill_model_matches_cpu(K, N, gs, with_bias):
    m = 20
    _, w_u8, s, bias = make(K, N, gs, seed=K, with_bias=with_bias)
    x = torch.randn(m, K, generator=torch.Generator().manual_seed(7))
    expected = ops.dyn_quant_matmul_4bit(x, ops.dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, K, N), gs, K, N)
    L = cuda_layout(K, N, gs)
    nib, sc = model_pack(w_u8, s, L)
    out = model_prefill_block(x, nib, sc, None if bias is None else bias.numpy(), L, 0, 0)
    assert np.array_equal(out, expected.numpy())
