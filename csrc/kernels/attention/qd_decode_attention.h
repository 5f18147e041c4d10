// Attention of a few queries over a KV cache (decode: one query per head, or Hugging Face's
// GQA packing of a head group's queries), softmax(q k^T * scale + mask) v computed in float32
// from float32 / float16 / bfloat16 tensors given by strides (the cache is read in place, no
// copy or widening of K and V). One task is one (batch, kv head): its query heads share each
// K and V row loaded. Masked keys (bool false, -inf, causal) are skipped without reading K/V,
// which makes a static cache's unused tail nearly free. A row whose keys are all masked gets
// zeros. Scores of a task are kept whole (rows x kv_len floats), so the softmax is exact.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"
#include "../quant/qd_quant_rows.h"  // FloatType

namespace qdev::kernels {

enum class AttnMask : int { kNone, kBool, kF32 };  // kBool: uint8 per key, nonzero = attend; kF32: additive

struct DecodeAttnArgs {
  FloatType type = FloatType::kF32;  // q, k, v and out
  int64_t batch = 0, q_heads = 0, kv_heads = 0, q_len = 0, kv_len = 0, head_dim = 0, v_dim = 0;
  const void* q = nullptr;  // [b][h][l][d], last dim contiguous; strides in elements
  int64_t q_sb = 0, q_sh = 0, q_sl = 0;
  const void* k = nullptr;  // [b][hkv][s][d]
  int64_t k_sb = 0, k_sh = 0, k_ss = 0;
  const void* v = nullptr;  // [b][hkv][s][dv]
  int64_t v_sb = 0, v_sh = 0, v_ss = 0;
  void* out = nullptr;  // [b][h][l][dv]
  int64_t o_sb = 0, o_sh = 0, o_sl = 0;
  float* lse = nullptr;  // [b][h][l] log-sum-exp of the scaled, masked scores (-inf: all masked), or null
  int64_t l_sb = 0, l_sh = 0, l_sl = 0;
  float scale = 1.0f;
  bool causal = false;  // query i sees keys j <= i (upper-left aligned, as SDPA's is_causal)
  AttnMask mask_kind = AttnMask::kNone;
  const void* mask = nullptr;  // [b][h][l][s] with 0 strides where broadcast; key stride 1
  int64_t m_sb = 0, m_sh = 0, m_sl = 0;
};

// Float scratch one task needs (scores, float32 queries, accumulators).
int64_t decode_attention_scratch_floats(const DecodeAttnArgs& a);
// Tasks [task_begin, task_end) of batch * kv_heads; scratch holds decode_attention_scratch_floats.
void decode_attention(Isa isa, const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch);
void decode_attention_ref(const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch);
void decode_attention_avx512(const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch);

}  // namespace qdev::kernels
