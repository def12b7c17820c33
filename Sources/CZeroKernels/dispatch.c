// Runtime choice between the AVX2 and AVX-512 builds of the elementwise kernels.
// ZERO_TRAIN_KERNELS=avx2 forces the AVX2 build (for comparisons); the default is the best the CPU runs.
#include <stdlib.h>
#include <string.h>
#include "zt_kernels.h"

void zt_expf_array_avx2(float *out, const float *inp, long n);
void zt_expf_array_avx512(float *out, const float *inp, long n);
void zt_residual_forward_avx2(float *out, const float *a, const float *b, long n);
void zt_residual_forward_avx512(float *out, const float *a, const float *b, long n);
void zt_residual_backward_avx2(float *da, float *db, const float *dout, long n);
void zt_residual_backward_avx512(float *da, float *db, const float *dout, long n);
void zt_bias_backward_avx2(float *dbias, const float *dout, long N, long OC);
void zt_bias_backward_avx512(float *dbias, const float *dout, long N, long OC);
void zt_gelu_forward_avx2(float *out, const float *inp, long n);
void zt_gelu_forward_avx512(float *out, const float *inp, long n);
void zt_gelu_backward_avx2(float *dinp, const float *inp, const float *dout, long n);
void zt_gelu_backward_avx512(float *dinp, const float *inp, const float *dout, long n);
void zt_layernorm_forward_avx2(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, long N, long C, float eps);
void zt_layernorm_forward_avx512(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, long N, long C, float eps);
void zt_layernorm_backward_avx2(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, long N, long C);
void zt_layernorm_backward_avx512(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, long N, long C);
void zt_softmax_causal_rows_avx2(float *a, long r0, long r1, long T);
void zt_softmax_causal_rows_avx512(float *a, long r0, long r1, long T);
void zt_softmax_causal_backward_rows_avx2(const float *a, float *d, long r0, long r1, long T);
void zt_softmax_causal_backward_rows_avx512(const float *a, float *d, long r0, long r1, long T);
float zt_cross_entropy_forward_avx2(float *losses, const float *logits, const int32_t *targets, long N, long V);
float zt_cross_entropy_forward_avx512(float *losses, const float *logits, const int32_t *targets, long N, long V);
void zt_cross_entropy_backward_avx2(float *dlogits, const float *logits, const int32_t *targets, long N, long V, float dloss);
void zt_cross_entropy_backward_avx512(float *dlogits, const float *logits, const int32_t *targets, long N, long V, float dloss);
void zt_bf16_round_avx2(const float *src, uint16_t *dst, long n);
void zt_bf16_round_avx512(const float *src, uint16_t *dst, long n);
void zt_bf16_widen_avx2(const uint16_t *src, float *dst, long n);
void zt_bf16_widen_avx512(const uint16_t *src, float *dst, long n);
void zt_bf16_quantize_avx2(float *buf, long n);
void zt_bf16_quantize_avx512(float *buf, long n);

static int zt_isa = -1;

int zt_kernels_best_isa(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) return ZT_ISA_AVX512;
#endif
    return ZT_ISA_AVX2;
}

static int zt_isa_now(void) {
    int isa = __atomic_load_n(&zt_isa, __ATOMIC_RELAXED);
    if (isa >= 0) return isa;
    isa = zt_kernels_best_isa();
    const char *env = getenv("ZERO_TRAIN_KERNELS");
    if (env && strcmp(env, "avx2") == 0) isa = ZT_ISA_AVX2;
    __atomic_store_n(&zt_isa, isa, __ATOMIC_RELAXED);
    return isa;
}

int zt_kernels_isa(void) { return zt_isa_now(); }

int zt_kernels_set_isa(int isa) {
    if (isa != ZT_ISA_AVX2 && isa != ZT_ISA_AVX512) return -1;
    if (isa > zt_kernels_best_isa()) return -1;
    __atomic_store_n(&zt_isa, isa, __ATOMIC_RELAXED);
    return 0;
}

void zt_expf_array(float *out, const float *inp, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_expf_array_avx512(out, inp, n); else zt_expf_array_avx2(out, inp, n);
}
void zt_residual_forward(float *out, const float *a, const float *b, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_residual_forward_avx512(out, a, b, n); else zt_residual_forward_avx2(out, a, b, n);
}
void zt_residual_backward(float *da, float *db, const float *dout, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_residual_backward_avx512(da, db, dout, n); else zt_residual_backward_avx2(da, db, dout, n);
}
void zt_bias_backward(float *dbias, const float *dout, long N, long OC) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_bias_backward_avx512(dbias, dout, N, OC); else zt_bias_backward_avx2(dbias, dout, N, OC);
}
void zt_gelu_forward(float *out, const float *inp, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_gelu_forward_avx512(out, inp, n); else zt_gelu_forward_avx2(out, inp, n);
}
void zt_gelu_backward(float *dinp, const float *inp, const float *dout, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_gelu_backward_avx512(dinp, inp, dout, n); else zt_gelu_backward_avx2(dinp, inp, dout, n);
}
void zt_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, long N, long C, float eps) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_layernorm_forward_avx512(out, mean, rstd, inp, weight, bias, N, C, eps); else zt_layernorm_forward_avx2(out, mean, rstd, inp, weight, bias, N, C, eps);
}
void zt_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight, const float *mean, const float *rstd, long N, long C) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_layernorm_backward_avx512(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C); else zt_layernorm_backward_avx2(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void zt_softmax_causal_rows(float *a, long r0, long r1, long T) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_softmax_causal_rows_avx512(a, r0, r1, T); else zt_softmax_causal_rows_avx2(a, r0, r1, T);
}
void zt_softmax_causal_backward_rows(const float *a, float *d, long r0, long r1, long T) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_softmax_causal_backward_rows_avx512(a, d, r0, r1, T); else zt_softmax_causal_backward_rows_avx2(a, d, r0, r1, T);
}
float zt_cross_entropy_forward(float *losses, const float *logits, const int32_t *targets, long N, long V) {
    return zt_isa_now() == ZT_ISA_AVX512 ? zt_cross_entropy_forward_avx512(losses, logits, targets, N, V) : zt_cross_entropy_forward_avx2(losses, logits, targets, N, V);
}
void zt_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, long N, long V, float dloss) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_cross_entropy_backward_avx512(dlogits, logits, targets, N, V, dloss); else zt_cross_entropy_backward_avx2(dlogits, logits, targets, N, V, dloss);
}
void zt_bf16_round(const float *src, uint16_t *dst, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_bf16_round_avx512(src, dst, n); else zt_bf16_round_avx2(src, dst, n);
}
void zt_bf16_widen(const uint16_t *src, float *dst, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_bf16_widen_avx512(src, dst, n); else zt_bf16_widen_avx2(src, dst, n);
}
void zt_bf16_quantize(float *buf, long n) {
    if (zt_isa_now() == ZT_ISA_AVX512) zt_bf16_quantize_avx512(buf, n); else zt_bf16_quantize_avx2(buf, n);
}
