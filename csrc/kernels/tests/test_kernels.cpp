// C++ tests of the torch-free kernels: every SIMD variant that is compiled in and
// supported by this CPU against the scalar reference, bit for bit, on the kinds of
// cases the Python tests use (odd m/n/k, m = 1, every epilogue, W4A8 channelwise
// and groups 32/64/128, bias or not); the reference itself against a naive loop.
// No torch and no test framework, so the same file runs natively and, cross
// compiled, under qemu-aarch64.
//
//   qdev_kernel_tests                      run every check
//   qdev_kernel_tests --expect-isa NAME    only check that the active variant
//                                          (CPU probe + QDEV_CPU_ISA cap) is NAME
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "../common/qd_common.h"
#include "../common/qd_cpu_features.h"
#include "../attention/qd_decode_attention.h"
#include "../matmul/qd_a8w4.h"
#include "../matmul/qd_qgemm.h"
#include "../matmul/qd_qgemm_s4.h"
#include "../matmul/qd_w4a8.h"
#include "../pack/qd_nz_layout.h"

namespace k = qdev::kernels;

namespace {

int g_checks = 0, g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    if (g_failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

// Deterministic generator (splitmix64), so every platform sees the same data.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1)); }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24); }  // [0, 1)
  float normal() {  // Box-Muller; only needs to be spread, not exact
    const float u = uniform() + 1e-7f, v = uniform();
    return std::sqrt(-2.0f * std::log(u)) * std::cos(6.2831853f * v);
  }
};

std::vector<k::Isa> simd_variants() {
  std::vector<k::Isa> out;
  for (int i = 1; i < k::kNumIsas; ++i) {
    if (k::isa_supported(static_cast<k::Isa>(i))) out.push_back(static_cast<k::Isa>(i));
  }
  return out;
}

std::string shape_name(const char* what, int64_t m, int64_t k_, int64_t n) {
  return std::string(what) + " m=" + std::to_string(m) + " k=" + std::to_string(k_) + " n=" + std::to_string(n);
}

// --- int8 GEMM --------------------------------------------------------------------

struct GemmEpilogueCase {
  const char* name;
  k::QGemmOut out;
  bool scale, scale_per_column, offset, pertoken, bias_i32, bias_f;
  bool offset_per_column = true;
  bool wide_scales = false;  // per-column scales from 1e-9 to 1e3: fp16 subnormals and infinities
};

constexpr GemmEpilogueCase kGemmEpilogues[] = {
    {"int32", k::QGemmOut::kInt32, false, false, false, false, false, false},
    {"int32+bias", k::QGemmOut::kInt32, false, false, false, false, true, false},
    {"int8 per-column scale+offset+bias", k::QGemmOut::kInt8, true, true, true, false, true, false},
    {"int8 per-tensor scale", k::QGemmOut::kInt8, true, false, false, false, false, false},
    {"fp16 scale+bias_i32", k::QGemmOut::kFloat16, true, true, false, false, true, false},
    {"bf16 scale+pertoken+bias_f", k::QGemmOut::kBFloat16, true, true, false, true, false, true},
    {"fp32 per-tensor scale+pertoken+bias_f", k::QGemmOut::kFloat32, true, false, false, true, false, true},
    {"fp32 no scale", k::QGemmOut::kFloat32, false, false, false, false, false, false},
    {"int8 per-tensor scale+offset", k::QGemmOut::kInt8, true, false, true, false, false, false, false},
    {"fp16 wide scales", k::QGemmOut::kFloat16, true, true, false, false, false, false, true, true},
    {"bf16 wide scales+bias_i32", k::QGemmOut::kBFloat16, true, true, false, false, true, false, true, true},
};

size_t out_bytes(k::QGemmOut out) {
  switch (out) {
    case k::QGemmOut::kInt8: return 1;
    case k::QGemmOut::kFloat16: case k::QGemmOut::kBFloat16: return 2;
    default: return 4;
  }
}

struct GemmProblem {
  int64_t m, k, n, lda, ldc;
  std::vector<int8_t> a, b;  // a: m x k, b: k x n (row-major)
  std::vector<uint8_t> a_packed;
  std::vector<int8_t> b_packed;
  std::vector<int32_t> colsum, offset, bias_i32;
  std::vector<float> scale, scale_wide, pertoken, bias_f;
  bool b_has_min = false;

