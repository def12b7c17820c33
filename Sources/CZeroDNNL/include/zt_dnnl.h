#ifndef ZT_DNNL_H
#define ZT_DNNL_H
// bf16 GEMM through oneDNN's matmul primitive (bf16 inputs, fp32 accumulation and output).
// Called only from ZeroTensor/BF16Gemm.swift. Row-major throughout.

#include <stdint.h>

/// C[M, N] = alpha * op(A) op(B) + beta * C, A and B dense bf16 bit patterns:
/// A is M x K (K x M when transA), B is K x N (N x K when transB); C has leading dimension ldc.
/// The primitive for (transA, transB, M, N, K, ldc, alpha, beta, threads) is created once per
/// thread and cached. Returns 0, or the oneDNN status of the failure.
int zt_dnnl_gemm_bf16(int transA, int transB, long M, long N, long K, float alpha,
                      const uint16_t *A, const uint16_t *B, float beta, float *C, long ldc);

/// Batched strided matmul, for every (i, j) < (batch0, batch1):
/// C[i, j] (M x N) = alpha * A[i, j] (M x K) * B[i, j] (K x N) + beta * C[i, j].
/// Element (i, j, r, c) of each operand lives at base + i*s[0] + j*s[1] + r*s[2] + c*s[3]
/// (bf16 bit patterns for A and B, fp32 for C): strides express transposes and interleaved
/// heads. Cached like zt_dnnl_gemm_bf16. Returns 0 or the oneDNN status.
int zt_dnnl_batched_bf16(long batch0, long batch1, long M, long N, long K,
                         const long aStrides[4], const long bStrides[4], const long cStrides[4],
                         float alpha, float beta, const uint16_t *A, const uint16_t *B, float *C);

/// Rounds a rows x cols fp32 matrix (leading dimension ld) to dense bf16, round to nearest
/// even exactly as torch.bfloat16 (NaN stays quiet with its sign, subnormals kept).
void zt_dnnl_round_bf16(const float *src, long rows, long cols, long ld, uint16_t *dst);

/// Same rounding, widened back to fp32 into a dense rows x cols buffer (the sgemm fallback).
void zt_dnnl_quantize_f32(const float *src, long rows, long cols, long ld, float *dst);

/// A per-thread scratch buffer of at least `bytes` (slot 0..7), grown as needed, never freed
/// while the thread lives. NULL if the allocation fails.
void *zt_dnnl_scratch(int slot, long bytes);

/// OpenMP threads oneDNN may use on every calling thread (applied lazily per thread).
void zt_dnnl_set_threads(int count);

/// Drops the calling thread's cached primitives (the next calls create fresh ones).
void zt_dnnl_clear_cache(void);

/// Primitives currently cached on the calling thread.
int zt_dnnl_cache_count(void);

/// oneDNN's effective CPU ISA name ("avx512_core_bf16", ...), and its version string.
const char *zt_dnnl_isa(void);
const char *zt_dnnl_version(void);

/// Implementation name of the last primitive this thread created (e.g. "brg:avx512_core_bf16").
const char *zt_dnnl_last_impl(void);

#endif
