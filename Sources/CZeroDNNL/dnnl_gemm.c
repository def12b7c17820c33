// oneDNN bf16 matmul with a per-thread primitive cache. See include/zt_dnnl.h.
#include "zt_dnnl.h"
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

extern void omp_set_num_threads(int);

enum { CACHE_BUCKETS = 1024, CACHE_LIMIT = 512 };

// A primitive's identity: rank (2 or 4), the dims and strides of src, weights and dst,
// alpha, beta and the thread count. Memset before filling: padding takes part in hash and compare.
typedef struct {
    int ndims;
    long dims[3][4], strides[3][4];
    float alpha, beta;
    int threads;
} key_t_;

typedef struct entry {
    key_t_ key;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c; // created once; each call points them at the caller's buffers
    struct entry *next;
} entry_t;

static int g_threads = 1;
static _Thread_local int t_applied_threads = 0;
static _Thread_local dnnl_engine_t t_engine = NULL;
static _Thread_local dnnl_stream_t t_stream = NULL;
static _Thread_local entry_t *t_buckets[CACHE_BUCKETS];
static _Thread_local int t_count = 0;
static _Thread_local char t_impl[128];

static _Thread_local void *t_scratch[8];
static _Thread_local long t_scratch_bytes[8];

void *zt_dnnl_scratch(int slot, long bytes) {
    if (slot < 0 || slot > 7) return NULL;
    if (bytes > t_scratch_bytes[slot]) {
        free(t_scratch[slot]);
        t_scratch[slot] = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
        t_scratch_bytes[slot] = t_scratch[slot] ? bytes : 0;
    }
    return t_scratch[slot];
}

void zt_dnnl_set_threads(int count) { __atomic_store_n(&g_threads, count < 1 ? 1 : count, __ATOMIC_RELAXED); }

static int current_threads(void) {
    int n = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    // OpenMP's thread count is a per-thread setting: apply it on each calling thread.
    if (n != t_applied_threads) { omp_set_num_threads(n); t_applied_threads = n; }
    return n;
}

static unsigned long hash_key(const key_t_ *k) {
    unsigned long h = 1469598103934665603UL;
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < sizeof *k; i++) { h ^= p[i]; h *= 1099511628211UL; }
    return h;
}

void zt_dnnl_clear_cache(void) {
    for (int b = 0; b < CACHE_BUCKETS; b++) {
        entry_t *e = t_buckets[b];
        while (e) {
            entry_t *n = e->next;
            dnnl_memory_destroy(e->a); dnnl_memory_destroy(e->b); dnnl_memory_destroy(e->c);
            dnnl_primitive_destroy(e->prim);
            free(e);
            e = n;
        }
        t_buckets[b] = NULL;
    }
    t_count = 0;
}

int zt_dnnl_cache_count(void) { return t_count; }

static dnnl_status_t ensure_engine(void) {
    if (t_engine) return dnnl_success;
    dnnl_status_t s = dnnl_engine_create(&t_engine, dnnl_cpu, 0);
    if (s != dnnl_success) return s;
    return dnnl_stream_create(&t_stream, t_engine, dnnl_stream_default_flags);
}

static dnnl_status_t create(const key_t_ *k, dnnl_primitive_t *out) {
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_strides(&a_md, k->ndims, k->dims[0], dnnl_bf16, k->strides[0])) != dnnl_success) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&b_md, k->ndims, k->dims[1], dnnl_bf16, k->strides[1])) != dnnl_success) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&c_md, k->ndims, k->dims[2], dnnl_f32, k->strides[2])) != dnnl_success) return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md)) != dnnl_success) return s;
    dnnl_primitive_attr_t attr;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success) return s;
    if (k->alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (k->beta != 0.0f) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, k->beta);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    s = dnnl_primitive_desc_create(&pd, &desc, attr, t_engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return s;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl) {
        snprintf(t_impl, sizeof t_impl, "%s", impl);
    }
    s = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/// A cache entry: the primitive and memory objects for its three operands (no handles yet).