  GemmProblem(int64_t m_, int64_t k_, int64_t n_, int w_min, Rng& rng) : m(m_), k(k_), n(n_) {
    lda = k::round_up(k, 16) + 16;  // a wider stride than needed, as row blocks may have
    ldc = n + 3;
    a.resize(m * k);
    b.resize(k * n);
    for (auto& v : a) v = static_cast<int8_t>(rng.range(-128, 127));
    for (auto& v : b) v = static_cast<int8_t>(rng.range(w_min, 127));
    a_packed.resize(m * lda);
    k::pack_a_u8(a.data(), m, k, k, a_packed.data(), lda);
    b_packed.assign(k::nz_packed_bytes(k, n), 0);
    colsum.resize(k::round_up(n, 32));
    k::pack_b_nz_ref(b.data(), k, n, n, 1, b_packed.data(), colsum.data(), 0, n);
    b_has_min = k::has_int8_min(b.data(), k * n);
    for (int64_t j = 0; j < n; ++j) {
      scale.push_back(rng.uniform() * 0.01f);
      scale_wide.push_back(std::pow(10.0f, rng.uniform() * 12.0f - 9.0f));
      offset.push_back(static_cast<int32_t>(rng.range(-30, 30)));
      bias_i32.push_back(static_cast<int32_t>(rng.range(-500, 500)));
      bias_f.push_back(rng.normal());
    }
    for (int64_t r = 0; r < m; ++r) pertoken.push_back(rng.uniform() + 0.5f);
  }

  k::QGemmArgs args(const GemmEpilogueCase& e, void* c) const {
    k::QGemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a_packed.data();
    g.lda = lda;
    g.b = b_packed.data();
    g.b_colsum = colsum.data();
    g.b_has_min = b_has_min;
    g.c = c;
    g.ldc = ldc;
    g.ep.out = e.out;
    if (e.scale) {
      g.ep.scale = e.wide_scales ? scale_wide.data() : scale.data();
      g.ep.scale_stride = e.scale_per_column ? 1 : 0;
    }
    if (e.offset) {
      g.ep.offset = offset.data();
      g.ep.offset_stride = e.offset_per_column ? 1 : 0;
    }
    if (e.pertoken) g.ep.pertoken = pertoken.data();
    if (e.bias_i32) g.ep.bias_i32 = bias_i32.data();
    if (e.bias_f) g.ep.bias_f = bias_f.data();
    return g;
  }

  // Runs one variant; the panels are split in two calls to exercise panel_begin.
  std::vector<uint8_t> run(k::Isa isa, const GemmEpilogueCase& e) const {
    const size_t es = out_bytes(e.out);
    std::vector<uint8_t> c(static_cast<size_t>(m * ldc) * es, 0xA5);  // gaps keep their fill
    const k::QGemmArgs g = args(e, c.data());
    const int64_t panels = k::qgemm_num_panels(n);
    const int64_t split = panels / 2;
    k::qgemm_panels(isa, g, 0, split);
    k::qgemm_panels(isa, g, split, panels);
    return c;
  }
};

void test_qgemm_reference_is_a_matmul() {
  Rng rng(7);
  for (auto [m, kk, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 5}, {9, 33, 31}, {17, 200, 100}}) {
    GemmProblem pr(m, kk, n, -128, rng);
    const std::vector<uint8_t> c = pr.run(k::Isa::kRef, kGemmEpilogues[1]);
    bool ok = true;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        int32_t want = pr.bias_i32[j];
        for (int64_t i = 0; i < kk; ++i) want += int32_t{pr.a[r * kk + i]} * pr.b[i * n + j];
        int32_t got;
        std::memcpy(&got, c.data() + (r * pr.ldc + j) * 4, 4);
        ok = ok && got == want;
      }
    }
    check(ok, shape_name("qgemm ref vs naive int32+bias", m, kk, n));
  }
}

// Empty operands arrive with null buffers (an empty std::vector's data()); the packers must not
// hand those to memset/memcpy (UB even for 0 bytes: UBSan's nonnull-attribute check, see
// tools/run_sanitizers.sh). k = 0 still defines the column sums: all zero.
void test_pack_empty_operands() {
  std::vector<int32_t> colsum(k::kNzCols, -1);
  k::pack_b_nz_ref(nullptr, 0, 5, 5, 1, nullptr, colsum.data(), 0, 5);
  bool zero = true;
  for (int32_t v : colsum) zero = zero && v == 0;
  check(zero, "pack_b_nz_ref k=0: zero column sums");
  k::nd_to_nz(nullptr, nullptr, 1, 0, 7, 1, 32);
  k::nd_to_nz(nullptr, nullptr, 0, 5, 7, 2, 16);
  check(true, "nd_to_nz on empty matrices");
}

