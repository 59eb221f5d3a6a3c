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
#define FBP_VECTOR(T, S, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO, HSUM)   \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##gemm_nt(int m, int n, int k, const T *A, const T *W,      \
                             T *Z)                                             \
{                                                                              \
    /* k is cut into chunks of FBP_CHUNK_BYTES per row, so that the chunk of   \
       A and of W stay in L1 while every register block passes over them;     \
       within a chunk: 4 rows of A x 2 rows of W = 8 accumulators, 6 loads    \
       per 8 FMAs. Partial sums go through Z between chunks. */               \
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    for (int p0 = 0; p0 < k; p0 += chunk) {                                    \
        int p1 = p0 + chunk < k ? p0 + chunk : k;                              \
        int pv = p0 + (p1 - p0) - (p1 - p0) % L, i, j;                         \
        int first = p0 == 0;                                                   \
        for (j = 0; j + 2 <= n; j += 2) {                                      \
            const T *w0 = W + (size_t)j * k, *w1 = w0 + k;                     \
            for (i = 0; i + 4 <= m; i += 4) {                                  \
                const T *a0 = A + (size_t)i * k, *a1 = a0 + k, *a2 = a1 + k,   \
                        *a3 = a2 + k;                                          \
                VT c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(),     \
                   c20 = ZERO(), c21 = ZERO(), c30 = ZERO(), c31 = ZERO();     \
                for (int p = p0; p < pv; p += L) {                             \
                    VT x0 = LOADU(w0 + p), x1 = LOADU(w1 + p), y;              \
                    y = LOADU(a0 + p); c00 = FMADD(y, x0, c00); c01 = FMADD(y, x1, c01); \
                    y = LOADU(a1 + p); c10 = FMADD(y, x0, c10); c11 = FMADD(y, x1, c11); \
                    y = LOADU(a2 + p); c20 = FMADD(y, x0, c20); c21 = FMADD(y, x1, c21); \
                    y = LOADU(a3 + p); c30 = FMADD(y, x0, c30); c31 = FMADD(y, x1, c31); \
                }                                                              \
                T s[8] = {HSUM(c00), HSUM(c01), HSUM(c10), HSUM(c11),          \
                          HSUM(c20), HSUM(c21), HSUM(c30), HSUM(c31)};         \
                for (int p = pv; p < p1; p++) {                                \
                    s[0] += a0[p] * w0[p]; s[1] += a0[p] * w1[p];              \
                    s[2] += a1[p] * w0[p]; s[3] += a1[p] * w1[p];              \
                    s[4] += a2[p] * w0[p]; s[5] += a2[p] * w1[p];              \
                    s[6] += a3[p] * w0[p]; s[7] += a3[p] * w1[p];              \
                }                                                              \
                for (int r = 0; r < 4; r++) {                                  \
                    T *z = Z + (size_t)(i + r) * n + j;                        \
                    z[0] = first ? s[2 * r] : z[0] + s[2 * r];                 \
                    z[1] = first ? s[2 * r + 1] : z[1] + s[2 * r + 1];         \
                }                                                              \
            }                                                                  \
            for (; i < m; i++) {                                               \
                const T *a0 = A + (size_t)i * k;                               \
                VT c00 = ZERO(), c01 = ZERO();                                 \
                for (int p = p0; p < pv; p += L) {                             \
                    VT y = LOADU(a0 + p);                                      \
                    c00 = FMADD(y, LOADU(w0 + p), c00);                        \
                    c01 = FMADD(y, LOADU(w1 + p), c01);                        \
                }                                                              \
                T s0 = HSUM(c00), s1 = HSUM(c01);                              \
                for (int p = pv; p < p1; p++) {                                \
                    s0 += a0[p] * w0[p]; s1 += a0[p] * w1[p];                  \
                }                                                              \
                T *z = Z + (size_t)i * n + j;                                  \
                z[0] = first ? s0 : z[0] + s0;                                 \
                z[1] = first ? s1 : z[1] + s1;                                 \
            }                                                                  \
        }                                                                      \
        for (; j < n; j++) {                                                   \
            const T *w0 = W + (size_t)j * k;                                   \
            for (i = 0; i < m; i++) {                                          \
                const T *a0 = A + (size_t)i * k;                               \
                VT c00 = ZERO();                                               \
                for (int p = p0; p < pv; p += L)                               \
                    c00 = FMADD(LOADU(a0 + p), LOADU(w0 + p), c00);            \
                T s0 = HSUM(c00);                                              \
                for (int p = pv; p < p1; p++)                                  \
                    s0 += a0[p] * w0[p];                                       \
                T *z = Z + (size_t)i * n + j;                                  \
                z[0] = first ? s0 : z[0] + s0;                                 \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}                                                                              \
                                                                               \
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

FBP_VECTOR(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
           _mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_setzero_pd,
           fbp_hsum_pd)
FBP_VECTOR(float, s, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
           _mm256_fmadd_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
           fbp_hsum_ps)

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
static void fbp_sbias_sigmoid(float *z, const float *b, int m, int n) { (void)z; (void)b; (void)m; (void)n; }

#endif

#endif  /* FASTBP_MICROKERNELS_H */
