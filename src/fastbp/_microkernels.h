/* Small-batch GEMM kernels for fastbp, used by _kernels.pyx.
 *
 * With mini-batches of a few rows, BLAS spends more time packing operands and
 * dispatching than multiplying. These two kernels cover the two big products
 * of a small-batch step, register-blocked for AVX2 + FMA:
 *
 *   fbp_*gemm_nt:  Z (m, n) = A (m, k) . W^T       W of shape (n, k)
 *   fbp_*ger:      C (r, c) = beta C + P (r, m) . A (m, c)
 *
 * The AVX2 code is compiled with a per-function target attribute and chosen
 * at run time (fbp_have_avx2), so the build stays portable: no -march flags.
 * Where AVX2/FMA is missing the caller uses BLAS instead.
 */
#ifndef FASTBP_MICROKERNELS_H
#define FASTBP_MICROKERNELS_H

#include <math.h>
#include <stddef.h>

/* Bytes of each row that one cache block covers: a block of a 10-row batch
   (20 KiB) and of the rows it meets stays in a 32-48 KiB L1. */
#define FBP_CHUNK_BYTES 2048

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FBP_X86 1
#include <immintrin.h>
#else
#define FBP_X86 0
#endif

static int fbp_have_avx2(void)
{
#if FBP_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Flush-to-zero and denormals-are-zero for the calling thread, for the
   update passes of the adaptive rules: without them, the moments of units
   whose gradients have died away decay through the subnormal range, where
   every operation takes a slow microcode path. fbp_flush_denormals returns
   the previous control word, for fbp_restore_csr. */
static inline unsigned fbp_flush_denormals(void)
{
#if FBP_X86
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);      /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

static inline void fbp_restore_csr(unsigned old)
{
#if FBP_X86
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

/* Scalar edges, in the same order of summation as the vector bodies' tails. */
#define FBP_SCALAR(T, S)                                                       \
static void fbp_##S##gemm_nt_edge(int i0, int i1, int j0, int j1, int k,      \
                                  const T *A, const T *W, T *Z, int n)        \
{                                                                              \
    for (int i = i0; i < i1; i++)                                              \
        for (int j = j0; j < j1; j++) {                                        \
            const T *a = A + (size_t)i * k, *w = W + (size_t)j * k;            \
            T total = 0;                                                       \
            for (int p = 0; p < k; p++)                                        \
                total += a[p] * w[p];                                          \
            Z[(size_t)i * n + j] = total;                                      \
        }                                                                      \
}                                                                              \
static void fbp_##S##ger_edge(int r0, int r1, int c0, int c1, int m, int c,    \
                              const T *P, const T *A, T beta, T *C)           \
{                                                                              \
    for (int r = r0; r < r1; r++)                                              \
        for (int q = c0; q < c1; q++) {                                        \
            T total = beta == 0 ? 0 : beta * C[(size_t)r * c + q];             \
            for (int i = 0; i < m; i++)                                        \
                total += P[(size_t)r * m + i] * A[(size_t)i * c + q];          \
            C[(size_t)r * c + q] = total;                                      \
        }                                                                      \
}

FBP_SCALAR(double, d)
FBP_SCALAR(float, s)

#if FBP_X86

/* Vector bodies for one element type: VT vector type, L lanes. */
/* One register block of the nt product over the k-range [p0, p1): R rows of
   A against C rows of W, R x C accumulators (R <= 4, C <= 3; 4 x 3 = 12 of the
   16 vector registers, 7 loads per 12 FMAs). Always inlined with constant R
   and C, so the arrays live in registers. Every element is summed in the same
   order whatever block it falls in: results do not depend on m or n. */
