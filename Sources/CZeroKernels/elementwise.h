// Elementwise kernel bodies, compiled twice: elementwise_avx2.c (the package's haswell
// baseline) and elementwise_avx512.c (every function given target("avx512...")). ZT_SUFFIX
// names the copy. The code is written with 16-lane clang vectors: two ymm registers per
// vector under AVX2, one zmm under AVX-512.
//
// Every kernel is bit-identical to the Swift kernels it replaced: the same operations in
// the same order, -ffp-contract=off (no fused multiply-add except where the original used
// one: glibc's expf), reductions in the original lane layout (8 running lane sums, then lanes
// added in order) or strictly sequential where the original loop was scalar.

#pragma clang diagnostic ignored "-Wpsabi"  // 16-lane vectors only cross inlined helpers
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ZT_CAT2(a, b) a##_##b
#define ZT_CAT(a, b) ZT_CAT2(a, b)
#define ZT_FN(name) ZT_CAT(name, ZT_SUFFIX)

typedef float zt_vf __attribute__((ext_vector_type(16)));
typedef double zt_vd __attribute__((ext_vector_type(16)));
typedef uint32_t zt_vu __attribute__((ext_vector_type(16)));
typedef int32_t zt_vi __attribute__((ext_vector_type(16)));
typedef uint64_t zt_vq __attribute__((ext_vector_type(16)));
typedef uint16_t zt_vh __attribute__((ext_vector_type(16)));
typedef float zt_f8 __attribute__((ext_vector_type(8)));
typedef uint64_t zt_q8 __attribute__((ext_vector_type(8)));
typedef uint64_t zt_q4 __attribute__((ext_vector_type(4)));

#define ZT_W 16

static inline zt_vf ZT_FN(ld)(const float *p) { zt_vf v; memcpy(&v, p, sizeof v); return v; }
static inline void ZT_FN(st)(float *p, zt_vf v) { memcpy(p, &v, sizeof v); }
static inline zt_f8 ZT_FN(ld8)(const float *p) { zt_f8 v; memcpy(&v, p, sizeof v); return v; }
static inline zt_vf ZT_FN(splat)(float x) { return (zt_vf)x; }
/// Lanes where m is true take a, the others b.
static inline zt_vf ZT_FN(sel)(zt_vi m, zt_vf a, zt_vf b) {
    zt_vu ua = __builtin_bit_cast(zt_vu, a), ub = __builtin_bit_cast(zt_vu, b), um = __builtin_bit_cast(zt_vu, m);
    return __builtin_bit_cast(zt_vf, (ua & um) | (ub & ~um));
}
/// The first n < 16 floats of p in a zero-padded vector, and back.
static inline zt_vf ZT_FN(ldn)(const float *p, long n) { float b[ZT_W] = {0}; memcpy(b, p, (size_t)n * 4); return ZT_FN(ld)(b); }
static inline void ZT_FN(stn)(float *p, zt_vf v, long n) { float b[ZT_W]; ZT_FN(st)(b, v); memcpy(p, b, (size_t)n * 4); }

/// Sum of 8 lanes in lane order from -0, as Swift's SIMD8.sum().
static inline float ZT_FN(sum8)(zt_f8 a) {
    float r = -0.0f;
    for (int i = 0; i < 8; i++) r += a[i];
    return r;
}

// MARK: glibc expf, 16 lanes

