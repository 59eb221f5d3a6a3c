/* Reductions over a whole vector, AVX2 + FMA:
 *
 *   fbp_?norms       sum w^2 and sum |w| in double (the L2 and L1 terms of J)
 *   fbp_?all_finite  1 when no value is NaN or infinite
 *   fbp_?gradient_squares[_scalar]
 *                    sum (g + l2 w + l1 sign(w))^2 in double: the squared
 *                    Frobenius norm of dJ/dW from its data term g (the
 *                    gradient norms of train_epoch)
 *   fbp_?gram_squares[_scalar]
 *                    ||D^T A||_F^2 = sum_ij (a_i . a_j)(d_i . d_j) over the rows
 *                    of D (m, n_out) and A (m, n_in), in double, without the
 *                    product: the norms of the fused SGD updates
 *
 * Both run with several independent accumulators and one fixed reduction
 * order. Without AVX2 + FMA the caller uses its scalar loop; on other
 * architectures plain loops stand in, for linking.
 */
#ifndef FASTBP_REDUCTIONS_H
#define FASTBP_REDUCTIONS_H

#include "fbp_cpu.h"

/* The portable twin of fbp_?gradient_squares (the AVX2 one below), for CPUs
   without AVX2: four accumulators, so not latency bound either. */
#define FBP_GRADIENT_SQUARES_SCALAR(T, S)                                      \
static double fbp_##S##gradient_squares_scalar(const T *g, const T *w,         \
                                               size_t n, double l2, double l1) \
{                                                                              \
    double s[4] = {0, 0, 0, 0};                                                \
    size_t i = 0;                                                              \
    for (; i + 4 <= n; i += 4)                                                 \
        for (int k = 0; k < 4; k++) {                                          \
            double x = (double)w[i + k];                                       \
            double p = g[i + k] + l2 * x + l1 * ((x > 0) - (x < 0));           \
            s[k] += p * p;                                                     \
        }                                                                      \
    for (; i < n; i++) {                                                       \
        double x = (double)w[i];                                               \
        double p = g[i] + l2 * x + l1 * ((x > 0) - (x < 0));                   \
        s[0] += p * p;                                                         \
    }                                                                          \
    return (s[0] + s[1]) + (s[2] + s[3]);                                      \
}

FBP_GRADIENT_SQUARES_SCALAR(double, d)
FBP_GRADIENT_SQUARES_SCALAR(float, s)

/* The Gram identity over the row pairs i <= j, each dot in double; DOT is
   the dot product of two rows (the AVX2 one below, or a scalar one). */
#define FBP_GRAM_SQUARES(T, S, SUFFIX, ATTR, DOT)                              \
ATTR static double fbp_##S##gram_squares##SUFFIX(const T *D, const T *A, int m, \
                                                 int n_out, int n_in)          \
{                                                                              \
    double diagonal = 0, off = 0;                                              \
    for (int i = 0; i < m; i++) {                                              \
        const T *a = A + (size_t)i * n_in, *d = D + (size_t)i * n_out;         \
        diagonal += DOT(a, a, n_in) * DOT(d, d, n_out);                        \
        for (int j = i + 1; j < m; j++)                                        \
            off += DOT(a, A + (size_t)j * n_in, n_in)                          \
                   * DOT(d, D + (size_t)j * n_out, n_out);                     \
    }                                                                          \
    return diagonal + 2 * off;                                                 \
}

#define FBP_DOT_SCALAR(T, S)                                                   \
static double fbp_##S##dot_scalar(const T *x, const T *y, size_t n)           \
{                                                                              \
    double s[4] = {0, 0, 0, 0};                                                \
    size_t i = 0;                                                              \
    for (; i + 4 <= n; i += 4)                                                 \
        for (int k = 0; k < 4; k++)                                            \
            s[k] += (double)x[i + k] * y[i + k];                               \
    for (; i < n; i++)                                                         \
        s[0] += (double)x[i] * y[i];                                           \
    return (s[0] + s[1]) + (s[2] + s[3]);                                      \
}

FBP_DOT_SCALAR(double, d)
FBP_DOT_SCALAR(float, s)
FBP_GRAM_SQUARES(double, d, _scalar, , fbp_ddot_scalar)
FBP_GRAM_SQUARES(float, s, _scalar, , fbp_sdot_scalar)

#if FBP_X86

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

/* sum (g + l2 w + l1 sign(w))^2 over n values, in double (float inputs are
   widened first): 4 accumulators of 4 lanes (FMA latency),  one fixed reduction order. */
__attribute__((target("avx2,fma")))
static inline __m256d fbp_penalized_pd(__m256d g, __m256d w, __m256d l2, __m256d l1)
{
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    __m256d sign = _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(w, zero, _CMP_GT_OQ), one),
                                 _mm256_and_pd(_mm256_cmp_pd(w, zero, _CMP_LT_OQ), one));
    return _mm256_fmadd_pd(l1, sign, _mm256_fmadd_pd(l2, w, g));
}