void test_qgemm_variants(const std::vector<k::Isa>& isas) {
  // The Python tests' shapes, plus every residue of the row tiles (1..4 rows over
  // 3- and 4-row tiles) and column halves of a 32-wide panel.
  const int64_t shapes[][3] = {{1, 16, 32}, {1, 7, 5},    {8, 64, 64},   {9, 33, 31},  {17, 200, 100},
                               {2, 48, 40}, {3, 100, 65}, {4, 32, 16},   {5, 17, 47},  {6, 64, 48},
                               {7, 1, 3},   {13, 200, 72}, {1, 512, 96}, {34, 96, 130},
                               {1, 4096, 40}};  // a decode-sized k
  Rng rng(42);
  for (const auto& s : shapes) {
    for (int w_min : {-128, -127}) {  // -127: AVX2's sign-trick path
      GemmProblem pr(s[0], s[1], s[2], w_min, rng);
      for (const auto& e : kGemmEpilogues) {
        const std::vector<uint8_t> want = pr.run(k::Isa::kRef, e);
        for (k::Isa isa : isas) {
          check(pr.run(isa, e) == want, shape_name((std::string("qgemm ") + k::isa_name(isa) + " " + e.name +
                                                    (w_min == -128 ? " full-range-w" : " symmetric-w")).c_str(),
                                                   s[0], s[1], s[2]));
        }
      }
    }
  }
}

// --- W4A8 dynamic -----------------------------------------------------------------

struct W4Case {
  int64_t m, k, n, group;  // group == k: channelwise
  bool bias, scales_bf16, x_bf16;
  bool zeros = false;  // the asymmetric form (version 4)
};

std::string w4_name(const W4Case& c, const char* isa) {
  return std::string("w4a8 ") + isa + " m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
         " n=" + std::to_string(c.n) + (c.group == c.k ? " channelwise" : " group=" + std::to_string(c.group)) +
         (c.bias ? " bias" : "") + (c.scales_bf16 ? " bf16-scales" : "") + (c.x_bf16 ? " bf16-x" : "") +
         (c.zeros ? " zeros" : "");
}

struct W4Problem {
  W4Case c;
  k::W4Layout L;
  std::vector<uint64_t> packed;  // 8-byte aligned storage
  std::vector<uint8_t> w_u8;     // torch's (n, k/2): low nibble = even k, value w + 8
  std::vector<float> scales_f;   // (n, groups), the values the kernels see
  std::vector<float> zeros_f;    // (n, groups), likewise (c.zeros)
  std::vector<float> bias;
  std::vector<float> x;
  std::vector<uint16_t> xb;
  std::vector<int8_t> q;
  std::vector<float> recip;
  std::vector<int32_t> zp, rowsum;
  int64_t ldq;

  W4Problem(const W4Case& c_, Rng& rng) : c(c_) {
    const int64_t groups = c.group == c.k ? 1 : c.k / c.group;
    w_u8.resize(c.n * c.k / 2);
    for (auto& v : w_u8) v = static_cast<uint8_t>(rng.range(0, 255));
    std::vector<uint16_t> scales_bf16;
    for (int64_t i = 0; i < c.n * groups; ++i) {
      const float s = (rng.uniform() + 0.05f) * 0.02f;
      const uint16_t sb = k::f32_to_bf16_rne(s);
      scales_bf16.push_back(sb);
      scales_f.push_back(c.scales_bf16 ? k::bf16_to_f32(sb) : s);
    }
    std::vector<uint16_t> zeros_bf16;
    for (int64_t i = 0; i < c.n * groups; ++i) {
      const float z = rng.normal() * 0.05f;
      const uint16_t zb = k::f32_to_bf16_rne(z);
      zeros_bf16.push_back(zb);
      zeros_f.push_back(c.scales_bf16 ? k::bf16_to_f32(zb) : z);
    }
    for (int64_t j = 0; j < c.n; ++j) bias.push_back(rng.normal());
    L = k::w4_layout(c.k, c.n, c.group, c.bias, c.scales_bf16, c.zeros);
    packed.assign(static_cast<size_t>(L.total_bytes + 7) / 8, 0);
    uint8_t* buf = reinterpret_cast<uint8_t*>(packed.data());
    k::w4_pack_header(L, buf);
    const void* scales = c.scales_bf16 ? static_cast<const void*>(scales_bf16.data()) : scales_f.data();
    // Two column ranges (multiples of 32 but the end), as parallel packing does.
    const int64_t mid = c.n > 32 ? 32 : c.n;
    k::w4_pack_columns(L, w_u8.data(), scales, c.scales_bf16, c.bias ? bias.data() : nullptr, buf, 0, mid);
    if (mid < c.n) k::w4_pack_columns(L, w_u8.data(), scales, c.scales_bf16, c.bias ? bias.data() : nullptr, buf, mid, c.n);
    if (c.zeros) {
      const void* zs = c.scales_bf16 ? static_cast<const void*>(zeros_bf16.data()) : zeros_f.data();
      k::w4_pack_zeros(L, zs, c.scales_bf16, buf, 0, mid);
      if (mid < c.n) k::w4_pack_zeros(L, zs, c.scales_bf16, buf, mid, c.n);
    }
    k::W4Layout read;
    check(k::w4_read_header(buf, L.total_bytes, &read) == nullptr && read.has_zeros == c.zeros &&
              read.total_bytes == L.total_bytes, w4_name(c, "header"));
    if (c.zeros) {  // a version-4 buffer without its zero flag (or v3 with it) is refused
      std::vector<uint8_t> bad(buf, buf + L.total_bytes);
      bad[offsetof(k::W4Header, flags)] &= static_cast<uint8_t>(~8u);
      check(k::w4_read_header(bad.data(), L.total_bytes, &read) != nullptr, w4_name(c, "v4 without zero flag"));
    }

    // Activations: a spread of magnitudes and signs, some rows all-positive or zero.
    x.resize(c.m * c.k);
    for (int64_t r = 0; r < c.m; ++r) {
      const int kind = static_cast<int>(r % 4);
      for (int64_t i = 0; i < c.k; ++i) {
        float v = rng.normal() * (kind == 1 ? 10.0f : 1.0f);
        if (kind == 2) v = std::fabs(v) + 0.25f;
        if (kind == 3 && r == 3) v = 0.0f;  // a constant row
        if (r == 4) v = static_cast<float>(i % 256) - 127.5f;  // range 255: scale 1, every value a tie
        x[r * c.k + i] = v;
      }
    }
    for (float v : x) xb.push_back(k::f32_to_bf16_rne(v));
    ldq = L.k_pad;
    quantize(k::Isa::kRef, false, q, recip, zp, rowsum);
  }

