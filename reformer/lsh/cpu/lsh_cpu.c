/* Fused LSH chunk attention for the CPU (Reformer sec. 2), forward and backward, float32.
 *
 * The C twin of the Triton kernels (reformer/lsh/triton/kernels.py), with the same
 * semantics as reformer.lsh.torch_path.LSHAttentionFunction: all rounds' sorted slots are laid
 * end to end, cut into chunks of `bucket_size`; the queries of global chunk g see the keys of
 * chunks g-1 (mod the number of chunks) and g. A key seen k times among all the windows a
 * query sees weighs 1/k per occurrence (the duplicate correction), so the result is one
 * softmax over the union of keys.
 *
 * Why it exists: the torch path spends most of its time between ops (thousands of calls,
 * each a pass over memory). Here one work item is a whole (batch, head, chunk): its rows
 * are gathered once into buffers that stay in L1/L2, and its logits, weights and the four
 * matmuls of backward never leave them.
 *
 * Work items are claimed from a shared counter, so the calling threads (the caller runs
 * one per core) balance themselves: a thread that is descheduled simply takes fewer items.
 * Every position is written by exactly one item of a launch, so no atomics are needed and
 * results do not depend on the number of threads or on scheduling.
 *
 * Logits are in base 2 (q·k̂ · scale · log2 e), so weights are 2^x.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float vec8 __attribute__((vector_size(32)));
typedef int32_t ivec8 __attribute__((vector_size(32)));

#define SELF_LOGIT2 (-1e5f * 1.4426950408889634f)
#define EXP2_FLOOR (-87.0f * 1.4426950408889634f)
/* The floor of a row maximum, so a row with every key masked (max -inf) gets weight 0
 * rather than NaN. Below every live logit: the self logit less log2 of its count (the
 * duplicate correction shifts a pair by -log2 count, count <= 3·rounds). Clamping at the
 * self logit itself would shift a self-only row's weights off 1 and lose its exact v. */
#define ROW_MAX_FLOOR (SELF_LOGIT2 - 64.0f)
#define NORM_EPS 1e-12f

typedef struct {
    int64_t batch, heads, length, dim, dim_v, rounds, bucket_size, chunks_per_round, total;
    int64_t causal, has_valid, counts, look_back;
    float scale;  /* 1 / sqrt(D) */
    /* qk (B, H, Lp, D) and v (B, H, Lp, Dv): strides in elements, last dimension dense */
    const float *qk;
    int64_t qk_sb, qk_sh, qk_sl;
    const float *v;
    int64_t v_sb, v_sh, v_sl;
    const int64_t *sort;     /* (B, H, R, Lp) dense */
    const int32_t *chunk_of; /* (B, H, R, Lp) dense: global chunk of each (round, position) */
    const uint8_t *valid;    /* (B, Lp) dense */
    /* forward: running output (B, H, Lp, Dv) strided like v, row maximum and row sum
     * (B, H, Lp) dense */
    float *out;
    int64_t out_sb, out_sh, out_sl;
    float *row_max, *row_sum;
    /* backward: dO (strided), delta and 1/sum (B, H, Lp) dense; d(qk) and dV strided */
    const float *grad_out;
    int64_t go_sb, go_sh, go_sl;
    const float *delta, *inv_sum;
    float *grad_q;
    int64_t gq_sb, gq_sh, gq_sl;
    float *grad_v;
    int64_t gv_sb, gv_sh, gv_sl;
} Args;

static inline vec8 load8(const float *p) {
    vec8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, vec8 v) { memcpy(p, &v, sizeof v); }

/* Element (i, k) of A: row-major (i·lda + k), or stored transposed (k·lda + i). */
#define A_AT(A, lda, i, k, trans) ((trans) ? (A)[(k) * (lda) + (i)] : (A)[(i) * (lda) + (k)])

/* The matmul's vector: 16 lanes with AVX-512, else 8. */
#if defined(__AVX512F__)
typedef float vecw __attribute__((vector_size(64)));
#define VW 16
#else
typedef float vecw __attribute__((vector_size(32)));
#define VW 8
#endif
/* Keep a loaded B vector in a register: otherwise the compiler folds the load into every
 * FMA that uses it, and the loads, not the FMAs, set the pace (measured on one core of an
 * AVX-512 EPYC, a 64 × 128 × 64 product: about 80 GFLOP/s folded, 110 kept). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__AVX__)
#define IN_REGISTER(x) __asm__("" : "+v"(x))
#else
#define IN_REGISTER(x) ((void)0)
#endif
#define BLOCK_ROWS 6

static inline vecw loadw(const float *p) {
    vecw v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void storew(float *p, vecw v) { memcpy(p, &v, sizeof v); }

/* Rows [i, i + rows) × columns [j, j + 2·VW) of C = [C +] A·B: 2·rows vector accumulators,
 * each loaded B vector used by every row. */
static inline __attribute__((always_inline)) void gemm_block(
    int rows, int64_t i, int64_t j, int64_t K, const float *A, int64_t lda, int trans_a,
    const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate) {
    vecw c[BLOCK_ROWS][2];
    for (int r = 0; r < rows; r++) {
        c[r][0] = accumulate ? loadw(C + (i + r) * ldc + j) : (vecw){0};
        c[r][1] = accumulate ? loadw(C + (i + r) * ldc + j + VW) : (vecw){0};
    }
    for (int64_t k = 0; k < K; k++) {
        vecw b0 = loadw(B + k * ldb + j), b1 = loadw(B + k * ldb + j + VW);
        IN_REGISTER(b0);
        IN_REGISTER(b1);
        for (int r = 0; r < rows; r++) {
            float x = A_AT(A, lda, i + r, k, trans_a);
            c[r][0] += x * b0;
            c[r][1] += x * b1;
        }
    }
    for (int r = 0; r < rows; r++) {
        storew(C + (i + r) * ldc + j, c[r][0]);
        storew(C + (i + r) * ldc + j + VW, c[r][1]);
    }
}