#define FBP_GRADIENT_SQUARES(T, S)                                             \
__attribute__((target("avx2,fma")))                                            \
static double fbp_##S##gradient_squares(const T *g, const T *w, size_t n,      \
                                        double l2, double l1)                  \
{                                                                              \
    const __m256d vl2 = _mm256_set1_pd(l2), vl1 = _mm256_set1_pd(l1);          \
    __m256d s[4], gx, gy, wx, wy, p, q;                                        \
    size_t i = 0;                                                              \
    for (int k = 0; k < 4; k++)                                                \
        s[k] = _mm256_setzero_pd();                                            \
    if (l1 == 0) {  /* the common case: no sign(w) to form */                \
        for (; i + 16 <= n; i += 16)                                           \
            for (int k = 0; k < 4; k += 2) {                                   \
                fbp_##S##load8(g + i + 4 * k, &gx, &gy);                       \
                fbp_##S##load8(w + i + 4 * k, &wx, &wy);                       \
                p = _mm256_fmadd_pd(vl2, wx, gx);                              \
                q = _mm256_fmadd_pd(vl2, wy, gy);                              \
                s[k] = _mm256_fmadd_pd(p, p, s[k]);                            \
                s[k + 1] = _mm256_fmadd_pd(q, q, s[k + 1]);                    \
            }                                                                  \
    }                                                                          \
    for (; i + 16 <= n; i += 16)                                               \
        for (int k = 0; k < 4; k += 2) {                                       \
            fbp_##S##load8(g + i + 4 * k, &gx, &gy);                           \
            fbp_##S##load8(w + i + 4 * k, &wx, &wy);                           \
            p = fbp_penalized_pd(gx, wx, vl2, vl1);                            \
            q = fbp_penalized_pd(gy, wy, vl2, vl1);                            \
            s[k] = _mm256_fmadd_pd(p, p, s[k]);                                \
            s[k + 1] = _mm256_fmadd_pd(q, q, s[k + 1]);                        \
        }                                                                      \
    double total = fbp_hsum_pd(_mm256_add_pd(_mm256_add_pd(s[0], s[1]),        \
                                             _mm256_add_pd(s[2], s[3])));      \
    if (i < n)                                                                 \
        total += fbp_##S##gradient_squares_scalar(g + i, w + i, n - i, l2, l1); \
    return total;                                                              \
}

FBP_GRADIENT_SQUARES(double, d)
FBP_GRADIENT_SQUARES(float, s)

/* x . y in double, 16 values a step into 4 accumulators (FMA latency) */
#define FBP_DOT(T, S)                                                          \
__attribute__((target("avx2,fma")))                                            \
static inline double fbp_##S##dot(const T *x, const T *y, size_t n)           \
{                                                                              \
    __m256d s[4], x0, x1, y0, y1;                                              \
    size_t i = 0;                                                              \
    for (int k = 0; k < 4; k++)                                                \
        s[k] = _mm256_setzero_pd();                                            \
    for (; i + 16 <= n; i += 16)                                               \
        for (int k = 0; k < 4; k += 2) {                                       \
            fbp_##S##load8(x + i + 4 * k, &x0, &x1);                           \
            fbp_##S##load8(y + i + 4 * k, &y0, &y1);                           \
            s[k] = _mm256_fmadd_pd(x0, y0, s[k]);                              \
            s[k + 1] = _mm256_fmadd_pd(x1, y1, s[k + 1]);                      \
        }                                                                      \
    double total = fbp_hsum_pd(_mm256_add_pd(_mm256_add_pd(s[0], s[1]),        \
                                             _mm256_add_pd(s[2], s[3])));      \
    for (; i < n; i++)                                                         \
        total += (double)x[i] * y[i];                                          \
    return total;                                                              \
}

FBP_DOT(double, d)
FBP_DOT(float, s)
FBP_GRAM_SQUARES(double, d, , __attribute__((target("avx2,fma"))), fbp_ddot)
FBP_GRAM_SQUARES(float, s, , __attribute__((target("avx2,fma"))), fbp_sdot)

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

static void fbp_dnorms(const double *w, size_t n, double *squares, double *absolutes)
{ for (size_t i = 0; i < n; i++) { *squares += w[i] * w[i]; *absolutes += fabs(w[i]); } }
static void fbp_snorms(const float *w, size_t n, double *squares, double *absolutes)
{ for (size_t i = 0; i < n; i++) { *squares += (double)w[i] * w[i]; *absolutes += fabs((double)w[i]); } }
#define fbp_dgram_squares fbp_dgram_squares_scalar
#define fbp_sgram_squares fbp_sgram_squares_scalar
#define fbp_dgradient_squares fbp_dgradient_squares_scalar
#define fbp_sgradient_squares fbp_sgradient_squares_scalar
static int fbp_dall_finite(const double *x, size_t n)
{ for (size_t i = 0; i < n; i++) if (x[i] * 0 != 0) return 0; return 1; }
static int fbp_sall_finite(const float *x, size_t n)
{ for (size_t i = 0; i < n; i++) if (x[i] * 0 != 0) return 0; return 1; }

#endif

#endif  /* FASTBP_REDUCTIONS_H */