static dnnl_status_t new_entry(const key_t_ *key, entry_t **out) {
    dnnl_primitive_t prim;
    dnnl_status_t s = create(key, &prim);
    if (s != dnnl_success) return s;
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(prim, &pd);
    entry_t *e = calloc(1, sizeof *e);
    if (!e) { dnnl_primitive_destroy(prim); return dnnl_out_of_memory; }
    e->key = *key;
    e->prim = prim;
    if ((s = dnnl_memory_create(&e->a, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), t_engine, DNNL_MEMORY_NONE)) != dnnl_success ||
        (s = dnnl_memory_create(&e->b, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), t_engine, DNNL_MEMORY_NONE)) != dnnl_success ||
        (s = dnnl_memory_create(&e->c, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), t_engine, DNNL_MEMORY_NONE)) != dnnl_success) {
        if (e->a) dnnl_memory_destroy(e->a);
        if (e->b) dnnl_memory_destroy(e->b);
        dnnl_primitive_destroy(prim);
        free(e);
        return s;
    }
    *out = e;
    return dnnl_success;
}

static int execute(key_t_ *key, const uint16_t *A, const uint16_t *B, float *C) {
    key->threads = current_threads();
    dnnl_status_t s = ensure_engine();
    if (s != dnnl_success) return (int)s;
    unsigned long b = hash_key(key) % CACHE_BUCKETS;
    entry_t *e = t_buckets[b];
    while (e && memcmp(&e->key, key, sizeof *key) != 0) e = e->next;
    if (!e) {
        if (t_count >= CACHE_LIMIT) zt_dnnl_clear_cache();
        if ((s = new_entry(key, &e)) != dnnl_success) return (int)s;
        e->next = t_buckets[b];
        t_buckets[b] = e;
        t_count++;
    }
    dnnl_memory_set_data_handle(e->a, (void *)A);
    dnnl_memory_set_data_handle(e->b, (void *)B);
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    if ((s = dnnl_primitive_execute(e->prim, t_stream, 3, args)) != dnnl_success) return (int)s;
    return (int)dnnl_stream_wait(t_stream);
}

int zt_dnnl_gemm_bf16(int transA, int transB, long M, long N, long K, float alpha,
                      const uint16_t *A, const uint16_t *B, float beta, float *C, long ldc) {
    if (M == 0 || N == 0) return 0;
    key_t_ key;
    memset(&key, 0, sizeof key);
    key.ndims = 2;
    key.dims[0][0] = M; key.dims[0][1] = K;
    key.dims[1][0] = K; key.dims[1][1] = N;
    key.dims[2][0] = M; key.dims[2][1] = N;
    key.strides[0][0] = transA ? 1 : K; key.strides[0][1] = transA ? M : 1;
    key.strides[1][0] = transB ? 1 : N; key.strides[1][1] = transB ? K : 1;
    key.strides[2][0] = ldc; key.strides[2][1] = 1;
    key.alpha = alpha; key.beta = beta;
    return execute(&key, A, B, C);
}

int zt_dnnl_batched_bf16(long batch0, long batch1, long M, long N, long K,
                         const long aStrides[4], const long bStrides[4], const long cStrides[4],
                         float alpha, float beta, const uint16_t *A, const uint16_t *B, float *C) {
    if (batch0 == 0 || batch1 == 0 || M == 0 || N == 0) return 0;
    key_t_ key;
    memset(&key, 0, sizeof key);
    key.ndims = 4;
    const long dims[3][4] = {{batch0, batch1, M, K}, {batch0, batch1, K, N}, {batch0, batch1, M, N}};
    memcpy(key.dims, dims, sizeof dims);
    memcpy(key.strides[0], aStrides, 4 * sizeof(long));
    memcpy(key.strides[1], bStrides, 4 * sizeof(long));
    memcpy(key.strides[2], cStrides, 4 * sizeof(long));
    key.alpha = alpha; key.beta = beta;
    return execute(&key, A, B, C);
}

static inline uint16_t round_one(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

void zt_dnnl_round_bf16(const float *src, long rows, long cols, long ld, uint16_t *dst) {
    for (long r = 0; r < rows; r++) {
        const float *s = src + r * ld;
        uint16_t *d = dst + r * cols;
        for (long j = 0; j < cols; j++) d[j] = round_one(s[j]);
    }
}

void zt_dnnl_quantize_f32(const float *src, long rows, long cols, long ld, float *dst) {
    for (long r = 0; r < rows; r++) {
        const float *s = src + r * ld;
        float *d = dst + r * cols;
        for (long j = 0; j < cols; j++) {
            uint32_t u = (uint32_t)round_one(s[j]) << 16;
            memcpy(d + j, &u, 4);
        }
    }
}

const char *zt_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

const char *zt_dnnl_version(void) {
    static _Thread_local char text[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "%d.%d.%d", v->major, v->minor, v->patch);
    return text;
}

const char *zt_dnnl_last_impl(void) { return t_impl; }