/* C (M, N) = [C +] A (M, K) · B (K, N), row-major with leading dimensions; with `trans_a`
 * A is given as its transpose (K, M), so Pᵀ·dO and dSᵀ·Q need no transposed copy.
 * Always inlined, so each call site compiles to a kernel specialised for its flags. */
static inline __attribute__((always_inline)) void gemm_any(
    int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int trans_a, const float *B,
    int64_t ldb, float *C, int64_t ldc, int accumulate) {
    int64_t wide = N - N % (2 * VW);
    for (int64_t j = 0; j < wide; j += 2 * VW) {
        int64_t i = 0;
        for (; i + BLOCK_ROWS <= M; i += BLOCK_ROWS)
            gemm_block(BLOCK_ROWS, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate);
        switch (M - i) {  /* constant row counts, so each block is unrolled */
        case 5: gemm_block(5, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate); break;
        case 4: gemm_block(4, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate); break;
        case 3: gemm_block(3, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate); break;
        case 2: gemm_block(2, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate); break;
        case 1: gemm_block(1, i, j, K, A, lda, trans_a, B, ldb, C, ldc, accumulate); break;
        default: break;
        }
    }
    if (wide == N) return;
    /* Columns past the last whole block (widths that are not a multiple of 2·VW). */
    for (int64_t i = 0; i < M; i++) {
        float *row = C + i * ldc;
        if (!accumulate)
            for (int64_t j = wide; j < N; j++) row[j] = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            float x = A_AT(A, lda, i, k, trans_a);
            const float *b = B + k * ldb;
            for (int64_t j = wide; j < N; j++) row[j] += x * b[j];
        }
    }
}

static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc, int accumulate) {
    gemm_any(M, N, K, A, lda, 0, B, ldb, C, ldc, accumulate);
}

/* C (M, N) += Aᵀ · B with A (K, M) */
static void gemm_tn_acc(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc) {
    gemm_any(M, N, K, A, lda, 1, B, ldb, C, ldc, 1);
}

/* Dot product and maximum of n floats, 8 lanes at a time (the compiler may not reorder a
 * float reduction by itself). NaN never wins the maximum, as with a scalar `a > b ? a : b`. */
static inline float dot_n(const float *x, const float *y, int64_t n) {
    vec8 acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(x + i) * load8(y + i);
    float total = 0.0f;
    for (int k = 0; k < 8; k++) total += acc[k];
    for (; i < n; i++) total += x[i] * y[i];
    return total;
}

static inline float max_n(const float *x, int64_t n, float start) {
    vec8 acc = (vec8){0} + start;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        vec8 v = load8(x + i);
        ivec8 more = v > acc;
        acc = (vec8)(((ivec8)v & more) | ((ivec8)acc & ~more));
    }
    float best = start;
    for (int k = 0; k < 8; k++) best = acc[k] > best ? acc[k] : best;
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    return best;
}

/* out (cols, rows) = (in (rows, cols) · row_scale per row)ᵀ, 8 rows at a time so each
 * output row is written in runs of 8 contiguous floats. row_scale may be NULL (1). */
static void transpose(const float *in, int64_t rows, int64_t cols, int64_t ld_in,
                      const float *row_scale, float *out, int64_t ld_out) {
    int64_t i = 0;
    for (; i + 8 <= rows; i += 8) {
        float mul[8];
        for (int r = 0; r < 8; r++) mul[r] = row_scale ? row_scale[i + r] : 1.0f;
        for (int64_t j = 0; j < cols; j++)
            for (int r = 0; r < 8; r++) out[j * ld_out + i + r] = in[(i + r) * ld_in + j] * mul[r];
    }
    for (; i < rows; i++) {
        float mul = row_scale ? row_scale[i] : 1.0f;
        for (int64_t j = 0; j < cols; j++) out[j * ld_out + i] = in[i * ld_in + j] * mul;
    }
}

/* 2^x for x <= 0, elementwise in place; 0 below the floor (masked pairs are -inf), NaN
 * kept (it reaches the output, as in torch's attention). x = n + f with n the nearest
 * integer (the 1.5·2^23 rounding trick) and f in [-1/2, 1/2]: 2^f by a degree-7 Taylor
 * polynomial (relative error below 1e-8), 2^n through the exponent bits. Vector code, so
 * it runs 8 lanes at a time whatever the compiler's auto-vectoriser makes of it. */
static inline vec8 exp2_vec(vec8 v) {
    const vec8 lo = (vec8){0} - 126.0f, zero = (vec8){0}, magic = (vec8){0} + 12582912.0f;
    ivec8 below = v < lo, above = v > zero, drop = v < EXP2_FLOOR;
    vec8 t = (vec8)(((ivec8)v & ~below) | ((ivec8)lo & below));
    t = (vec8)((ivec8)t & ~above);
    vec8 whole = (t + magic) - magic;
    vec8 f = (t - whole) * 0.69314718055994531f;
    vec8 p = 1.0f + f * (1.0f + f * (0.5f + f * (1.6666667e-1f + f * (4.1666668e-2f +
             f * (8.3333338e-3f + f * (1.3888889e-3f + f * 1.9841270e-4f))))));
    ivec8 bits = (__builtin_convertvector(whole, ivec8) + 127) << 23;
    return (vec8)((ivec8)(p * (vec8)bits) & ~drop);
}