  void quantize(k::Isa isa, bool q_unsigned, std::vector<int8_t>& q_, std::vector<float>& recip_,
                std::vector<int32_t>& zp_, std::vector<int32_t>& rowsum_) const {
    q_.assign(c.m * ldq, 0x55);  // garbage in the padding: the quantizer must clear it
    recip_.assign(c.m, 0.0f);
    zp_.assign(c.m, 0);
    rowsum_.assign(c.m * L.groups, 0);
    k::Qai8dxArgs qa;
    qa.x = c.x_bf16 ? static_cast<const void*>(xb.data()) : x.data();
    qa.x_bf16 = c.x_bf16;
    qa.k = c.k;
    qa.ldx = c.k;
    qa.q = q_.data();
    qa.ldq = ldq;
    qa.recip = recip_.data();
    qa.zp = zp_.data();
    qa.rowsum = rowsum_.data();
    qa.group = L.channelwise ? L.k : L.group;
    qa.groups = L.groups;
    qa.q_unsigned = q_unsigned;
    k::quant_rows_qai8dx(isa, qa, 0, c.m);
  }

  // The variant's quantizer, in the form its matmul wants, must give the reference's values.
  void check_quantizer(k::Isa isa, bool q_unsigned, const std::vector<int8_t>& q_, const std::vector<float>& recip_,
                       const std::vector<int32_t>& zp_, const std::vector<int32_t>& rowsum_) const {
    std::vector<int8_t> signed_q = q_;
    if (q_unsigned) {
      for (auto& v : signed_q) v = static_cast<int8_t>(static_cast<uint8_t>(v) ^ 0x80u);
    }
    const bool same = signed_q == q && zp_ == zp && rowsum_ == rowsum &&
                      std::memcmp(recip_.data(), recip.data(), recip.size() * sizeof(float)) == 0;
    check(same, w4_name(c, (std::string("qai8dx quantizer ") + k::isa_name(isa) + (q_unsigned ? " u8" : " s8")).c_str()));
  }

  std::vector<uint8_t> run(k::Isa isa) const {
    const bool q_unsigned = k::w4a8_lhs_unsigned(isa, c.m, L);
    std::vector<int8_t> q_;
    std::vector<float> recip_;
    std::vector<int32_t> zp_, rowsum_;
    quantize(isa, !q_unsigned, q_, recip_, zp_, rowsum_);  // the other form too: every variant writes both
    check_quantizer(isa, !q_unsigned, q_, recip_, zp_, rowsum_);
    quantize(isa, q_unsigned, q_, recip_, zp_, rowsum_);
    check_quantizer(isa, q_unsigned, q_, recip_, zp_, rowsum_);
    const size_t es = c.x_bf16 ? 2 : 4;
    const int64_t ldo = c.n + 1;
    std::vector<uint8_t> out(static_cast<size_t>(c.m * ldo) * es, 0xA5);
    k::W4A8Args a;
    a.m = c.m;
    a.packed = reinterpret_cast<const uint8_t*>(packed.data());
    a.L = L;
    a.q = q_.data();
    a.ldq = ldq;
    a.recip = recip_.data();
    a.zp = zp_.data();
    a.rowsum = rowsum_.data();
    a.q_unsigned = q_unsigned;
    a.out = out.data();
    a.out_bf16 = c.x_bf16;
    a.ldo = ldo;
    const int64_t panels = L.n_pad / k::kW4PanelCols;
    k::w4a8_panels(isa, a, 0, panels / 2);
    k::w4a8_panels(isa, a, panels / 2, panels);
    return out;
  }

