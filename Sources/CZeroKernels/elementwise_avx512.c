// The elementwise kernels with AVX-512 enabled per function, so the rest of the package keeps
// its haswell baseline; dispatch.c calls them only on CPUs that report avx512f/bw/dq/vl.
// (On other architectures this is a second copy of the portable build, never selected.)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ZT_SUFFIX avx512
#if defined(__x86_64__)
#define ZT_AVX512 1
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))), apply_to = function)
#include "elementwise.h"
#pragma clang attribute pop
#else
#include "elementwise.h"
#endif