/* x = 2^(x - shift) · mul in place, for one row of n; returns the row's sum. */
static float exp2_row(float *x, int64_t n, float shift, float mul) {
    vec8 acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        vec8 p = exp2_vec(load8(x + i) - shift) * mul;
        store8(x + i, p);
        acc += p;
    }
    if (i < n) {
        float tail[8];
        for (int k = 0; k < 8; k++) tail[k] = i + k < n ? x[i + k] : -INFINITY;
        vec8 p = exp2_vec(load8(tail) - shift) * mul;
        memcpy(x + i, &p, sizeof(float) * (size_t)(n - i));
        acc += p;
    }
    float total = 0.0f;
    for (int k = 0; k < 8; k++) total += acc[k];
    return total;
}

/* Rows pos[0..n) of a strided (Lp, width) matrix into dst (n, width). The rows lie
 * anywhere in the sequence, so each is a cache miss: the rows a few steps ahead are
 * prefetched, so the misses overlap instead of being taken one at a time. */
#define PREFETCH_AHEAD 6
static void gather(const float *base, int64_t step, const int64_t *pos, int64_t n,
                   int64_t width, float *dst) {
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            const char *ahead = (const char *)(base + pos[i + PREFETCH_AHEAD] * step);
            for (int64_t byte = 0; byte < width * 4; byte += 64) __builtin_prefetch(ahead + byte);
        }
        memcpy(dst + i * width, base + pos[i] * step, sizeof(float) * (size_t)width);
    }
}

/* Zero each of n rows (n, width) that holds NaN or inf, and say which did (bad[i] = 1)
 * and how many. A masked pair's weight is exactly 0, but 0 · NaN is NaN: the window's
 * matmuls (P·V forward, dO·Vᵀ backward) must only see finite values, and the forward
 * marks the queries that may see a bad key instead (forward_item). x · 0 is 0 for a finite
 * x and NaN otherwise, so one multiply-add per element, 8 lanes at a time, tells. */
static int64_t zero_bad_rows(float *x, int64_t n, int64_t width, int32_t *bad) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * width;
        vec8 probe = {0};
        int64_t k = 0;
        for (; k + 8 <= width; k += 8) probe += load8(row + k) * 0.0f;
        float total = 0.0f;
        for (int lane = 0; lane < 8; lane++) total += probe[lane];
        for (; k < width; k++) total += row[k] * 0.0f;
        bad[i] = total != total;
        if (bad[i]) {
            memset(row, 0, sizeof(float) * (size_t)width);
            count++;
        }
    }
    return count;
}

/* 1 / max(||row||, eps) of each of n rows (n, dim): F.normalize's scale. */
static void inverse_norms(const float *x, int64_t n, int64_t dim, float *inv) {
    for (int64_t i = 0; i < n; i++) {
        float norm = sqrtf(dot_n(x + i * dim, x + i * dim, dim));
        inv[i] = 1.0f / (norm > NORM_EPS ? norm : NORM_EPS);
    }
}

/* Scratch of one thread, sized for the largest window (c queries, w = 2c keys). */
typedef struct {
    int64_t *kpos;
    float *q, *qs, *k, *ku, *kt, *vw, *vt, *s, *dp, *go, *acc_k, *acc_v, *acc_q;
    float *qstat, *kstat, *log2_count;
    int32_t *qchunk, *kchunk, *count, *key_pos32, *key_dead, *key_bad, *poisoned;
} Scratch;

static int scratch_init(Scratch *w, const Args *a) {
    int64_t c = a->bucket_size, win = 2 * c, D = a->dim, Dv = a->dim_v, R = a->rounds;
    int64_t wide = D > Dv ? D : Dv;
    memset(w, 0, sizeof *w);
    w->kpos = malloc(sizeof(int64_t) * win);
    w->q = malloc(sizeof(float) * c * wide);
    w->qs = malloc(sizeof(float) * c * D);
    w->k = malloc(sizeof(float) * win * D);
    w->ku = malloc(sizeof(float) * win * D);
    w->kt = malloc(sizeof(float) * win * D);
    w->vw = malloc(sizeof(float) * win * Dv);
    w->vt = malloc(sizeof(float) * win * Dv);
    w->s = malloc(sizeof(float) * c * win);
    w->dp = malloc(sizeof(float) * c * win);
    w->go = malloc(sizeof(float) * c * Dv);
    w->acc_k = malloc(sizeof(float) * c * D);
    w->acc_v = malloc(sizeof(float) * c * Dv);
    w->acc_q = malloc(sizeof(float) * c * wide);
    w->qstat = malloc(sizeof(float) * 3 * c);
    w->kstat = malloc(sizeof(float) * win);
    w->log2_count = malloc(sizeof(float) * (3 * R + 2));
    w->qchunk = malloc(sizeof(int32_t) * 2 * R * c);
    w->kchunk = malloc(sizeof(int32_t) * R * win);
    w->count = malloc(sizeof(int32_t) * win);
    w->key_pos32 = malloc(sizeof(int32_t) * win);
    w->key_dead = malloc(sizeof(int32_t) * win);
    w->key_bad = malloc(sizeof(int32_t) * win);
    w->poisoned = malloc(sizeof(int32_t) * c);
    if (!w->kpos || !w->q || !w->qs || !w->k || !w->ku || !w->kt || !w->vw || !w->vt ||
        !w->s || !w->dp || !w->go || !w->acc_k || !w->acc_v || !w->acc_q ||
        !w->qstat || !w->kstat || !w->log2_count || !w->qchunk || !w->kchunk || !w->count || !w->key_pos32 ||
        !w->key_dead || !w->key_bad || !w->poisoned)
        return -1;
    w->log2_count[0] = 0.0f;
    for (int64_t i = 1; i < 3 * R + 2; i++) w->log2_count[i] = log2f((float)i);
    return 0;
}