  // The formula of qd_w4a8.h from the unpacked torch-format inputs (fp32 output).
  bool reference_matches_formula(const std::vector<uint8_t>& got) const {
    const int64_t ldo = c.n + 1, groups = L.groups, gs = L.channelwise ? c.k : c.group;
    for (int64_t r = 0; r < c.m; ++r) {
      for (int64_t j = 0; j < c.n; ++j) {
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          int32_t iacc = 0;
          for (int64_t i = g * gs; i < (g + 1) * gs; ++i) {
            const uint8_t byte = w_u8[j * (c.k / 2) + i / 2];
            const int32_t w = ((i % 2 == 0) ? (byte & 0xF) : (byte >> 4)) - 8;
            iacc += (q[r * ldq + i] - zp[r]) * w;
          }
          acc = acc + static_cast<float>(iacc) * scales_f[j * groups + g];
          if (c.zeros) {
            int32_t asum = 0;
            for (int64_t i = g * gs; i < (g + 1) * gs; ++i) asum += q[r * ldq + i] - zp[r];
            acc = acc + static_cast<float>(asum) * zeros_f[j * groups + g];
          }
        }
        float y = acc * recip[r];
        if (c.bias) y = y + bias[j];
        float g;
        std::memcpy(&g, got.data() + (r * ldo + j) * 4, 4);
        if (std::memcmp(&g, &y, 4) != 0) return false;
      }
    }
    return true;
  }
};

void test_w4a8_variants(const std::vector<k::Isa>& isas) {
  const int64_t shapes[][3] = {{1, 128, 64}, {1, 256, 40}, {2, 128, 33}, {3, 256, 96}, {4, 128, 16},
                               {5, 384, 100}, {8, 256, 64}, {17, 128, 72}, {33, 256, 130}, {3, 200, 50},
                               {1, 4096, 64}, {6, 2048, 48}, {5, 4160, 40}, {5, 202, 40}};
  Rng rng(4);
  int64_t group_choice = 0;
  for (const auto& s : shapes) {
    for (int64_t group : {int64_t{32}, int64_t{64}, int64_t{128}, s[1]}) {
      if (group != s[1] && (group >= s[1] || s[1] % group != 0)) continue;  // groups must tile k
      for (bool bias : {false, true}) {
        const bool channelwise = group == s[1];
        // torch's formats: channelwise fp32 scales (fp32 or bf16 input), groupwise
        // bf16 scales; plus the other scale type for each, which the packer allows.
        const bool scales_bf16 = channelwise ? (group_choice % 3 == 2) : (group_choice % 3 != 2);
        const bool x_bf16 = channelwise && bias && (group_choice % 2 == 0);
        ++group_choice;
        for (bool zeros : {false, true}) {
          const W4Case c{s[0], s[1], s[2], group, bias, scales_bf16, x_bf16, zeros};
          W4Problem pr(c, rng);
          const std::vector<uint8_t> want = pr.run(k::Isa::kRef);
          if (!c.x_bf16) check(pr.reference_matches_formula(want), w4_name(c, "ref vs formula"));
          for (k::Isa isa : isas) check(pr.run(isa) == want, w4_name(c, k::isa_name(isa)));
        }
      }
    }
  }
}

// --- int4 repack (A4W4 / A8W4 weights) ----------------------------------------------

