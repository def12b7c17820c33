#ifndef ZT_KERNELS_H
#define ZT_KERNELS_H
// Small C helpers for the few things Swift's code generator does badly.
// Built with -ffp-contract=off so that results match Swift's unfused arithmetic bit for bit.

typedef float zt_float8 __attribute__((ext_vector_type(8)));

/// Lane-wise IEEE square root (correctly rounded, like sqrtf), vectorized.
/// Swift's Float.squareRoot() in a loop stays scalar; this compiles to vsqrtps.
static inline zt_float8 zt_sqrt8(zt_float8 x) { return __builtin_elementwise_sqrt(x); }

/// Version tag so the target has a compiled translation unit.
int zt_kernels_version(void);

#endif