static void scratch_free(Scratch *w) {
    void *all[] = {w->kpos, w->q, w->qs, w->k, w->ku, w->kt, w->vw, w->vt, w->s,
                   w->dp, w->go, w->acc_k, w->acc_v, w->acc_q, w->qstat, w->kstat,
                   w->log2_count, w->qchunk, w->kchunk, w->count, w->key_pos32, w->key_dead,
                   w->key_bad, w->poisoned};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* Logits s (nq, nk), base 2, of queries qpos against keys kpos, with every mask applied:
 * the self pair gets the self logit; causal, padding and out-of-chunk pairs get -inf; with
 * the duplicate correction each pair is shifted by -log2(count), which divides its weight
 * by the number of times the query sees that key over all its windows (Triton's
 * tile_logits). s holds q̃·k̂ on entry (q̃ = q · scale · log2 e). */
static void mask_logits(const Args *a, Scratch *w, int64_t bh, const int64_t *qpos,
                        int64_t nq, const int64_t *kpos, int64_t nk, float *s, int64_t lds) {
    int64_t b = bh / a->heads, L = a->length, R = a->rounds, total = a->total;
    int32_t *restrict key_pos = w->key_pos32, *restrict key_dead = w->key_dead;
    /* Per key: its position (int32: Lp < 2^31) and whether padding masks it, so the pair
     * loop below is branch-free and vectorises. */
    for (int64_t j = 0; j < nk; j++) {
        key_pos[j] = (int32_t)kpos[j];
        key_dead[j] = a->has_valid ? -(int32_t)!a->valid[b * L + kpos[j]] : 0;
    }
    if (a->counts) {
        const int32_t *chunks = a->chunk_of + bh * R * L;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < nk; j++) w->kchunk[r * nk + j] = chunks[r * L + kpos[j]];
        for (int64_t i = 0; i < nq; i++)
            for (int64_t r = 0; r < R; r++) {
                int32_t own = chunks[r * L + qpos[i]];
                w->qchunk[(i * R + r) * 2] = own;
                w->qchunk[(i * R + r) * 2 + 1] = (int32_t)((own + total - 1) % total);
            }
    }
    int32_t *restrict count = w->count;
    const int32_t causal = a->causal ? -1 : 0;
    for (int64_t i = 0; i < nq; i++) {
        float *restrict row = s + i * lds;
        int32_t qp = (int32_t)qpos[i];
        for (int64_t j = 0; j < nk; j++) {
            int32_t masked = ((key_pos[j] > qp) & causal) | key_dead[j];
            float x = key_pos[j] == qp ? SELF_LOGIT2 : row[j];
            row[j] = masked ? -INFINITY : x;
        }
        if (!a->counts) continue;
        for (int64_t j = 0; j < nk; j++) count[j] = 0;
        for (int64_t r = 0; r < R; r++) {
            int32_t own = w->qchunk[(i * R + r) * 2], back = w->qchunk[(i * R + r) * 2 + 1];
            const int32_t *restrict key = w->kchunk + r * nk;
            const int32_t *restrict key_before = w->kchunk + ((r + R - 1) % R) * nk;
            for (int64_t j = 0; j < nk; j++)
                count[j] += (key[j] == own) + (key[j] == back) + (key_before[j] == back);
        }
        /* Most keys are seen once (log2 1 = 0); log2 of a small count by table. */
        const float *restrict table = w->log2_count;
        for (int64_t j = 0; j < nk; j++) row[j] -= table[count[j]];
    }
}

/* The window of global chunk g: key positions (look-back chunk first), and its width. */
static int64_t window(const Args *a, const int64_t *sort_bh, int64_t g, int64_t *kpos) {
    int64_t c = a->bucket_size;
    if (!a->look_back) {
        memcpy(kpos, sort_bh + g * c, sizeof(int64_t) * c);
        return c;
    }
    int64_t back = (g + a->total - 1) % a->total;
    memcpy(kpos, sort_bh + back * c, sizeof(int64_t) * c);
    memcpy(kpos + c, sort_bh + g * c, sizeof(int64_t) * c);
    return 2 * c;
}

/* One forward work item: queries of global chunk g of (batch·head) bh, merged into the
 * running (out, max, sum) at their positions. */
