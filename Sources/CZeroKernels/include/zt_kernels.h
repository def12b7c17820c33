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

#endif
