/* CPU features and the floating-point control word, for the other fbp_*.h.
 *
 *   FBP_X86              1 where GCC/Clang target x86 (immintrin.h included)
 *   fbp_have_avx2()      AVX2 and FMA at run time: the feature test the
 *                        kernels dispatch on, made once at import
 *   fbp_have_avx512()    AVX-512 F at run time (with AVX2 + FMA): the
 *                        small-batch GEMM's widest twin
 *   fbp_flush_denormals  FTZ + DAZ on for the calling thread, returns the old
 *   fbp_restore_csr      control word, and puts it back
 *   fbp_hsum_pd/_ps      horizontal sum of an AVX vector, in one fixed order
 *                        (shared by the GEMM and the reductions)
 *
 * The AVX2 code of every header is compiled with a per-function target
 * attribute and chosen at run time, so the build stays portable: no -march.
 */
#ifndef FASTBP_CPU_H
#define FASTBP_CPU_H

#include <math.h>
#include <stddef.h>

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

static int fbp_have_avx512(void)
{
#if FBP_X86
    __builtin_cpu_init();
    return fbp_have_avx2() && __builtin_cpu_supports("avx512f");
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

#if FBP_X86
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

/* The AVX-512 sums: the two 256-bit halves added, then the AVX2 order */
__attribute__((target("avx512f,avx2,fma")))
static inline double fbp_hsum512_pd(__m512d v)
{
    return fbp_hsum_pd(_mm256_add_pd(_mm512_castpd512_pd256(v),
                                     _mm512_extractf64x4_pd(v, 1)));
}

__attribute__((target("avx512f,avx2,fma")))
static inline float fbp_hsum512_ps(__m512 v)
{
    __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return fbp_hsum_ps(_mm256_add_ps(_mm512_castps512_ps256(v), high));
}
#endif

#endif  /* FASTBP_CPU_H */