static void forward_item(const Args *a, Scratch *w, int64_t bh, int64_t g, int first) {
    int64_t c = a->bucket_size, D = a->dim, Dv = a->dim_v, L = a->length;
    int64_t b = bh / a->heads, h = bh % a->heads;
    const int64_t *sort_bh = a->sort + bh * a->rounds * L;
    const float *qk = a->qk + b * a->qk_sb + h * a->qk_sh;
    const float *v = a->v + b * a->v_sb + h * a->v_sh;
    const float log2e_scale = a->scale * 1.4426950408889634f;
    int64_t win = window(a, sort_bh, g, w->kpos);
    const int64_t *qpos = w->kpos + (win - c); /* the own chunk: queries and keys */
    gather(qk, a->qk_sl, w->kpos, win, D, w->k);
    inverse_norms(w->k, win, D, w->kstat);
    const float *own = w->k + (win - c) * D;
    for (int64_t i = 0; i < c * D; i++) w->qs[i] = own[i] * log2e_scale;
    transpose(w->k, win, D, D, w->kstat, w->kt, win);
    gather(v, a->v_sl, w->kpos, win, Dv, w->vw);
    int64_t n_bad = zero_bad_rows(w->vw, win, Dv, w->key_bad);
    gemm(c, win, D, w->qs, D, w->kt, win, w->s, win, 0);
    mask_logits(a, w, bh, qpos, c, w->kpos, win, w->s, win);
    /* A query that may see a key whose v held NaN or inf (a pair the masks leave visible:
     * mask_logits' key_pos32 and key_dead) gets NaN in its whole row. */
    for (int64_t i = 0; i < c; i++) {
        int32_t hit = 0, qp = (int32_t)qpos[i];
        for (int64_t j = 0; n_bad && j < win; j++) {
            int32_t masked = (a->causal && w->key_pos32[j] > qp) || w->key_dead[j];
            hit |= w->key_bad[j] && !masked;
        }
        w->poisoned[i] = hit;
    }
    float *m = w->qstat, *sum = w->qstat + c;
    for (int64_t i = 0; i < c; i++) {
        float *row = w->s + i * win;
        float mx = max_n(row, win, ROW_MAX_FLOOR);
        m[i] = mx;
        sum[i] = exp2_row(row, win, mx, 1.0f);
    }
    gemm(c, Dv, win, w->s, win, w->vw, Dv, w->acc_q, Dv, 0);
    for (int64_t i = 0; n_bad && i < c; i++)
        if (w->poisoned[i])
            for (int64_t k = 0; k < Dv; k++) w->acc_q[i * Dv + k] = NAN;
    float *out = a->out + b * a->out_sb + h * a->out_sh;
    float *run_max = a->row_max + bh * L, *run_sum = a->row_sum + bh * L;
    for (int64_t i = 0; i < c; i++) {
        int64_t p = qpos[i];
        float *o = out + p * a->out_sl, *part = w->acc_q + i * Dv;
        float inv = sum[i] > 0.0f ? 1.0f / sum[i] : 0.0f;
        if (first) {
            for (int64_t k = 0; k < Dv; k++) o[k] = part[k] * inv;
            run_max[p] = m[i];
            run_sum[p] = sum[i];
            continue;
        }
        /* Running merge of normalised round outputs (torch_path/function.py, _merge_round). */
        float new_max = run_max[p] > m[i] ? run_max[p] : m[i];
        float old_part = run_sum[p] * exp2f(run_max[p] - new_max);
        float new_part = sum[i] * exp2f(m[i] - new_max);
        float new_sum = old_part + new_part;
        run_max[p] = new_max;
        run_sum[p] = new_sum;
        if (new_part == 0.0f && !w->poisoned[i]) continue;
        float weight = new_part / new_sum;
        for (int64_t k = 0; k < Dv; k++) o[k] += (part[k] * inv - o[k]) * weight;
    }
}

/* One query tile of a backward item: the queries of chunk gq (raw rows q, (c, D)) against
 * the key chunk at w->kpos (unit rows w->ku and w->kt, values w->vt). Accumulates dK̂
 * (unscaled) and dV of the keys, and adds this tile's dQ to grad_q at the queries. */
static void backward_tile(const Args *a, Scratch *w, int64_t bh, int64_t gq, const float *q) {
    int64_t c = a->bucket_size, D = a->dim, Dv = a->dim_v, L = a->length;
    int64_t b = bh / a->heads, h = bh % a->heads;
    const int64_t *qpos = a->sort + bh * a->rounds * L + gq * c;
    const float *go = a->grad_out + b * a->go_sb + h * a->go_sh;
    const float log2e_scale = a->scale * 1.4426950408889634f;
    for (int64_t i = 0; i < c * D; i++) w->qs[i] = q[i] * log2e_scale;
    gather(go, a->go_sl, qpos, c, Dv, w->go);
    float *m = w->qstat, *inv = w->qstat + c, *delta = w->qstat + 2 * c;
    for (int64_t i = 0; i < c; i++) {
        m[i] = a->row_max[bh * L + qpos[i]];
        inv[i] = a->inv_sum[bh * L + qpos[i]];
        delta[i] = a->delta[bh * L + qpos[i]];
    }
    /* P = 2^(s - max) / sum */
    gemm(c, c, D, w->qs, D, w->kt, c, w->s, c, 0);
    mask_logits(a, w, bh, qpos, c, w->kpos, c, w->s, c);
    for (int64_t i = 0; i < c; i++) exp2_row(w->s + i * c, c, m[i], inv[i]);
    /* dV += Pᵀ dO */
    gemm_tn_acc(c, Dv, c, w->s, c, w->go, Dv, w->acc_v, Dv);
    /* dS = P (dO Vᵀ - delta), 0 at the constant self logit */
    gemm(c, c, Dv, w->go, Dv, w->vt, c, w->dp, c, 0);
    for (int64_t i = 0; i < c; i++) {
        int64_t qp = qpos[i];
        for (int64_t j = 0; j < c; j++) {
            float g = w->s[i * c + j] * (w->dp[i * c + j] - delta[i]);
            w->dp[i * c + j] = qp == w->kpos[j] ? 0.0f : g;
        }
    }
    /* dK̂ += dSᵀ q ; dQ = dS k̂ (the 1/sqrt(D) of both is applied when they are stored) */
    gemm_tn_acc(c, D, c, w->dp, c, q, D, w->acc_k, D);
    gemm(c, D, c, w->dp, c, w->ku, D, w->acc_q, D, 0);
    float *grad_q = a->grad_q + b * a->gq_sb + h * a->gq_sh;
    for (int64_t i = 0; i < c; i++) {
        float *dst = grad_q + qpos[i] * a->gq_sl, *src = w->acc_q + i * D;
        for (int64_t k = 0; k < D; k++) dst[k] += src[k] * a->scale;
    }
}