/// glibc 2.28+ expf (the FMA variant that its ifunc picks on every AVX2 + FMA machine), lane-wise,
/// in double: x N/ln2 = k + r, 2^(k/N) from a 32-entry table, a cubic for 2^(r/N), one rounding
/// to float at the end. Lanes with |x| >= 88 or NaN call expf itself (overflow, underflow, inf).
static const uint64_t zt_exp2f_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/// zt_exp2f_tab[idx] lane-wise: four in-register permutes under AVX-512, gathers under AVX2.
static inline zt_vq ZT_FN(exp2f_lookup)(zt_vq idx) {
    zt_q8 lo = __builtin_shufflevector(idx, idx, 0, 1, 2, 3, 4, 5, 6, 7);
    zt_q8 hi = __builtin_shufflevector(idx, idx, 8, 9, 10, 11, 12, 13, 14, 15);
#if defined(ZT_AVX512)
    const __m512i t0 = _mm512_loadu_si512(zt_exp2f_tab), t1 = _mm512_loadu_si512(zt_exp2f_tab + 8);
    const __m512i t2 = _mm512_loadu_si512(zt_exp2f_tab + 16), t3 = _mm512_loadu_si512(zt_exp2f_tab + 24);
    __m512i i0 = __builtin_bit_cast(__m512i, lo), i1 = __builtin_bit_cast(__m512i, hi);
    __m512i r0 = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(i0, _mm512_set1_epi64(16)),
                                         _mm512_permutex2var_epi64(t0, i0, t1), _mm512_permutex2var_epi64(t2, i0, t3));
    __m512i r1 = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(i1, _mm512_set1_epi64(16)),
                                         _mm512_permutex2var_epi64(t0, i1, t1), _mm512_permutex2var_epi64(t2, i1, t3));
    zt_q8 a = __builtin_bit_cast(zt_q8, r0), b = __builtin_bit_cast(zt_q8, r1);
#elif defined(__AVX2__)
    const long long *base = (const long long *)zt_exp2f_tab;
    zt_q4 l0 = __builtin_shufflevector(lo, lo, 0, 1, 2, 3), l1 = __builtin_shufflevector(lo, lo, 4, 5, 6, 7);
    zt_q4 h0 = __builtin_shufflevector(hi, hi, 0, 1, 2, 3), h1 = __builtin_shufflevector(hi, hi, 4, 5, 6, 7);
    zt_q4 g0 = __builtin_bit_cast(zt_q4, _mm256_i64gather_epi64(base, __builtin_bit_cast(__m256i, l0), 8));
    zt_q4 g1 = __builtin_bit_cast(zt_q4, _mm256_i64gather_epi64(base, __builtin_bit_cast(__m256i, l1), 8));
    zt_q4 g2 = __builtin_bit_cast(zt_q4, _mm256_i64gather_epi64(base, __builtin_bit_cast(__m256i, h0), 8));
    zt_q4 g3 = __builtin_bit_cast(zt_q4, _mm256_i64gather_epi64(base, __builtin_bit_cast(__m256i, h1), 8));
    zt_q8 a = __builtin_shufflevector(g0, g1, 0, 1, 2, 3, 4, 5, 6, 7), b = __builtin_shufflevector(g2, g3, 0, 1, 2, 3, 4, 5, 6, 7);
#else
    zt_q8 a, b;
    for (int i = 0; i < 8; i++) { a[i] = zt_exp2f_tab[lo[i]]; b[i] = zt_exp2f_tab[hi[i]]; }
#endif
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

static inline zt_vf ZT_FN(expf16)(zt_vf x) {
    const double invln2n = 0x1.71547652b82fep+5, shift = 0x1.8p+52;
    const double c0 = 0x1.c6af84b912394p-20, c1 = 0x1.ebfce50fac4f3p-13, c2 = 0x1.62e42ff0c52d6p-6;
    zt_vu u = __builtin_bit_cast(zt_vu, x);
    zt_vd xd = __builtin_convertvector(x, zt_vd);
    zt_vd kds = __builtin_elementwise_fma(xd, (zt_vd)invln2n, (zt_vd)shift);
    zt_vq ki = __builtin_bit_cast(zt_vq, kds);
    zt_vd kd = kds - shift;
    zt_vd r = __builtin_elementwise_fma((zt_vd)invln2n, xd, -kd);
    zt_vd z = __builtin_elementwise_fma(r, (zt_vd)c0, (zt_vd)c1);
    zt_vd r2 = r * r;
    zt_vd y = __builtin_elementwise_fma(r, (zt_vd)c2, (zt_vd)1.0);
    y = __builtin_elementwise_fma(z, r2, y);
    zt_vq t = ZT_FN(exp2f_lookup)(ki & 31);
    t += ki << 47;
    y = y * __builtin_bit_cast(zt_vd, t);
    zt_vf res = __builtin_convertvector(y, zt_vf);
    zt_vi special = __builtin_convertvector(((u >> 20) & 0x7ffu) > 0x42au, zt_vi);
    if (__builtin_reduce_or(special)) {
        for (int i = 0; i < ZT_W; i++) if (special[i]) res[i] = expf(x[i]);
    }
    return res;
}