// Every variant's repack of torch_npu's int32 int4 words gives the reference's bytes,
// n-packed (whole panel pairs, single panels, k not a multiple of 16) and k-packed.
void test_nz4_pack_variants(const std::vector<k::Isa>& isas) {
  Rng rng(11);
  const int64_t shapes[][2] = {{64, 128}, {32, 64}, {48, 96}, {256, 160}, {8, 32}, {24, 200}, {128, 8}};
  for (const auto& s : shapes) {
    const int64_t kk = s[0], n = s[1];
    for (bool k_packed : {false, true}) {
      if (k_packed && kk % 8 != 0) continue;
      if (!k_packed && n % 8 != 0) continue;
      const int64_t row_words = k_packed ? kk / 8 : n / 8, rows = k_packed ? n : kk;
      std::vector<uint32_t> words(static_cast<size_t>(rows * row_words));
      for (auto& w : words) w = static_cast<uint32_t>(rng.range(0, 65535)) << 16 | static_cast<uint32_t>(rng.range(0, 65535));
      const size_t bytes = static_cast<size_t>(k::nz4_packed_bytes(kk, n));
      std::vector<uint8_t> want(bytes, 0), got;
      k::pack_b_nz4_from_int4_ref(words.data(), kk, n, k_packed, row_words, want.data(), 0, n);
      for (k::Isa isa : isas) {
        got.assign(bytes, 0x5A);
        const int64_t mid = n > 96 ? 96 : n;  // two ranges, as threads split the panels
        k::pack_b_nz4_from_int4(isa, words.data(), kk, n, k_packed, row_words, got.data(), 0, mid);
        if (mid < n) k::pack_b_nz4_from_int4(isa, words.data(), kk, n, k_packed, row_words, got.data(), mid, n);
        check(got == want, std::string("nz4 pack ") + k::isa_name(isa) + " k=" + std::to_string(kk) + " n=" +
                               std::to_string(n) + (k_packed ? " k-packed" : " n-packed"));
      }
    }
  }
}

// The A8W4 float16 group accumulation: every variant, the reference's bits (ties, the
// float16 overflow to inf, column tails).
void test_a8w4_accumulate_variants(const std::vector<k::Isa>& isas) {
  Rng rng(12);
  for (int64_t n : {int64_t{16}, int64_t{40}, int64_t{7}}) {
    const int64_t rows = 6;
    std::vector<int32_t> sums(static_cast<size_t>(rows * n));
    std::vector<float> scale(static_cast<size_t>(n));
    std::vector<uint16_t> start(static_cast<size_t>(rows * n));
    for (auto& v : sums) v = static_cast<int32_t>(rng.range(-16384, 16384));
    for (auto& v : scale) v = (rng.uniform() + 0.01f) * (rng.range(0, 9) == 0 ? 8.0f : 0.05f);  // some products overflow f16
    for (auto& v : start) v = k::f32_to_f16_rne(rng.normal() * 100.0f);
    std::vector<uint16_t> want = start;
    k::a8w4_accumulate_group_ref(sums.data(), scale.data(), rows, n, want.data());
    for (k::Isa isa : isas) {
      std::vector<uint16_t> got = start;
      k::a8w4_accumulate_group(isa, sums.data(), scale.data(), rows, n, got.data());
      check(got == want, std::string("a8w4 f16 accumulate ") + k::isa_name(isa) + " n=" + std::to_string(n));
    }
  }
}