/* One backward work item: the keys of global chunk g, against the queries that see them
 * (chunk g, and chunk g+1 whose look-back chunk g is). Writes dK̂ and dV of the keys (this
 * item alone holds them in this round) and adds dQ to chunks g and g+1. */
static void backward_item(const Args *a, Scratch *w, int64_t bh, int64_t g) {
    int64_t c = a->bucket_size, D = a->dim, Dv = a->dim_v, L = a->length;
    int64_t b = bh / a->heads, h = bh % a->heads;
    const int64_t *sort_bh = a->sort + bh * a->rounds * L;
    const float *qk = a->qk + b * a->qk_sb + h * a->qk_sh;
    const float *v = a->v + b * a->v_sb + h * a->v_sh;
    memcpy(w->kpos, sort_bh + g * c, sizeof(int64_t) * c);
    gather(qk, a->qk_sl, w->kpos, c, D, w->k);
    inverse_norms(w->k, c, D, w->kstat);
    for (int64_t j = 0; j < c; j++)
        for (int64_t d = 0; d < D; d++) w->ku[j * D + d] = w->k[j * D + d] * w->kstat[j];
    transpose(w->k, c, D, D, w->kstat, w->kt, c);
    gather(v, a->v_sl, w->kpos, c, Dv, w->vw);
    zero_bad_rows(w->vw, c, Dv, w->key_bad); /* dP = dO·Vᵀ of finite values (forward_item) */
    transpose(w->vw, c, Dv, Dv, NULL, w->vt, c);
    memset(w->acc_k, 0, sizeof(float) * c * D);
    memset(w->acc_v, 0, sizeof(float) * c * Dv);
    /* The own tile's queries are the keys' own rows. */
    backward_tile(a, w, bh, g, w->k);
    if (a->look_back) {
        int64_t next = (g + 1) % a->total;
        gather(qk, a->qk_sl, sort_bh + next * c, c, D, w->q);
        backward_tile(a, w, bh, next, w->q);
    }
    /* dk̂ reaches qk through k̂ = x / max(||x||, eps), a linear map per row, so each item's
     * share goes straight to grad_qk (F.normalize's backward: (g - k̂ (k̂·g)) / max(||x||,
     * eps), the radial term dropped where ||x|| <= eps) and no dk̂ buffer is needed. */
    float *grad_qk = a->grad_q + b * a->gq_sb + h * a->gq_sh;
    float *grad_v = a->grad_v + b * a->gv_sb + h * a->gv_sh;
    for (int64_t j = 0; j < c; j++) {
        float *gk = w->acc_k + j * D, *unit = w->ku + j * D;
        float inv = w->kstat[j];
        float radial = inv < 1.0f / NORM_EPS ? dot_n(unit, gk, D) : 0.0f;
        float *dst = grad_qk + w->kpos[j] * a->gq_sl, *dv = grad_v + w->kpos[j] * a->gv_sl;
        for (int64_t k = 0; k < D; k++) dst[k] += (gk[k] - unit[k] * radial) * (inv * a->scale);
        for (int64_t k = 0; k < Dv; k++) dv[k] += w->acc_v[j * Dv + k];
    }
}

/* Run items (bh, n) for bh in [0, B·H) and n = first, first + step, ... < stop (chunks of
 * round `rnd`), claimed one at a time from *next. Call it from several threads at once
 * with the same counter. Returns 0, or -1 when scratch memory could not be allocated. */
int lsh_cpu_run(const Args *a, int backward, int64_t rnd, int64_t first, int64_t step,
                int64_t stop, int64_t *next) {
    Scratch w;
    if (scratch_init(&w, a)) {
        scratch_free(&w);
        return -1;
    }
    int64_t per_head = first < stop ? (stop - first + step - 1) / step : 0;
    int64_t items = a->batch * a->heads * per_head;
    for (;;) {
        int64_t item = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
        if (item >= items) break;
        int64_t bh = item / per_head, n = first + (item % per_head) * step;
        int64_t g = rnd * a->chunks_per_round + n;
        if (backward)
            backward_item(a, &w, bh, g);
        else
            forward_item(a, &w, bh, g, rnd == 0);
    }
    scratch_free(&w);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * The fused decoding step (reformer.decode, LSHCache.step): one new position of one layer,
 * for every (batch row, head), in one call. The twin of LSHCache's torch step (buckets,
 * key_positions, attend, store), with the same key set:
 *
 *     K(t) = W(t) ∪ ⋃_r M_r(t), each key once, plus the position itself (self logit)
 *
 * and two rewritings of the same arithmetic that need no key or value recomputed:
 *
 * - a key's logit q · (x_s W_h) / ||x_s W_h|| is (x_s · u_h) / ||x_s W_h|| with
 *   u_h = W_h q (d_model), and 1 / ||x_s W_h|| is kept per cached position and head
 *   (``inv_norms``, written when the position is stored);
 * - the output Σ_s p_s (x_s V_h) is (Σ_s p_s x_s) V_h: one (d_model)·(d_model, d_head)
 *   product per head whatever the number of keys.
 *
 * So a key costs two d_model-long passes over its cached input, and nothing else.
 * Logits and weights in float32, as the torch step's; exp by expf. */
#define MAX_FACTORS 8
/* Key rows whose misses a step overlaps (prefetched this many keys ahead). */
#define DECODE_PREFETCH 6
#define SELF_LOGIT (-1e5f) /* natural base, as reformer.lsh.layout.SELF_LOGIT */