void ZT_FN(zt_expf_array)(float *out, const float *inp, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) ZT_FN(st)(out + i, ZT_FN(expf16)(ZT_FN(ld)(inp + i)));
    if (i < n) ZT_FN(stn)(out + i, ZT_FN(expf16)(ZT_FN(ldn)(inp + i, n - i)), n - i);
}

// MARK: Residual, bias

void ZT_FN(zt_residual_forward)(float *out, const float *a, const float *b, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) ZT_FN(st)(out + i, ZT_FN(ld)(a + i) + ZT_FN(ld)(b + i));
    for (; i < n; i++) out[i] = a[i] + b[i];
}

void ZT_FN(zt_residual_backward)(float *da, float *db, const float *dout, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) {
        zt_vf d = ZT_FN(ld)(dout + i);
        ZT_FN(st)(da + i, ZT_FN(ld)(da + i) + d);
        ZT_FN(st)(db + i, ZT_FN(ld)(db + i) + d);
    }
    for (; i < n; i++) { da[i] += dout[i]; db[i] += dout[i]; }
}

/// dbias[o] += dout[n][o] for n in order: whole rows streamed, dbias stays in L1.
void ZT_FN(zt_bias_backward)(float *dbias, const float *dout, long N, long OC) {
    for (long n = 0; n < N; n++) {
        const float *r = dout + n * OC;
        long o = 0;
        for (; o + ZT_W <= OC; o += ZT_W) ZT_FN(st)(dbias + o, ZT_FN(ld)(dbias + o) + ZT_FN(ld)(r + o));
        for (; o < OC; o++) dbias[o] += r[o];
    }
}

// MARK: GELU (tanh form as x sigmoid(2u), the kernel's own 1-ulp exp)

/// Cody-Waite exp with Cephes's polynomial, inputs clamped to [-87.3, 88.3] (NaN passes through).
static inline zt_vf ZT_FN(exp_cephes16)(zt_vf x) {
    const float magic = 0x1.8p23f;
    zt_vf lower = ZT_FN(splat)(-87.3f), upper = ZT_FN(splat)(88.3f);
    x = ZT_FN(sel)(x < lower, lower, x);
    x = ZT_FN(sel)(x > upper, upper, x);
    zt_vf t = x * 1.44269504088896341f + magic;
    zt_vf k = t - magic;
    zt_vf hi = k * 0.693359375f, lo = k * 2.12194440e-4f;
    zt_vf r = x - hi + lo;
    zt_vf p = ZT_FN(splat)(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    zt_vf r2 = r * r;
    zt_vf er = p * r2 + r + 1.0f;
    zt_vu kbits = __builtin_bit_cast(zt_vu, t) - __builtin_bit_cast(uint32_t, magic);
    zt_vf scale = __builtin_bit_cast(zt_vf, (kbits + 127u) << 23);
    return er * scale;
}

static const float zt_gelu_scale = 0.7978845608028654f;

static inline zt_vf ZT_FN(gelu_sigmoid16)(zt_vf x) {
    zt_vf x3 = x * x * x;
    zt_vf u = zt_gelu_scale * (x + 0.044715f * x3);
    return 1.0f / (1.0f + ZT_FN(exp_cephes16)(-2.0f * u));
}

static inline zt_vf ZT_FN(gelu_grad16)(zt_vf x) {
    zt_vf s = ZT_FN(gelu_sigmoid16)(x);
    zt_vf x2 = x * x;
    zt_vf du = zt_gelu_scale * (1.0f + 0.134145f * x2);
    zt_vf two_xs = 2.0f * x * s;
    return s + two_xs * (1.0f - s) * du;
}

void ZT_FN(zt_gelu_forward)(float *out, const float *inp, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) { zt_vf x = ZT_FN(ld)(inp + i); ZT_FN(st)(out + i, x * ZT_FN(gelu_sigmoid16)(x)); }
    if (i < n) { zt_vf x = ZT_FN(ldn)(inp + i, n - i); ZT_FN(stn)(out + i, x * ZT_FN(gelu_sigmoid16)(x), n - i); }
}

