/* Vector exp and sigmoid for the forward pass, AVX2 + FMA:
 *
 *   fbp_exp_neg_pd/_ps   exp(x) lane-wise for x <= 0 (all the sigmoid needs)
 *   fbp_?bias_sigmoid    z (m, n) := sigmoid(z + b), row by row, in place
 *
 * The scalar libm exp would dominate wide sigmoid layers. Without AVX2 + FMA
 * the caller uses its scalar loop; on other architectures the entry points
 * are empty stand-ins, for linking.
 */
#ifndef FASTBP_SIGMOID_H
#define FASTBP_SIGMOID_H

#include "fbp_cpu.h"

#if FBP_X86

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
#define FBP_SIGMOID(T, S, VT, L, LOADU, STOREU, ADD, DIV, SET1, OR, CMPGE, BLEND, EXPNEG, \
                    SCALAR_EXP)                                                \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##bias_sigmoid(T *z, const T *b, int m, int n)              \
{                                                                              \
    const VT one = SET1(1), sign = SET1(-0.0);                                 \
    int nv = n - n % L;                                                        \
    for (int i = 0; i < m; i++) {                                              \
        T *row = z + (size_t)i * n;                                            \
        for (int j = 0; j < nv; j += L) {                                      \
            VT t = ADD(LOADU(row + j), LOADU(b + j));                          \
            VT e = EXPNEG(OR(sign, t));                                        \
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

FBP_SIGMOID(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
            _mm256_add_pd, _mm256_div_pd, _mm256_set1_pd, _mm256_or_pd, FBP_CMPGE_PD,
            _mm256_blendv_pd, fbp_exp_neg_pd, exp)
FBP_SIGMOID(float, s, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
            _mm256_add_ps, _mm256_div_ps, _mm256_set1_ps, _mm256_or_ps, FBP_CMPGE_PS,
            _mm256_blendv_ps, fbp_exp_neg_ps, expf)

#else  /* not x86: never called (fbp_have_avx2() is 0), defined for linking */

static void fbp_dbias_sigmoid(double *z, const double *b, int m, int n) { (void)z; (void)b; (void)m; (void)n; }
static void fbp_sbias_sigmoid(float *z, const float *b, int m, int n) { (void)z; (void)b; (void)m; (void)n; }

#endif

#endif  /* FASTBP_SIGMOID_H */
