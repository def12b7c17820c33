// Exhaustive check that the vector expf of the elementwise kernels (Sources/CZeroKernels/
// elementwise.h) gives glibc's expf bits for all 2^32 float inputs, NaN payloads included,
// under one instruction set (0 = AVX2, 1 = AVX-512). Not part of `swift test` (about 30 s of
// CPU per set); the unit tests check a 65,521-stride sample. Build and run from the repo root:
//
//   clang -O2 -march=haswell -ffp-contract=off -ISources/CZeroKernels/include \
//     Tests/Exhaustive/expf_exhaustive.c Sources/CZeroKernels/elementwise_avx2.c \
//     Sources/CZeroKernels/elementwise_avx512.c Sources/CZeroKernels/dispatch.c -lm -o /tmp/expf_exhaustive
//   /tmp/expf_exhaustive 0 && /tmp/expf_exhaustive 1
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zt_kernels.h"

int main(int argc, char **argv) {
    int isa = argc > 1 ? atoi(argv[1]) : zt_kernels_best_isa();
    if (zt_kernels_set_isa(isa) != 0) {
        fprintf(stderr, "expf_exhaustive: this CPU cannot run instruction set %d\n", isa);
        return 2;
    }
    enum { B = 1 << 16 };
    static float in[B], out[B];
    uint64_t bad = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += B) {
        for (uint32_t i = 0; i < B; i++) { uint32_t u = (uint32_t)(base + i); memcpy(&in[i], &u, 4); }
        zt_expf_array(out, in, B);
        for (uint32_t i = 0; i < B; i++) {
            float ref = expf(in[i]);
            uint32_t a, b;
            memcpy(&a, &out[i], 4);
            memcpy(&b, &ref, 4);
            if (a != b && bad++ < 10) printf("x %08x: got %08x, glibc %08x\n", (uint32_t)(base + i), a, b);
        }
    }
    printf("isa %d: %llu of 2^32 inputs differ from glibc expf\n", isa, (unsigned long long)bad);
    return bad != 0;
}