void ZT_FN(zt_gelu_backward)(float *dinp, const float *inp, const float *dout, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) ZT_FN(st)(dinp + i, ZT_FN(ld)(dout + i) * ZT_FN(gelu_grad16)(ZT_FN(ld)(inp + i)));
    if (i < n) {
        zt_vf g = ZT_FN(gelu_grad16)(ZT_FN(ldn)(inp + i, n - i));
        ZT_FN(stn)(dinp + i, ZT_FN(ldn)(dout + i, n - i) * g, n - i);
    }
}

// MARK: LayerNorm

void ZT_FN(zt_layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                 const float *bias, long N, long C, float eps) {
    const float invC = 1.0f / (float)C;
    for (long n = 0; n < N; n++) {
        const float *x = inp + n * C;
        zt_f8 a8 = 0;
        long i = 0;
        for (; i + 8 <= C; i += 8) a8 += ZT_FN(ld8)(x + i);
        float s = ZT_FN(sum8)(a8);
        for (; i < C; i++) s += x[i];
        const float m = s * invC;
        zt_f8 v8 = 0;
        for (i = 0; i + 8 <= C; i += 8) { zt_f8 d = ZT_FN(ld8)(x + i) - m; v8 += d * d; }
        float v = ZT_FN(sum8)(v8);
        for (; i < C; i++) { float d = x[i] - m; v += d * d; }
        const float r = 1.0f / sqrtf(v * invC + eps);
        float *o = out + n * C;
        for (i = 0; i + ZT_W <= C; i += ZT_W)
            ZT_FN(st)(o + i, (ZT_FN(ld)(x + i) - m) * r * ZT_FN(ld)(weight + i) + ZT_FN(ld)(bias + i));
        for (; i < C; i++) o[i] = (x[i] - m) * r * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = r;
    }
}

void ZT_FN(zt_layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, const float *mean, const float *rstd, long N, long C) {
    const float invC = 1.0f / (float)C;
    for (long n = 0; n < N; n++) {
        const float *d = dout + n * C, *x = inp + n * C;
        float *dx = dinp + n * C;
        const float m = mean[n], s = rstd[n];
        zt_f8 a8 = 0, b8 = 0;
        long i = 0;
        for (; i + 8 <= C; i += 8) {
            zt_f8 norm = (ZT_FN(ld8)(x + i) - m) * s;
            zt_f8 dnorm = ZT_FN(ld8)(weight + i) * ZT_FN(ld8)(d + i);
            a8 += dnorm;
            b8 += dnorm * norm;
        }
        float dm = ZT_FN(sum8)(a8), dnm = ZT_FN(sum8)(b8);
        for (; i < C; i++) {
            float norm = (x[i] - m) * s, dnorm = weight[i] * d[i];
            dm += dnorm;
            dnm += dnorm * norm;
        }
        dm *= invC;
        dnm *= invC;
        for (i = 0; i + ZT_W <= C; i += ZT_W) {
            zt_vf dv = ZT_FN(ld)(d + i);
            zt_vf norm = (ZT_FN(ld)(x + i) - m) * s;
            zt_vf dnorm = ZT_FN(ld)(weight + i) * dv;
            ZT_FN(st)(dbias + i, ZT_FN(ld)(dbias + i) + dv);
            ZT_FN(st)(dweight + i, ZT_FN(ld)(dweight + i) + norm * dv);
            ZT_FN(st)(dx + i, ZT_FN(ld)(dx + i) + (dnorm - dm - norm * dnm) * s);
        }
        for (; i < C; i++) {
            float norm = (x[i] - m) * s, dnorm = weight[i] * d[i];
            dbias[i] += d[i];
            dweight[i] += norm * d[i];
            dx[i] += (dnorm - dm - norm * dnm) * s;
        }
    }
}

