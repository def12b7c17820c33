#ifndef ZT_KERNELS_H
#define ZT_KERNELS_H
// Small C helpers for the few things Swift's code generator does badly.
// Built with -ffp-contract=off so that results match Swift's unfused arithmetic bit for bit.

#include <stdint.h>

typedef float zt_float8 __attribute__((ext_vector_type(8)));
typedef uint32_t zt_uint8x32 __attribute__((ext_vector_type(8)));
typedef uint16_t zt_ushort8 __attribute__((ext_vector_type(8)));

/// Lane-wise IEEE square root (correctly rounded, like sqrtf), vectorized.
/// Swift's Float.squareRoot() in a loop stays scalar; this compiles to vsqrtps.
static inline zt_float8 zt_sqrt8(zt_float8 x) { return __builtin_elementwise_sqrt(x); }

/// Lane-wise fused multiply-add a * b + c with one rounding (vfmadd on FMA hardware).
/// Explicit because the kernels must fuse exactly where PyTorch's vectorized CPU kernels fuse.
static inline zt_float8 zt_fma8(zt_float8 a, zt_float8 b, zt_float8 c) { return __builtin_elementwise_fma(a, b, c); }

/// Round-to-nearest-even float32 -> bf16 bit patterns for 8 lanes (docs/precision.md, "The rounding rule"):
/// NaN becomes a quiet NaN with its sign, everything else (u + 0x7FFF + lsb) >> 16.
static inline zt_ushort8 zt_bf16_round8(zt_float8 x) {
    zt_uint8x32 u = __builtin_bit_cast(zt_uint8x32, x);
    zt_uint8x32 rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    zt_uint8x32 quiet = (u >> 16) | 0x40u;
    zt_uint8x32 isnan = __builtin_bit_cast(zt_uint8x32, x != x);
    zt_uint8x32 bits = (quiet & isnan) | (rounded & ~isnan);
    return __builtin_convertvector(bits, zt_ushort8);
}

/// Hint that the cache line at `p` will be read soon (streams that outrun the hardware prefetcher).
static inline void zt_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Version tag so the target has a compiled translation unit.
int zt_kernels_version(void);

// MARK: Elementwise kernels (elementwise.h), AVX2 or AVX-512 chosen at run time (dispatch.c)

/// Instruction sets of the elementwise kernels.
enum { ZT_ISA_AVX2 = 0, ZT_ISA_AVX512 = 1 };
/// The set in use: the best the CPU has, or AVX2 when ZERO_TRAIN_KERNELS=avx2.
int zt_kernels_isa(void);
/// The best set this CPU runs.
int zt_kernels_best_isa(void);
/// Selects a set; returns -1 (and changes nothing) when the CPU lacks it.
int zt_kernels_set_isa(int isa);

/// out[i] = expf(inp[i]) with glibc's expf bits.
void zt_expf_array(float *out, const float *inp, long n);
void zt_residual_forward(float *out, const float *a, const float *b, long n);
void zt_residual_backward(float *da, float *db, const float *dout, long n);
void zt_bias_backward(float *dbias, const float *dout, long N, long OC);
void zt_gelu_forward(float *out, const float *inp, long n);
void zt_gelu_backward(float *dinp, const float *inp, const float *dout, long n);
void zt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, long N, long C, float eps);
void zt_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, const float *mean, const float *rstd, long N, long C);
/// Causal softmax of rows [r0, r1) of a T-wide matrix in place (zeros above the diagonal).
void zt_softmax_causal_rows(float *a, long r0, long r1, long T);
/// Its backward for rows [r0, r1): d = a (d - rowdot(a, d)) on j <= t, zeros for t < j < r1.
void zt_softmax_causal_backward_rows(const float *a, float *d, long r0, long r1, long T);
float zt_cross_entropy_forward(float *losses, const float *logits, const int32_t *targets, long N, long V);
void zt_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, long N, long V,
                               float dloss);
/* dst may be (uint16_t *)src (in-place compaction): each chunk is loaded before its store,
 * and a store at bytes [2i, 2i + 2w) never reaches bytes a later chunk reads ([4j, ...), j >= i + w). */
void zt_bf16_round(const float *src, uint16_t *dst, long n);
void zt_bf16_widen(const uint16_t *src, float *dst, long n);
void zt_bf16_quantize(float *buf, long n);

#endif