typedef struct {
    int64_t batch, heads, d_head, d_model, rounds, bucket_size, width, n_buckets;
    int64_t capacity, t, n_factors;
    int64_t factors[MAX_FACTORS];
    float scale; /* 1 / sqrt(d_head) */
    const float *x;          /* (B, d_model) dense: the new position's normalised input */
    const float *weights;    /* (H, d_model, 2·d_head) dense: [qk | v] projections per head */
    const float *qk_weights_t; /* (H, d_head, d_model) dense: the qk projections, transposed */
    const float *rotations;  /* (H, d_head, R, width) dense */
    const int64_t *given;    /* (B, H, R) dense buckets of the new position, or NULL: hash */
    const int64_t *first;    /* (B,) first real slot per row, or NULL: all 0 */
    float *inputs;           /* (B, capacity, d_model) dense */
    float *inv_norms;        /* (B, capacity, H) dense */
    int32_t *table;          /* (B, H, R, n_buckets, bucket_size) dense */
    int64_t *counts;         /* (B, H, R, n_buckets) dense */
    float *out;              /* (B, d_model) dense: head h at [h·d_head, (h+1)·d_head) */
    float *qvu;              /* (B, H, 2·d_head + d_model) dense scratch: [qk | v | u] */
    int64_t *keys_out;       /* (B, H, (R+1)·bucket_size) dense, -1 padded, or NULL */
    int64_t *buckets_out;    /* (B, H, R) dense, or NULL */
} DecodeArgs;

/* dot_n with four independent accumulators, for long rows: one accumulator makes every
 * FMA wait for the one before it. */
static inline float dot_long(const float *x, const float *y, int64_t n) {
    vec8 acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 += load8(x + i) * load8(y + i);
        acc1 += load8(x + i + 8) * load8(y + i + 8);
        acc2 += load8(x + i + 16) * load8(y + i + 16);
        acc3 += load8(x + i + 24) * load8(y + i + 24);
    }
    vec8 acc = (acc0 + acc1) + (acc2 + acc3);
    float total = 0.0f;
    for (int k = 0; k < 8; k++) total += acc[k];
    return total + dot_n(x + i, y + i, n - i);
}

static int compare_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* The bucket of q (d_head) in round r of head h: argmax([qR; -qR]) per factor, first
 * extremum on ties (hashing._argmax_buckets), mixed radix. */
static int64_t hash_one(const DecodeArgs *a, const float *q, int64_t h, int64_t r,
                        float *rotated) {
    int64_t D = a->d_head, R = a->rounds, W = a->width;
    for (int64_t w = 0; w < W; w++) rotated[w] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
        const float *row = a->rotations + ((h * D + d) * R + r) * W;
        float qd = q[d];
        for (int64_t w = 0; w < W; w++) rotated[w] += qd * row[w];
    }
    int64_t bucket = 0, radix = 1, offset = 0;
    for (int64_t f = 0; f < a->n_factors; f++) {
        int64_t half = a->factors[f] / 2, top_idx = 0, low_idx = 0;
        float top = rotated[offset], low = rotated[offset];
        for (int64_t w = 1; w < half; w++) {
            float value = rotated[offset + w];
            if (value > top) top = value, top_idx = w;
            if (value < low) low = value, low_idx = w;
        }
        bucket += radix * (top >= -low ? top_idx : low_idx + half);
        offset += half;
        radix *= a->factors[f];
    }
    return bucket;
}

/* One item: head h of batch row b. Reads only its own (b, h) rows of the table and
 * counts, and cached inputs before t; writes its own table row, count, norm and output
 * slice, and (h = 0) the new input row, which no item reads. So items are independent. */