// Decode attention: the reference against a double-precision softmax(q k^T s + mask) v, and
// every variant against the reference (float32 sums in another order: close, not equal); GQA,
// odd head dims, bool / additive masks with masked tails, causal, strided caches, bf16/f16/f32.
void test_decode_attention_variants(const std::vector<k::Isa>& isas) {
  Rng rng(21);
  struct Case { int64_t b, hq, hkv, l, s, d, dv; k::AttnMask mask; bool causal; k::FloatType type; };
  const std::vector<Case> cases = {
      {1, 8, 2, 1, 37, 64, 64, k::AttnMask::kNone, false, k::FloatType::kF32},
      {2, 6, 2, 1, 50, 24, 40, k::AttnMask::kBool, false, k::FloatType::kBF16},
      {1, 4, 4, 3, 19, 80, 80, k::AttnMask::kF32, false, k::FloatType::kF16},
      {1, 9, 3, 2, 33, 64, 64, k::AttnMask::kNone, true, k::FloatType::kBF16},
      {1, 2, 1, 1, 300, 160, 16, k::AttnMask::kBool, false, k::FloatType::kF32},
  };
  for (const Case& c : cases) {
    const int64_t max_s = c.s + 7;  // cache capacity beyond kv_len: strided rows
    const size_t es = c.type == k::FloatType::kF32 ? 4 : 2;
    auto fill = [&](int64_t n) {
      std::vector<float> f(static_cast<size_t>(n));
      for (auto& v : f) v = rng.normal();
      std::vector<uint8_t> raw(static_cast<size_t>(n) * es);
      for (int64_t i = 0; i < n; ++i) {
        if (c.type == k::FloatType::kF32) {
          std::memcpy(raw.data() + 4 * i, &f[static_cast<size_t>(i)], 4);
        } else {
          const uint16_t h = c.type == k::FloatType::kBF16 ? k::f32_to_bf16_rne(f[static_cast<size_t>(i)])
                                                           : k::f32_to_f16_rne(f[static_cast<size_t>(i)]);
          std::memcpy(raw.data() + 2 * i, &h, 2);
        }
      }
      return raw;
    };
    auto value = [&](const std::vector<uint8_t>& raw, int64_t i) -> double {
      if (c.type == k::FloatType::kF32) { float f; std::memcpy(&f, raw.data() + 4 * i, 4); return f; }
      uint16_t h; std::memcpy(&h, raw.data() + 2 * i, 2);
      return c.type == k::FloatType::kBF16 ? k::bf16_to_f32(h) : k::f16_to_f32(h);
    };
    const auto q = fill(c.b * c.hq * c.l * c.d);
    const auto kk = fill(c.b * c.hkv * max_s * c.d);
    const auto v = fill(c.b * c.hkv * max_s * c.dv);
    std::vector<uint8_t> mb(static_cast<size_t>(c.l * c.s));
    std::vector<float> mf(static_cast<size_t>(c.l * c.s));
    for (int64_t i = 0; i < c.l * c.s; ++i) {
      const bool tail = i % c.s >= c.s - 9;  // a static cache's unused tail
      mb[static_cast<size_t>(i)] = !tail && rng.range(0, 5) != 0;
      mf[static_cast<size_t>(i)] = tail || rng.range(0, 5) == 0 ? -INFINITY : rng.normal();
    }
    k::DecodeAttnArgs a;
    a.type = c.type;
    a.batch = c.b; a.q_heads = c.hq; a.kv_heads = c.hkv; a.q_len = c.l; a.kv_len = c.s;
    a.head_dim = c.d; a.v_dim = c.dv;
    a.q = q.data(); a.q_sb = c.hq * c.l * c.d; a.q_sh = c.l * c.d; a.q_sl = c.d;
    a.k = kk.data(); a.k_sb = c.hkv * max_s * c.d; a.k_sh = max_s * c.d; a.k_ss = c.d;
    a.v = v.data(); a.v_sb = c.hkv * max_s * c.dv; a.v_sh = max_s * c.dv; a.v_ss = c.dv;
    a.o_sb = c.hq * c.l * c.dv; a.o_sh = c.l * c.dv; a.o_sl = c.dv;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    a.causal = c.causal;
    a.mask_kind = c.mask;
    a.mask = c.mask == k::AttnMask::kBool ? static_cast<const void*>(mb.data()) : static_cast<const void*>(mf.data());
    a.m_sl = c.s;  // broadcast over batch and heads
    const int64_t out_n = c.b * c.hq * c.l * c.dv;
    std::vector<float> scratch(static_cast<size_t>(k::decode_attention_scratch_floats(a)));
    auto run = [&](k::Isa isa, bool ref) {
      std::vector<uint8_t> out(static_cast<size_t>(out_n) * es, 0xCD);
      a.out = out.data();
      const int64_t tasks = c.b * c.hkv;
      // two calls over split task ranges: a task must not depend on another
      if (ref) { k::decode_attention_ref(a, 0, 1, scratch.data()); k::decode_attention_ref(a, 1, tasks, scratch.data()); }
      else { k::decode_attention(isa, a, 0, 1, scratch.data()); k::decode_attention(isa, a, 1, tasks, scratch.data()); }
      std::vector<double> o(static_cast<size_t>(out_n));
      for (int64_t i = 0; i < out_n; ++i) o[static_cast<size_t>(i)] = value(out, i);
      return o;
    };
    const std::string name = "decode attention b=" + std::to_string(c.b) + " hq=" + std::to_string(c.hq) + " hkv=" +
                             std::to_string(c.hkv) + " l=" + std::to_string(c.l) + " s=" + std::to_string(c.s) +
                             " d=" + std::to_string(c.d);
    // naive double reference
    std::vector<double> want(static_cast<size_t>(out_n), 0.0);
    const int64_t grp = c.hq / c.hkv;
    for (int64_t b = 0; b < c.b; ++b)
      for (int64_t h = 0; h < c.hq; ++h)
        for (int64_t l = 0; l < c.l; ++l) {
          const int64_t g = h / grp;
          std::vector<double> p(static_cast<size_t>(c.s), 0.0);
          double mx = -INFINITY;
          for (int64_t j = 0; j < c.s; ++j) {
            double add = 0.0;
            bool ok = !(c.causal && j > l);
            if (c.mask == k::AttnMask::kBool) ok = ok && mb[static_cast<size_t>(l * c.s + j)];
            if (c.mask == k::AttnMask::kF32) { add = mf[static_cast<size_t>(l * c.s + j)]; ok = ok && add != -INFINITY; }
            if (!ok) { p[static_cast<size_t>(j)] = -INFINITY; continue; }
            double dot = 0.0;
            for (int64_t d = 0; d < c.d; ++d)
              dot += value(q, ((b * c.hq + h) * c.l + l) * c.d + d) * value(kk, ((b * c.hkv + g) * max_s + j) * c.d + d);
            p[static_cast<size_t>(j)] = dot * a.scale + add;
            mx = std::max(mx, p[static_cast<size_t>(j)]);
          }
          double sum = 0.0;
          for (auto& x : p) { x = x == -INFINITY ? 0.0 : std::exp(x - mx); sum += x; }
          for (int64_t e = 0; e < c.dv; ++e) {
            double acc = 0.0;
            for (int64_t j = 0; j < c.s; ++j) acc += p[static_cast<size_t>(j)] * value(v, ((b * c.hkv + g) * max_s + j) * c.dv + e);
            want[static_cast<size_t>(((b * c.hq + h) * c.l + l) * c.dv + e)] = sum > 0 ? acc / sum : 0.0;
          }
        }
    const double tol = c.type == k::FloatType::kF32 ? 2e-5 : c.type == k::FloatType::kBF16 ? 1.6e-2 : 2e-3;
    auto close = [&](const std::vector<double>& got, const std::vector<double>& ref, double t) {
      for (size_t i = 0; i < got.size(); ++i) {
        if (!(std::fabs(got[i] - ref[i]) <= t * (1.0 + std::fabs(ref[i])))) {
          std::fprintf(stderr, "  at %zu: %g vs %g\n", i, got[i], ref[i]);
          return false;
        }
      }
      return true;
    };
    const auto ref = run(k::Isa::kRef, true);
    check(close(ref, want, tol), name + " ref vs double");
    for (k::Isa isa : isas) check(close(run(isa, false), ref, tol), name + " " + k::isa_name(isa) + " vs ref");
  }
}