#define FBP_NT_BLOCK(T, S, VT, L, LOADU, FMADD, ZERO, HSUM)                    \
__attribute__((target("avx2,fma"), always_inline))                             \
static inline void fbp_##S##nt_block(const int R, const int C, int p0, int pv, \
                                     int p1, int k, int n, int first,          \
                                     const T *A, const T *W, T *Z)             \
{                                                                              \
    VT c[4][3];                                                                \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                        \
        _Pragma("GCC unroll 3") for (int q = 0; q < C; q++) c[r][q] = ZERO();  \
    for (int p = p0; p < pv; p += L) {                                         \
        VT x[3];                                                               \
        _Pragma("GCC unroll 3") for (int q = 0; q < C; q++)                    \
            x[q] = LOADU(W + (size_t)q * k + p);                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                  \
            VT y = LOADU(A + (size_t)r * k + p);                               \
            _Pragma("GCC unroll 3") for (int q = 0; q < C; q++)                \
                c[r][q] = FMADD(y, x[q], c[r][q]);                             \
        }                                                                      \
    }                                                                          \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                        \
        _Pragma("GCC unroll 3") for (int q = 0; q < C; q++) {                  \
            const T *a = A + (size_t)r * k, *w = W + (size_t)q * k;            \
            T total = HSUM(c[r][q]);                                           \
            for (int p = pv; p < p1; p++)                                      \
                total += a[p] * w[p];                                          \
            T *z = Z + (size_t)r * n + q;                                      \
            *z = first ? total : *z + total;                                   \
        }                                                                      \
}                                                                              \
                                                                               \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##gemm_nt(int m, int n, int k, const T *A, const T *W,      \
                             T *Z)                                             \
{                                                                              \
    /* k is cut into chunks of FBP_CHUNK_BYTES per row, so that the chunk of   \
       A and of W stay in L1 while every register block passes over them.    \
       Partial sums go through Z between chunks. */                           \
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    for (int p0 = 0; p0 < k; p0 += chunk) {                                    \
        int p1 = p0 + chunk < k ? p0 + chunk : k;                              \
        int pv = p1 - (p1 - p0) % L, first = p0 == 0;                          \
        for (int j = 0; j < n; j += 3) {                                       \
            int cols = n - j < 3 ? n - j : 3;                                  \
            const T *w = W + (size_t)j * k;                                    \
            for (int i = 0; i < m; i += 4) {                                   \
                int rows = m - i < 4 ? m - i : 4;                              \
                const T *a = A + (size_t)i * k;                                \
                T *z = Z + (size_t)i * n + j;                                  \
                switch (rows * 4 + cols) {                                     \
                case 4 * 4 + 3: fbp_##S##nt_block(4, 3, p0, pv, p1, k, n, first, a, w, z); break; \
                case 4 * 4 + 2: fbp_##S##nt_block(4, 2, p0, pv, p1, k, n, first, a, w, z); break; \
                case 4 * 4 + 1: fbp_##S##nt_block(4, 1, p0, pv, p1, k, n, first, a, w, z); break; \
                case 3 * 4 + 3: fbp_##S##nt_block(3, 3, p0, pv, p1, k, n, first, a, w, z); break; \
                case 3 * 4 + 2: fbp_##S##nt_block(3, 2, p0, pv, p1, k, n, first, a, w, z); break; \
                case 3 * 4 + 1: fbp_##S##nt_block(3, 1, p0, pv, p1, k, n, first, a, w, z); break; \
                case 2 * 4 + 3: fbp_##S##nt_block(2, 3, p0, pv, p1, k, n, first, a, w, z); break; \
                case 2 * 4 + 2: fbp_##S##nt_block(2, 2, p0, pv, p1, k, n, first, a, w, z); break; \
                case 2 * 4 + 1: fbp_##S##nt_block(2, 1, p0, pv, p1, k, n, first, a, w, z); break; \
                case 1 * 4 + 3: fbp_##S##nt_block(1, 3, p0, pv, p1, k, n, first, a, w, z); break; \
                case 1 * 4 + 2: fbp_##S##nt_block(1, 2, p0, pv, p1, k, n, first, a, w, z); break; \
                default:        fbp_##S##nt_block(1, 1, p0, pv, p1, k, n, first, a, w, z); break; \
                }                                                              \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}

/* The small-batch update product, for one element type: VT vector type, L lanes. */
#define FBP_VECTOR(T, S, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO)         \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##ger(int rows, int cols, int m, const T *P, const T *A,    \
                         T beta, T *C)                                         \
{                                                                              \
    /* Columns are cut into chunks of FBP_CHUNK_BYTES per row of A, so the   \
       chunk of A stays in L1 while every block of rows of C passes over it;  \
       within a chunk: 4 rows of C x 2 vectors = 8 accumulators over all m. */\
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    int cv = cols - cols % (2 * L), r;                                         \
    VT vbeta = SET1(beta);                                                     \
    for (int q0 = 0; q0 < cv; q0 += chunk) {                                   \
    int q1 = q0 + chunk < cv ? q0 + chunk : cv;                                \
    for (r = 0; r + 4 <= rows; r += 4) {                                       \
        const T *p0 = P + (size_t)r * m, *p1 = p0 + m, *p2 = p1 + m,           \
                *p3 = p2 + m;                                                  \
        T *d0 = C + (size_t)r * cols, *d1 = d0 + cols, *d2 = d1 + cols,        \
          *d3 = d2 + cols;                                                     \
        for (int q = q0; q < q1; q += 2 * L) {                                 \
            VT c00, c01, c10, c11, c20, c21, c30, c31;                         \
            if (beta == 0) {                                                   \
                c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = ZERO();        \
            } else {                                                           \
                c00 = MUL(vbeta, LOADU(d0 + q)); c01 = MUL(vbeta, LOADU(d0 + q + L)); \
                c10 = MUL(vbeta, LOADU(d1 + q)); c11 = MUL(vbeta, LOADU(d1 + q + L)); \
                c20 = MUL(vbeta, LOADU(d2 + q)); c21 = MUL(vbeta, LOADU(d2 + q + L)); \
                c30 = MUL(vbeta, LOADU(d3 + q)); c31 = MUL(vbeta, LOADU(d3 + q + L)); \
            }                                                                  \
            for (int i = 0; i < m; i++) {                                      \
                const T *a = A + (size_t)i * cols + q;                         \
                VT x0 = LOADU(a), x1 = LOADU(a + L), g;                        \
                g = SET1(p0[i]); c00 = FMADD(g, x0, c00); c01 = FMADD(g, x1, c01); \
                g = SET1(p1[i]); c10 = FMADD(g, x0, c10); c11 = FMADD(g, x1, c11); \
                g = SET1(p2[i]); c20 = FMADD(g, x0, c20); c21 = FMADD(g, x1, c21); \
                g = SET1(p3[i]); c30 = FMADD(g, x0, c30); c31 = FMADD(g, x1, c31); \
            }                                                                  \
            STOREU(d0 + q, c00); STOREU(d0 + q + L, c01);                      \
            STOREU(d1 + q, c10); STOREU(d1 + q + L, c11);                      \
            STOREU(d2 + q, c20); STOREU(d2 + q + L, c21);                      \
            STOREU(d3 + q, c30); STOREU(d3 + q + L, c31);                      \
        }                                                                      \
    }                                                                          \
    for (; r < rows; r++) {                                                    \
        const T *p0 = P + (size_t)r * m;                                       \
        T *d0 = C + (size_t)r * cols;                                          \
        for (int q = q0; q < q1; q += 2 * L) {                                 \
            VT c00 = beta == 0 ? ZERO() : MUL(vbeta, LOADU(d0 + q));           \
            VT c01 = beta == 0 ? ZERO() : MUL(vbeta, LOADU(d0 + q + L));       \
            for (int i = 0; i < m; i++) {                                      \
                const T *a = A + (size_t)i * cols + q;                         \
                VT g = SET1(p0[i]);                                            \
                c00 = FMADD(g, LOADU(a), c00);                                 \
                c01 = FMADD(g, LOADU(a + L), c01);                             \
            }                                                                  \
            STOREU(d0 + q, c00); STOREU(d0 + q + L, c01);                      \
        }                                                                      \
    }                                                                          \
    }                                                                          \
    if (cv < cols)                                                             \
        fbp_##S##ger_edge(0, rows, cv, cols, m, cols, P, A, beta, C);          \
}

__attribute__((target("avx2,fma")))
static inline double fbp_hsum_pd(__m256d v)
{
    __m128d low = _mm256_castpd256_pd128(v), high = _mm256_extractf128_pd(v, 1);
    low = _mm_add_pd(low, high);
    return _mm_cvtsd_f64(_mm_add_sd(low, _mm_unpackhi_pd(low, low)));
}

__attribute__((target("avx2,fma")))
static inline float fbp_hsum_ps(__m256 v)
{
    __m128 low = _mm256_castps256_ps128(v), high = _mm256_extractf128_ps(v, 1);
    low = _mm_add_ps(low, high);
    low = _mm_add_ps(low, _mm_movehl_ps(low, low));
    return _mm_cvtss_f32(_mm_add_ss(low, _mm_shuffle_ps(low, low, 0x55)));
}

FBP_NT_BLOCK(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_fmadd_pd,
             _mm256_setzero_pd, fbp_hsum_pd)
FBP_NT_BLOCK(float, s, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps,
             _mm256_setzero_ps, fbp_hsum_ps)
FBP_VECTOR(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
           _mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_setzero_pd)
FBP_VECTOR(float, s, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
           _mm256_fmadd_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps)

/* exp for x <= 0 (all that the sigmoid needs), lane-wise: x = k ln2 + r with
   |r| <= ln2/2, exp(r) by its Taylor series to the term below half an ulp,
   2^k applied in two halves so that subnormal results come out right and
   x < -745 gives 0. NaN lanes stay NaN. */
__attribute__((target("avx2,fma")))
static inline __m256d fbp_exp_neg_pd(__m256d x)
{
    const __m256d log2e = _mm256_set1_pd(1.4426950408889634);
    const __m256d ln2_hi = _mm256_set1_pd(6.93147180369123816490e-01);
    const __m256d ln2_lo = _mm256_set1_pd(1.90821492927058770002e-10);
    x = _mm256_max_pd(_mm256_set1_pd(-760.0), x);   /* NaN x stays NaN */
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, log2e),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, ln2_hi, x);
    r = _mm256_fnmadd_pd(k, ln2_lo, r);
    /* 1 + r + r^2/2! + ... + r^13/13!, Horner */
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 479001600.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 39916800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 3628800.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 362880.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 40320.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 5040.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 720.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 120.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 24.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 6.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    /* 2^k = 2^h 2^(k-h), h = trunc(k/2): each factor a normal double */
    __m256d h = _mm256_round_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5)),
                                _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m128i hi = _mm256_cvtpd_epi32(h), lo = _mm256_cvtpd_epi32(_mm256_sub_pd(k, h));
    __m256i bias = _mm256_set1_epi64x(1023);
    __m256d s1 = _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(hi), bias), 52));
    __m256d s2 = _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(lo), bias), 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
}