static void decode_item(const DecodeArgs *a, int64_t b, int64_t h, float *scratch,
                        int64_t *keys, int64_t *bucket) {
    int64_t H = a->heads, D = a->d_head, M = a->d_model, R = a->rounds;
    int64_t c = a->bucket_size, NB = a->n_buckets, cap = a->capacity, t = a->t;
    int64_t most = (R + 1) * c;
    float *y = scratch, *rotated = y + M, *logit = rotated + a->width;
    const float *x = a->x + b * M;
    const float *inputs_b = a->inputs + b * cap * M;
    const float *norms_b = a->inv_norms + b * cap * H;
    int64_t first = a->first ? a->first[b] : 0;
    int64_t window_start = t - c > first ? t - c : first;
    const float *w_h = a->weights + h * M * 2 * D;
    const float *qvu = a->qvu + (b * H + h) * (2 * D + M); /* lsh_cpu_decode_project's */
    const float *q = qvu, *v = qvu + D, *u = qvu + 2 * D;
    float norm = sqrtf(dot_n(q, q, D));
    float inv_norm = 1.0f / (norm > NORM_EPS ? norm : NORM_EPS);
    for (int64_t r = 0; r < R; r++) {
        bucket[r] = a->given ? a->given[(b * H + h) * R + r] : hash_one(a, q, h, r, rotated);
        if (a->buckets_out) a->buckets_out[(b * H + h) * R + r] = bucket[r];
    }
    /* The key set: bucket-mates older than the window, each once, then the window. */
    int64_t n = 0;
    int32_t *table_bh = a->table + (b * H + h) * R * NB * c;
    for (int64_t r = 0; r < R; r++) {
        const int32_t *mates = table_bh + (r * NB + bucket[r]) * c;
        for (int64_t k = 0; k < c; k++)
            if (mates[k] >= 0 && mates[k] < window_start) keys[n++] = mates[k];
    }
    if (R > 1 && n > 1) {
        qsort(keys, (size_t)n, sizeof(int64_t), compare_desc);
        int64_t kept = 1;
        for (int64_t k = 1; k < n; k++)
            if (keys[k] != keys[kept - 1]) keys[kept++] = keys[k];
        n = kept;
    }
    for (int64_t s = t - 1; s >= window_start; s--) keys[n++] = s;
    for (int64_t k = 0; k < n && k < DECODE_PREFETCH; k++) /* the first rows' misses */
        __builtin_prefetch(inputs_b + keys[k] * M);
    if (a->keys_out) {
        int64_t *dst = a->keys_out + (b * H + h) * most;
        for (int64_t k = 0; k < most; k++) dst[k] = k < n ? keys[k] : -1;
    }
    /* Logits (x_s · u) / ||x_s W_h|| · scale, the self logit, one softmax. */
    float best = SELF_LOGIT;
    for (int64_t k = 0; k < n; k++) {
        if (k + DECODE_PREFETCH < n) { /* rows lie anywhere: overlap their misses */
            const char *ahead = (const char *)(inputs_b + keys[k + DECODE_PREFETCH] * M);
            for (int64_t byte = 0; byte < M * 4; byte += 64) __builtin_prefetch(ahead + byte);
        }
        float l = dot_long(inputs_b + keys[k] * M, u, M) * norms_b[keys[k] * H + h] * a->scale;
        logit[k] = l;
        best = l > best ? l : best;
    }
    float self = expf(SELF_LOGIT - best), total = self;
    for (int64_t k = 0; k < n; k++) {
        logit[k] = expf(logit[k] - best);
        total += logit[k];
    }
    /* y = Σ p_s x_s, four keys per pass over y */
    for (int64_t i = 0; i < M; i++) y[i] = 0.0f;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        const float *r0 = inputs_b + keys[k] * M, *r1 = inputs_b + keys[k + 1] * M;
        const float *r2 = inputs_b + keys[k + 2] * M, *r3 = inputs_b + keys[k + 3] * M;
        float p0 = logit[k], p1 = logit[k + 1], p2 = logit[k + 2], p3 = logit[k + 3];
        for (int64_t i = 0; i < M; i++) y[i] += (p0 * r0[i] + p1 * r1[i]) + (p2 * r2[i] + p3 * r3[i]);
    }
    for (; k < n; k++) {
        const float *row = inputs_b + keys[k] * M;
        float p = logit[k];
        for (int64_t i = 0; i < M; i++) y[i] += p * row[i];
    }
    /* out_h = (y V_h + p_self v) / total */
    float *out = a->out + b * M + h * D;
    for (int64_t d = 0; d < D; d++) out[d] = self * v[d];
    for (int64_t i = 0; i < M; i++) {
        const float *row = w_h + i * 2 * D + D;
        float yi = y[i];
        for (int64_t d = 0; d < D; d++) out[d] += yi * row[d];
    }
    float inv_total = 1.0f / total;
    for (int64_t d = 0; d < D; d++) out[d] *= inv_total;
    /* Store the new position: its norm, its place in each round's ring, its input. */
    a->inv_norms[(b * cap + t) * H + h] = inv_norm;
    for (int64_t r = 0; r < R; r++) {
        int64_t *count = a->counts + ((b * H + h) * R + r) * NB + bucket[r];
        table_bh[(r * NB + bucket[r]) * c + *count % c] = (int32_t)t;
        *count += 1;
    }
    if (h == 0) memcpy(a->inputs + (b * cap + t) * M, x, sizeof(float) * (size_t)M);
}

/* The step's projections, before its items: for every (b, h), [qk | v] = x_b W_h and
 * u = W_h qk (d_model), into qvu. Head by head, every row's products are taken in one
 * pass over the head's weights (so a batch reads them once, not once per row). */
void lsh_cpu_decode_project(const DecodeArgs *a) {
    int64_t B = a->batch, H = a->heads, D = a->d_head, M = a->d_model, width = 2 * D + M;
    for (int64_t h = 0; h < H; h++) {
        const float *w_h = a->weights + h * M * 2 * D, *wt_h = a->qk_weights_t + h * D * M;
        for (int64_t b = 0; b < B; b++)
            memset(a->qvu + (b * H + h) * width, 0, sizeof(float) * (size_t)width);
        for (int64_t i = 0; i < M; i++) {
            const float *row = w_h + i * 2 * D;
            for (int64_t b = 0; b < B; b++) {
                float *qv = a->qvu + (b * H + h) * width, xi = a->x[b * M + i];
                for (int64_t j = 0; j < 2 * D; j++) qv[j] += xi * row[j];
            }
        }
        for (int64_t d = 0; d < D; d++) {
            const float *row = wt_h + d * M;
            for (int64_t b = 0; b < B; b++) {
                float *qvu = a->qvu + (b * H + h) * width, qd = qvu[d], *u = qvu + 2 * D;
                for (int64_t i = 0; i < M; i++) u[i] += qd * row[i];
            }
        }
    }
}

/* Run items (b, h), b·H + h < B·H, claimed one at a time from *next: call it from several
 * threads at once with the same counter. Returns 0, or -1 when scratch memory could not be
 * allocated (this thread then claims nothing). */
int lsh_cpu_decode_step(const DecodeArgs *a, int64_t *next) {
    int64_t most = (a->rounds + 1) * a->bucket_size, M = a->d_model;
    float *scratch = malloc(sizeof(float) * (M + a->width + most));
    int64_t *keys = malloc(sizeof(int64_t) * most);
    int64_t *bucket = malloc(sizeof(int64_t) * (a->rounds > 0 ? a->rounds : 1));
    int code = 0;
    if (!scratch || !keys || !bucket) {
        code = -1;
    } else {
        for (;;) {
            int64_t item = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
            if (item >= a->batch * a->heads) break;
            decode_item(a, item / a->heads, item % a->heads, scratch, keys, bucket);
        }
    }
    free(scratch), free(keys), free(bucket);
    return code;
}