// --- dispatch -------------------------------------------------------------------------

void test_isa_names_and_selection() {
  for (int i = 0; i < k::kNumIsas; ++i) {
    const k::Isa isa = static_cast<k::Isa>(i);
    k::Isa parsed;
    check(k::parse_isa(k::isa_name(isa), &parsed) && parsed == isa, std::string("isa name round trip ") + k::isa_name(isa));
  }
  k::Isa parsed;
  check(!k::parse_isa("sse2", &parsed), "unknown isa names are rejected");
  check(k::isa_supported(k::Isa::kRef), "ref is always supported");
  const k::Isa before = k::active_isa();
  for (int i = 0; i < k::kNumIsas; ++i) {
    const k::Isa isa = static_cast<k::Isa>(i);
    const bool ok = k::set_active_isa(isa);
    check(ok == k::isa_supported(isa), std::string("set_active_isa follows isa_supported for ") + k::isa_name(isa));
    if (ok) check(k::active_isa() == isa, std::string("set_active_isa selects ") + k::isa_name(isa));
    k::set_active_isa(before);
  }
  check(k::active_isa() == before, "the active variant is restored");
}

}  // namespace

int main(int argc, char** argv) {
  const k::Isa active = k::active_isa();
  std::string supported;
  for (int i = 0; i < k::kNumIsas; ++i) {
    if (k::isa_supported(static_cast<k::Isa>(i))) supported += std::string(supported.empty() ? "" : ",") + k::isa_name(static_cast<k::Isa>(i));
  }
  std::printf("qdev kernel tests: active %s, supported %s\n", k::isa_name(active), supported.c_str());
  if (argc == 3 && std::strcmp(argv[1], "--expect-isa") == 0) {
    if (std::strcmp(k::isa_name(active), argv[2]) != 0) {
      std::fprintf(stderr, "FAIL: the active variant is %s, expected %s\n", k::isa_name(active), argv[2]);
      return 1;
    }
    std::printf("ok: the active variant is %s\n", argv[2]);
    return 0;
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--expect-isa NAME]\n", argv[0]);
    return 2;
  }
  const std::vector<k::Isa> isas = simd_variants();
  test_isa_names_and_selection();
  test_qgemm_reference_is_a_matmul();
  test_pack_empty_operands();
  test_qgemm_variants(isas);
  test_w4a8_variants(isas);
  test_nz4_pack_variants(isas);
  test_a8w4_accumulate_variants(isas);
  test_decode_attention_variants(isas);
  std::printf("%d checks, %d failures (variants against ref:", g_checks, g_failures);
  for (k::Isa isa : isas) std::printf(" %s", k::isa_name(isa));
  std::printf("%s)\n", isas.empty() ? " none on this CPU" : "");
  return g_failures == 0 ? 0 : 1;
}
