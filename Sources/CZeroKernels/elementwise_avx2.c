// The elementwise kernels for the package's baseline (haswell: AVX2 + FMA).
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ZT_SUFFIX avx2
#include "elementwise.h"