// MARK: Softmax pieces (max ignoring NaN, glibc exps, sequential sums)

/// max over p[0..<n] as Swift's `maxv = max(maxv, p[j])` from -inf: NaNs are skipped. (Which
/// of +0 and -0 wins can differ; every use of the max gives the same bits for either.)
static inline float ZT_FN(row_max)(const float *p, long n) {
    zt_vf m = ZT_FN(splat)(-INFINITY);
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) { zt_vf x = ZT_FN(ld)(p + i); m = ZT_FN(sel)(x > m, x, m); }
    float r = -INFINITY;
    for (int j = 0; j < ZT_W; j++) r = m[j] > r ? m[j] : r;
    for (; i < n; i++) r = p[i] > r ? p[i] : r;
    return r;
}

/// dst[j] = expf(src[j] - maxv) for j < n; returns their strictly sequential sum.
/// dst may equal src.
static inline float ZT_FN(exp_sub_sum)(float *dst, const float *src, long n, float maxv) {
    float sum = 0;
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) {
        zt_vf e = ZT_FN(expf16)(ZT_FN(ld)(src + i) - maxv);
        ZT_FN(st)(dst + i, e);
        for (int j = 0; j < ZT_W; j++) sum += e[j];
    }
    if (i < n) {
        zt_vf e = ZT_FN(expf16)(ZT_FN(ldn)(src + i, n - i) - maxv);
        ZT_FN(stn)(dst + i, e, n - i);
        for (long j = 0; j < n - i; j++) sum += e[j];
    }
    return sum;
}

static inline void ZT_FN(scale_row)(float *p, long n, float s) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) ZT_FN(st)(p + i, ZT_FN(ld)(p + i) * s);
    for (; i < n; i++) p[i] *= s;
}

/// Rows t in [r0, r1) of a T-wide matrix: softmax of a[t][0...t] in place, zeros after.
void ZT_FN(zt_softmax_causal_rows)(float *a, long r0, long r1, long T) {
    for (long t = r0; t < r1; t++) {
        float *row = a + t * T;
        const float maxv = ZT_FN(row_max)(row, t + 1);
        const float sum = ZT_FN(exp_sub_sum)(row, row, t + 1, maxv);
        ZT_FN(scale_row)(row, t + 1, 1.0f / sum);
        memset(row + t + 1, 0, (size_t)(T - t - 1) * 4);
    }
}

/// Rows t in [r0, r1): d[t][j] = a[t][j] (d[t][j] - sum_k a[t][k] d[t][k]) for j <= t (the dot
/// summed in order), zeros for t < j < r1.
void ZT_FN(zt_softmax_causal_backward_rows)(const float *a, float *d, long r0, long r1, long T) {
    for (long t = r0; t < r1; t++) {
        const float *ar = a + t * T;
        float *dr = d + t * T;
        const long n = t + 1;
        float dot = 0;
        long i = 0;
        for (; i + ZT_W <= n; i += ZT_W) {
            zt_vf p = ZT_FN(ld)(ar + i) * ZT_FN(ld)(dr + i);
            for (int j = 0; j < ZT_W; j++) dot += p[j];
        }
        for (; i < n; i++) dot += ar[i] * dr[i];
        for (i = 0; i + ZT_W <= n; i += ZT_W) ZT_FN(st)(dr + i, ZT_FN(ld)(ar + i) * (ZT_FN(ld)(dr + i) - dot));
        for (; i < n; i++) dr[i] = ar[i] * (dr[i] - dot);
        if (r1 > n) memset(dr + n, 0, (size_t)(r1 - n) * 4);
    }
}