__attribute__((target("avx2,fma")))
static inline __m256 fbp_exp_neg_ps(__m256 x)
{
    const __m256 log2e = _mm256_set1_ps(1.44269504f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f);
    const __m256 ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);  /* NaN x stays NaN */
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, log2e),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, ln2_hi, x);
    r = _mm256_fnmadd_ps(k, ln2_lo, r);
    /* 1 + r + ... + r^8/8!, Horner */
    __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256 h = _mm256_round_ps(_mm256_mul_ps(k, _mm256_set1_ps(0.5f)),
                               _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(h), bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_sub_ps(k, h)), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* z (m, n) := sigmoid(z + b) row by row, with sigmoid(t) = 1/(1+e) for t >= 0
   and e/(1+e) for t < 0, e = exp(-|t|): the split that never overflows. */
#define FBP_SIGMOID(T, S, VT, L, LOADU, STOREU, ADD, DIV, SET1, ANDNOT, CMPGE, BLEND, EXPNEG, SCALAR_EXP) \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##bias_sigmoid(T *z, const T *b, int m, int n)              \
{                                                                              \
    const VT one = SET1(1), sign = SET1(-0.0);                                 \
    int nv = n - n % L;                                                        \
    for (int i = 0; i < m; i++) {                                              \
        T *row = z + (size_t)i * n;                                            \
        for (int j = 0; j < nv; j += L) {                                      \
            VT t = ADD(LOADU(row + j), LOADU(b + j));                          \
            VT e = EXPNEG(_mm256_or_##S##_(sign, t));                          \
            VT total = ADD(one, e);                                            \
            VT positive = DIV(one, total), negative = DIV(e, total);           \
            STOREU(row + j, BLEND(negative, positive, CMPGE(t)));              \
        }                                                                      \
        for (int j = nv; j < n; j++) {                                         \
            T t = row[j] + b[j], e;                                            \
            if (t >= 0) { e = SCALAR_EXP(-t); row[j] = 1 / (1 + e); }          \
            else { e = SCALAR_EXP(t); row[j] = e / (1 + e); }                  \
        }                                                                      \
    }                                                                          \
}

#define FBP_CMPGE_PD(t) _mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_GE_OQ)
#define FBP_CMPGE_PS(t) _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GE_OQ)
#define _mm256_or_pd_(a, b) _mm256_or_pd(a, b)
#define _mm256_or_ps_(a, b) _mm256_or_ps(a, b)
#define _mm256_or_d_(a, b) _mm256_or_pd(a, b)
#define _mm256_or_s_(a, b) _mm256_or_ps(a, b)

FBP_SIGMOID(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
            _mm256_add_pd, _mm256_div_pd, _mm256_set1_pd, _, FBP_CMPGE_PD,
            _mm256_blendv_pd, fbp_exp_neg_pd, exp)
FBP_SIGMOID(float, s, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
            _mm256_add_ps, _mm256_div_ps, _mm256_set1_ps, _, FBP_CMPGE_PS,
            _mm256_blendv_ps, fbp_exp_neg_ps, expf)

/* Sums of w^2 and of |w| over n values, in double, for the L2 and L1 terms
   of J: 8 independent accumulators per sum (the scalar chain was latency
   bound), then one fixed reduction order. fbp_?load8 brings 8 values into
   two vectors of doubles. */
__attribute__((target("avx2,fma")))
static inline void fbp_dload8(const double *w, __m256d *x, __m256d *y)
{
    *x = _mm256_loadu_pd(w);
    *y = _mm256_loadu_pd(w + 4);
}

__attribute__((target("avx2,fma")))
static inline void fbp_sload8(const float *w, __m256d *x, __m256d *y)
{
    __m256 v = _mm256_loadu_ps(w);
    *x = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *y = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

#define FBP_NORMS(T, S)                                                        \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##norms(const T *w, size_t n, double *squares,              \
                           double *absolutes)                                  \
{                                                                              \
    const __m256d sign = _mm256_set1_pd(-0.0);                                 \
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, a0 = s0, a1 = s0, x, y;         \
    size_t i = 0;                                                              \
    for (; i + 8 <= n; i += 8) {                                               \
        fbp_##S##load8(w + i, &x, &y);                                         \
        s0 = _mm256_fmadd_pd(x, x, s0);                                        \
        s1 = _mm256_fmadd_pd(y, y, s1);                                        \
        a0 = _mm256_add_pd(a0, _mm256_andnot_pd(sign, x));                     \
        a1 = _mm256_add_pd(a1, _mm256_andnot_pd(sign, y));                     \
    }                                                                          \
    double sq = fbp_hsum_pd(_mm256_add_pd(s0, s1));                            \
    double ab = fbp_hsum_pd(_mm256_add_pd(a0, a1));                            \
    for (; i < n; i++) {                                                       \
        sq += (double)w[i] * w[i];                                             \
        ab += fabs((double)w[i]);                                              \
    }                                                                          \
    *squares += sq;                                                            \
    *absolutes += ab;                                                          \
}

FBP_NORMS(double, d)
FBP_NORMS(float, s)

/* 1 when all n values are finite. x * 0 is 0 for finite x and NaN for NaN or
   infinity; NaN survives the additions. One pass, memory bound, checked
   every 64 KiB so that a NaN early in a large array ends it early. */
#define FBP_FINITE(T, S, VT, L, LOADU, MUL, ADD, ZERO, HSUM)                   \
__attribute__((target("avx2,fma")))                                            \
static int fbp_##S##all_finite(const T *x, size_t n)                           \
{                                                                              \
    const size_t block = 65536 / sizeof(T);                                    \
    const VT zero = ZERO();                                                    \
    size_t i = 0;                                                              \
    while (i + 4 * L <= n) {                                                   \
        size_t stop = i + block < n ? i + block : n;                           \
        VT a0 = zero, a1 = zero, a2 = zero, a3 = zero;                         \
        for (; i + 4 * L <= stop; i += 4 * L) {                                \
            a0 = ADD(a0, MUL(LOADU(x + i), zero));                             \
            a1 = ADD(a1, MUL(LOADU(x + i + L), zero));                         \
            a2 = ADD(a2, MUL(LOADU(x + i + 2 * L), zero));                     \
            a3 = ADD(a3, MUL(LOADU(x + i + 3 * L), zero));                     \
        }                                                                      \
        if (HSUM(ADD(ADD(a0, a1), ADD(a2, a3))) != 0)                          \
            return 0;                                                          \
    }                                                                          \
    for (; i < n; i++)                                                         \
        if (x[i] * 0 != 0)                                                     \
            return 0;                                                          \
    return 1;                                                                  \
}

FBP_FINITE(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_mul_pd, _mm256_add_pd,
           _mm256_setzero_pd, fbp_hsum_pd)
FBP_FINITE(float, s, __m256, 8, _mm256_loadu_ps, _mm256_mul_ps, _mm256_add_ps,
           _mm256_setzero_ps, fbp_hsum_ps)

#else  /* not x86: never called (fbp_have_avx2() is 0), defined for linking */

static void fbp_dgemm_nt(int m, int n, int k, const double *A, const double *W, double *Z)
{ fbp_dgemm_nt_edge(0, m, 0, n, k, A, W, Z, n); }
static void fbp_sgemm_nt(int m, int n, int k, const float *A, const float *W, float *Z)
{ fbp_sgemm_nt_edge(0, m, 0, n, k, A, W, Z, n); }
static void fbp_dger(int rows, int cols, int m, const double *P, const double *A, double beta, double *C)
{ fbp_dger_edge(0, rows, 0, cols, m, cols, P, A, beta, C); }
static void fbp_sger(int rows, int cols, int m, const float *P, const float *A, float beta, float *C)
{ fbp_sger_edge(0, rows, 0, cols, m, cols, P, A, beta, C); }
static void fbp_dbias_sigmoid(double *z, const double *b, int m, int n) { (void)z; (void)b; (void)m; (void)n; }
static void fbp_dnorms(const double *w, size_t n, double *squares, double *absolutes)
{ for (size_t i = 0; i < n; i++) { *squares += w[i] * w[i]; *absolutes += fabs(w[i]); } }
static void fbp_snorms(const float *w, size_t n, double *squares, double *absolutes)
{ for (size_t i = 0; i < n; i++) { *squares += (double)w[i] * w[i]; *absolutes += fabs((double)w[i]); } }
static int fbp_dall_finite(const double *x, size_t n)
{ for (size_t i = 0; i < n; i++) if (x[i] * 0 != 0) return 0; return 1; }
static int fbp_sall_finite(const float *x, size_t n)
{ for (size_t i = 0; i < n; i++) if (x[i] * 0 != 0) return 0; return 1; }
static void fbp_sbias_sigmoid(float *z, const float *b, int m, int n) { (void)z; (void)b; (void)m; (void)n; }

#endif

/* The adaptive update rules, one fused pass over a weight matrix or a bias
 * vector: the coupled penalties join the data gradient g (l2 w + l1 sign(w),
 * both 0 for biases), then the rule's state and w are updated in place.
 *
 *   rmsprop: s <- a s + (1-a) g^2;  w <- keep w - lr g / (sqrt(s) + eps)
 *   adam:    m <- a m + (1-a) g;  v <- b v + (1-b) g^2;
 *            w <- keep w - lr (m c1) / (sqrt(v c2) + eps)
 *
 * keep = 1 - lr weight_decay (decoupled decay). Plain C loops that the
 * compiler vectorizes: with SSE2 in the default twin and AVX2 in the _avx2
 * one. Neither contracts to FMA, and sqrt and division are correctly
 * rounded in any width, so both twins give the same bits.
 */
typedef struct {
    double lr, l2, l1, keep, a, b, c1, c2, eps;
} fbp_rule;

#define FBP_RULES(T, S, SQRT, SUFFIX, ATTR)                                    \
ATTR static void fbp_##S##adam##SUFFIX(T *restrict w, const T *restrict g,    \
                                       T *restrict m, T *restrict v, size_t n, \
                                       const fbp_rule *r)                      \
{                                                                              \
    const T lr = (T)r->lr, l2 = (T)r->l2, l1 = (T)r->l1, keep = (T)r->keep;    \
    const T a = (T)r->a, rest_a = (T)(1 - r->a);                               \
    const T b = (T)r->b, rest_b = (T)(1 - r->b);                               \
    const T c1 = (T)r->c1, c2 = (T)r->c2, eps = (T)r->eps;                     \
    for (size_t i = 0; i < n; i++) {                                           \
        const T wi = w[i];                                                     \
        const T sign = (wi > 0 ? (T)1 : (T)0) - (wi < 0 ? (T)1 : (T)0);        \
        const T grad = g[i] + l2 * wi + l1 * sign;                             \
        const T mi = a * m[i] + rest_a * grad;                                 \
        const T vi = b * v[i] + rest_b * grad * grad;                          \
        m[i] = mi;                                                             \
        v[i] = vi;                                                             \
        w[i] = keep * wi - lr * (mi * c1) / (SQRT(vi * c2) + eps);             \
    }                                                                          \
}                                                                              \
ATTR static void fbp_##S##rmsprop##SUFFIX(T *restrict w, const T *restrict g, \
                                          T *restrict s, size_t n,             \
                                          const fbp_rule *r)                   \
{                                                                              \
    const T lr = (T)r->lr, l2 = (T)r->l2, l1 = (T)r->l1, keep = (T)r->keep;    \
    const T a = (T)r->a, rest_a = (T)(1 - r->a), eps = (T)r->eps;              \
    for (size_t i = 0; i < n; i++) {                                           \
        const T wi = w[i];                                                     \
        const T sign = (wi > 0 ? (T)1 : (T)0) - (wi < 0 ? (T)1 : (T)0);        \
        const T grad = g[i] + l2 * wi + l1 * sign;                             \
        const T si = a * s[i] + rest_a * grad * grad;                          \
        s[i] = si;                                                             \
        w[i] = keep * wi - lr * grad / (SQRT(si) + eps);                       \
    }                                                                          \
}

FBP_RULES(double, d, sqrt, , )
FBP_RULES(float, s, sqrtf, , )
#if FBP_X86
FBP_RULES(double, d, sqrt, _avx2, __attribute__((target("avx2"))))
FBP_RULES(float, s, sqrtf, _avx2, __attribute__((target("avx2"))))
#else   /* never chosen (fbp_have_avx2() is 0), defined for linking */
#define fbp_dadam_avx2 fbp_dadam
#define fbp_sadam_avx2 fbp_sadam
#define fbp_drmsprop_avx2 fbp_drmsprop
#define fbp_srmsprop_avx2 fbp_srmsprop
#endif

#endif  /* FASTBP_MICROKERNELS_H */
