/* The AVX-512 twins of fbp_gemm.h's small-batch products, chosen at run time
 * where the CPU has AVX-512 F (fbp_have_avx512):
 *
 *   fbp_?gemm_nt_avx512:  Z (m, n) = A (m, k) . W^T       W of shape (n, k)
 *   fbp_?ger_avx512:      C (r, c) = beta C + P (r, m) . A (m, c)
 *
 * The same cache blocking as the AVX2 kernels, with vectors twice as wide,
 * register blocks that use the 32 vector registers (4 x 6 accumulators in
 * the nt product), and masked loads and stores in place of scalar tails, so
 * that short rows (a 30-unit layer) stay in vector code. Each element is
 * summed in one fixed order whatever block it falls in: the results do not
 * depend on m or n, but differ from the AVX2 kernels' in the last bits.
 */
#ifndef FASTBP_GEMM512_H
#define FASTBP_GEMM512_H

#include "fbp_gemm.h"

#if FBP_X86

#define FBP_TARGET512 __attribute__((target("avx512f,avx2,fma")))

/* R rows of A against C rows of W over [p0, p1): full vectors up to pv, then
   one masked vector of the p1 - pv < L rest. R <= 4, C <= 6. */
#define FBP_NT512_BLOCK(T, S, VT, L, MASK, LOADU, MLOADU, FMADD, ZERO, HSUM)  \
__attribute__((target("avx512f,avx2,fma"), always_inline))                    \
static inline void fbp_##S##nt512_block(const int R, const int C, int p0,     \
                                        int pv, int p1, MASK tail, int k,     \
                                        int n, int first, const T *A,         \
                                        const T *W, T *Z)                     \
{                                                                              \
    VT c[4][6];                                                                \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                        \
        _Pragma("GCC unroll 6") for (int q = 0; q < C; q++) c[r][q] = ZERO();  \
    for (int p = p0; p < pv; p += L) {                                         \
        VT x[6];                                                               \
        _Pragma("GCC unroll 6") for (int q = 0; q < C; q++)                    \
            x[q] = LOADU(W + (size_t)q * k + p);                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                  \
            VT y = LOADU(A + (size_t)r * k + p);                               \
            _Pragma("GCC unroll 6") for (int q = 0; q < C; q++)                \
                c[r][q] = FMADD(y, x[q], c[r][q]);                             \
        }                                                                      \
    }                                                                          \
    if (pv < p1) {                                                             \
        VT x[6];                                                               \
        _Pragma("GCC unroll 6") for (int q = 0; q < C; q++)                    \
            x[q] = MLOADU(tail, W + (size_t)q * k + pv);                       \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                  \
            VT y = MLOADU(tail, A + (size_t)r * k + pv);                       \
            _Pragma("GCC unroll 6") for (int q = 0; q < C; q++)                \
                c[r][q] = FMADD(y, x[q], c[r][q]);                             \
        }                                                                      \
    }                                                                          \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)                        \
        _Pragma("GCC unroll 6") for (int q = 0; q < C; q++) {                  \
            T total = HSUM(c[r][q]);                                           \
            T *z = Z + (size_t)r * n + q;                                      \
            *z = first ? total : *z + total;                                   \
        }                                                                      \
}

/* One case of the driver's dispatch on the block's shape */
#define FBP_NT512_CASE(S, R, C) \
    case R * 8 + C: fbp_##S##nt512_block(R, C, p0, pv, p1, tail, k, n, first, a, w, z); break;
#define FBP_NT512_ROWS(S, R) FBP_NT512_CASE(S, R, 6) FBP_NT512_CASE(S, R, 5) \
    FBP_NT512_CASE(S, R, 4) FBP_NT512_CASE(S, R, 3) FBP_NT512_CASE(S, R, 2) \
    FBP_NT512_CASE(S, R, 1)

