#include <algorithm>
#include <cmath>

#include "../common/qd_common.h"
#include "qd_decode_attention.h"

namespace qdev::kernels {

namespace {

float load(FloatType t, const void* base, int64_t at) {
  switch (t) {
    case FloatType::kF16: return f16_to_f32(static_cast<const uint16_t*>(base)[at]);
    case FloatType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[at]);
    default: return static_cast<const float*>(base)[at];
  }
}

void store(FloatType t, void* base, int64_t at, float v) {
  switch (t) {
    case FloatType::kF16: static_cast<uint16_t*>(base)[at] = f32_to_f16_rne(v); break;
    case FloatType::kBF16: static_cast<uint16_t*>(base)[at] = f32_to_bf16_rne(v); break;
    default: static_cast<float*>(base)[at] = v;
  }
}

}  // namespace

int64_t decode_attention_scratch_floats(const DecodeAttnArgs& a) {
  const int64_t rows = a.q_heads / std::max<int64_t>(1, a.kv_heads) * a.q_len;
  return rows * (round_up(a.head_dim, 16) + a.kv_len + round_up(a.v_dim, 16));
}

void decode_attention_ref(const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch) {
  const int64_t grp = a.q_heads / a.kv_heads, rows = grp * a.q_len, D = a.head_dim, Dv = a.v_dim, S = a.kv_len;
  float* scores = scratch;
  for (int64_t t = task_begin; t < task_end; ++t) {
    const int64_t b = t / a.kv_heads, g = t % a.kv_heads;
    const int64_t kb = b * a.k_sb + g * a.k_sh, vb = b * a.v_sb + g * a.v_sh;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = g * grp + r / a.q_len, l = r % a.q_len;
      const int64_t qb = b * a.q_sb + h * a.q_sh + l * a.q_sl;
      const int64_t mb = b * a.m_sb + h * a.m_sh + l * a.m_sl;
      float* s = scores + r * S;
      float mx = -INFINITY;
      for (int64_t j = 0; j < S; ++j) {
        float add = 0.0f;
        bool ok = !(a.causal && j > l);
        if (ok && a.mask_kind == AttnMask::kBool) ok = static_cast<const uint8_t*>(a.mask)[mb + j] != 0;
        if (ok && a.mask_kind == AttnMask::kF32) {
          add = static_cast<const float*>(a.mask)[mb + j];
          ok = add != -INFINITY;
        }
        if (!ok) {
          s[j] = -INFINITY;
          continue;
        }
        float dot = 0.0f;
        for (int64_t d = 0; d < D; ++d) dot += load(a.type, a.q, qb + d) * a.scale * load(a.type, a.k, kb + j * a.k_ss + d);
        s[j] = dot + add;
        mx = std::max(mx, s[j]);
      }
      const int64_t ob = b * a.o_sb + h * a.o_sh + l * a.o_sl;
      float sum = 0.0f;
      for (int64_t j = 0; j < S; ++j) {
        s[j] = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - mx);
        sum += s[j];
      }
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      if (a.lse) a.lse[b * a.l_sb + h * a.l_sh + l * a.l_sl] = sum > 0.0f ? mx + std::log(sum) : -INFINITY;
      for (int64_t e = 0; e < Dv; ++e) {
        float acc = 0.0f;
        for (int64_t j = 0; j < S; ++j) {
          if (s[j] != 0.0f) acc += s[j] * load(a.type, a.v, vb + j * a.v_ss + e);
        }
        store(a.type, a.out, ob + e, acc * inv);
      }
    }
  }
}

void decode_attention(Isa isa, const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return decode_attention_avx512(a, task_begin, task_end, scratch);
#endif
  (void)isa;
  decode_attention_ref(a, task_begin, task_end, scratch);
}

}  // namespace qdev::kernels