// MARK: Cross-entropy

float ZT_FN(zt_cross_entropy_forward)(float *losses, const float *logits, const int32_t *targets, long N, long V) {
    double total = 0;
    for (long n = 0; n < N; n++) {
        const float *row = logits + n * V;
        const float maxv = ZT_FN(row_max)(row, V);
        float sum = 0;
        long i = 0;
        for (; i + ZT_W <= V; i += ZT_W) {
            zt_vf e = ZT_FN(expf16)(ZT_FN(ld)(row + i) - maxv);
            for (int j = 0; j < ZT_W; j++) sum += e[j];
        }
        if (i < V) {
            zt_vf e = ZT_FN(expf16)(ZT_FN(ldn)(row + i, V - i) - maxv);
            for (long j = 0; j < V - i; j++) sum += e[j];
        }
        const float l = logf(sum) + maxv - row[targets[n]];
        losses[n] = l;
        total += (double)l;
    }
    return (float)(total / (double)N);
}

/// dlogits may alias logits.
void ZT_FN(zt_cross_entropy_backward)(float *dlogits, const float *logits, const int32_t *targets, long N, long V,
                                      float dloss) {
    for (long n = 0; n < N; n++) {
        const float *row = logits + n * V;
        float *drow = dlogits + n * V;
        const float maxv = ZT_FN(row_max)(row, V);
        const float sum = ZT_FN(exp_sub_sum)(drow, row, V, maxv);
        ZT_FN(scale_row)(drow, V, dloss / sum);
        drow[targets[n]] -= dloss;
    }
}

// MARK: bf16 (round to nearest even as torch.bfloat16; NaN kept quiet with its sign)

static inline zt_vh ZT_FN(bf16_round16)(zt_vu u) {
    zt_vu rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    zt_vu quiet = (u >> 16) | 0x40u;
    zt_vu nan = __builtin_bit_cast(zt_vu, __builtin_convertvector((u & 0x7FFFFFFFu) > 0x7F800000u, zt_vi));
    return __builtin_convertvector((quiet & nan) | (rounded & ~nan), zt_vh);
}

static inline uint16_t zt_bf16_round1(uint32_t u) {
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

void ZT_FN(zt_bf16_round)(const float *src, uint16_t *dst, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) {
        zt_vu u; memcpy(&u, src + i, sizeof u);
        zt_vh h = ZT_FN(bf16_round16)(u);
        memcpy(dst + i, &h, sizeof h);
    }
    for (; i < n; i++) { uint32_t u; memcpy(&u, src + i, 4); dst[i] = zt_bf16_round1(u); }
}

void ZT_FN(zt_bf16_widen)(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) {
        zt_vh h; memcpy(&h, src + i, sizeof h);
        zt_vu u = __builtin_convertvector(h, zt_vu) << 16;
        memcpy(dst + i, &u, sizeof u);
    }
    for (; i < n; i++) { uint32_t u = (uint32_t)src[i] << 16; memcpy(dst + i, &u, 4); }
}

void ZT_FN(zt_bf16_quantize)(float *buf, long n) {
    long i = 0;
    for (; i + ZT_W <= n; i += ZT_W) {
        zt_vu u; memcpy(&u, buf + i, sizeof u);
        zt_vu w = __builtin_convertvector(ZT_FN(bf16_round16)(u), zt_vu) << 16;
        memcpy(buf + i, &w, sizeof w);
    }
    for (; i < n; i++) { uint32_t u; memcpy(&u, buf + i, 4); u = (uint32_t)zt_bf16_round1(u) << 16; memcpy(buf + i, &u, 4); }
}