#define FBP_NT512(T, S, L, MASK)                                               \
FBP_TARGET512                                                                  \
static void fbp_##S##gemm_nt_avx512(int m, int n, int k, const T *A,          \
                                    const T *W, T *Z)                          \
{                                                                              \
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    for (int p0 = 0; p0 < k; p0 += chunk) {                                    \
        int p1 = p0 + chunk < k ? p0 + chunk : k;                              \
        int pv = p1 - (p1 - p0) % L, first = p0 == 0;                          \
        MASK tail = (MASK)((1u << (p1 - pv)) - 1u);                            \
        for (int j = 0; j < n; j += 6) {                                       \
            int cols = n - j < 6 ? n - j : 6;                                  \
            const T *w = W + (size_t)j * k;                                    \
            for (int i = 0; i < m; i += 4) {                                   \
                int rows = m - i < 4 ? m - i : 4;                              \
                const T *a = A + (size_t)i * k;                                \
                T *z = Z + (size_t)i * n + j;                                  \
                switch (rows * 8 + cols) {                                     \
                FBP_NT512_ROWS(S, 4) FBP_NT512_ROWS(S, 3) FBP_NT512_ROWS(S, 2) \
                FBP_NT512_CASE(S, 1, 6) FBP_NT512_CASE(S, 1, 5)                \
                FBP_NT512_CASE(S, 1, 4) FBP_NT512_CASE(S, 1, 3)                \
                FBP_NT512_CASE(S, 1, 2)                                        \
                default: fbp_##S##nt512_block(1, 1, p0, pv, p1, tail, k, n, first, a, w, z); break; \
                }                                                              \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}

/* The update product: fbp_gemm.h's body (4 rows of C x 2 vectors of
   columns, over all m, in column chunks that keep A's chunk in L1) at this
   width; the last < 2L columns of each row go through one or two masked
   vectors. */
#define FBP_GER512(T, S, VT, L, MASK, LOADU, STOREU, MLOADU, MSTOREU, FMADD,  \
                   MUL, SET1, ZERO)                                            \
FBP_TARGET512                                                                  \
static void fbp_##S##ger_avx512(int rows, int cols, int m, const T *P,        \
                                const T *A, T beta, T *C)                      \
{                                                                              \
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    int cv = cols - cols % (2 * L), r;                                         \
    VT vbeta = SET1(beta);                                                     \
    FBP_GER_BODY(T, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO)              \
    for (int q = cv; q < cols; q += L) {                                       \
        int width = cols - q < L ? cols - q : L;                               \
        MASK mask = (MASK)((1u << width) - 1u);                                \
        for (r = 0; r < rows; r++) {                                           \
            const T *p0 = P + (size_t)r * m;                                   \
            T *d0 = C + (size_t)r * cols + q;                                  \
            VT c00 = beta == 0 ? ZERO() : MUL(vbeta, MLOADU(mask, d0));        \
            for (int i = 0; i < m; i++)                                        \
                c00 = FMADD(SET1(p0[i]), MLOADU(mask, A + (size_t)i * cols + q), c00); \
            MSTOREU(d0, mask, c00);                                            \
        }                                                                      \
    }                                                                          \
}

FBP_NT512_BLOCK(double, d, __m512d, 8, __mmask8, _mm512_loadu_pd, _mm512_maskz_loadu_pd,
                _mm512_fmadd_pd, _mm512_setzero_pd, fbp_hsum512_pd)
FBP_NT512_BLOCK(float, s, __m512, 16, __mmask16, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
                _mm512_fmadd_ps, _mm512_setzero_ps, fbp_hsum512_ps)
FBP_NT512(double, d, 8, __mmask8)
FBP_NT512(float, s, 16, __mmask16)
FBP_GER512(double, d, __m512d, 8, __mmask8, _mm512_loadu_pd, _mm512_storeu_pd,
           _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd,
           _mm512_set1_pd, _mm512_setzero_pd)
FBP_GER512(float, s, __m512, 16, __mmask16, _mm512_loadu_ps, _mm512_storeu_ps,
           _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps,
           _mm512_set1_ps, _mm512_setzero_ps)

#else  /* not x86: never chosen (fbp_have_avx512() is 0), defined for linking */

#define fbp_dgemm_nt_avx512 fbp_dgemm_nt
#define fbp_sgemm_nt_avx512 fbp_sgemm_nt
#define fbp_dger_avx512 fbp_dger
#define fbp_sger_avx512 fbp_sger

#endif

#endif  /* FASTBP_GEMM512_H */
