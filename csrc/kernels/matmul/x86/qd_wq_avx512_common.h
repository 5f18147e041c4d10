// Vector helpers of the AVX-512 weight-only kernels (qd_wq_gemv_avx512.cpp and its AVX512_BF16
// sibling). Include only from files compiled for AVX-512; everything is file-local (anonymous
// namespace), so each ISA's object keeps its own copy.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace qdev::kernels {
namespace {

// Round to bf16 (nearest even) in integer arithmetic, kept in fp32 form.
inline __m512 round_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

inline __m512 round_to(__m512 f, bool bf16) {
  return bf16 ? round_bf16(f) : _mm512_cvtph_ps(_mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// The first `left` of 16 lanes (none when left <= 0).
inline __mmask16 lanes(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF)
                    : left <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << left) - 1);
}

}  // namespace
}  // namespace qdev::kernels
