/* Small-batch GEMM: the two big products of a step of a few rows, for which
 * BLAS spends more time packing operands and dispatching than multiplying.
 * Register-blocked for AVX2 + FMA, with scalar edges:
 *
 *   fbp_?gemm_nt:  Z (m, n) = A (m, k) . W^T       W of shape (n, k)
 *   fbp_?ger:      C (r, c) = beta C + P (r, m) . A (m, c)
 *
 * ? is d (double) or s (float). Without AVX2 + FMA the caller uses BLAS
 * instead; on other architectures the scalar edges stand in, for linking.
 */
#ifndef FASTBP_GEMM_H
#define FASTBP_GEMM_H

#include "fbp_cpu.h"

/* Bytes of each row that one cache block covers: a block of a 10-row batch
   (20 KiB) and of the rows it meets stays in a 32-48 KiB L1. */
#define FBP_CHUNK_BYTES 2048

/* Scalar edges, in the same order of summation as the vector bodies' tails. */
#define FBP_EDGES(T, S)                                                       \
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

FBP_EDGES(double, d)
FBP_EDGES(float, s)

#if FBP_X86

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

/* The body both twins of the update product share: over the columns [0, cv),
   cut into chunks of FBP_CHUNK_BYTES per row of A so that the chunk of A stays
   in L1 while every block of rows of C passes over it; within a chunk, 4 rows
   of C x 2 vectors = 8 accumulators over all m. The enclosing function
   defines rows, cols, m, P, A, beta, C, chunk, cv, r and vbeta. */
#define FBP_GER_BODY(T, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO)           \
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
    }

/* The small-batch update product, for one element type: VT vector type, L lanes. */
#define FBP_GER(T, S, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO)            \
__attribute__((target("avx2,fma")))                                            \
static void fbp_##S##ger(int rows, int cols, int m, const T *P, const T *A,    \
                         T beta, T *C)                                         \
{                                                                              \
    const int chunk = FBP_CHUNK_BYTES / (int)sizeof(T);                        \
    int cv = cols - cols % (2 * L), r;                                         \
    VT vbeta = SET1(beta);                                                     \
    FBP_GER_BODY(T, VT, L, LOADU, STOREU, FMADD, MUL, SET1, ZERO)              \
    if (cv < cols)                                                             \
        fbp_##S##ger_edge(0, rows, cv, cols, m, cols, P, A, beta, C);          \
}

FBP_NT_BLOCK(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_fmadd_pd,
             _mm256_setzero_pd, fbp_hsum_pd)
FBP_NT_BLOCK(float, s, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps,
             _mm256_setzero_ps, fbp_hsum_ps)
FBP_GER(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd,
        _mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_setzero_pd)
FBP_GER(float, s, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps,
        _mm256_fmadd_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps)

#else  /* not x86: never called (fbp_have_avx2() is 0), defined for linking */

static void fbp_dgemm_nt(int m, int n, int k, const double *A, const double *W, double *Z)
{ fbp_dgemm_nt_edge(0, m, 0, n, k, A, W, Z, n); }
static void fbp_sgemm_nt(int m, int n, int k, const float *A, const float *W, float *Z)
{ fbp_sgemm_nt_edge(0, m, 0, n, k, A, W, Z, n); }
static void fbp_dger(int rows, int cols, int m, const double *P, const double *A, double beta, double *C)
{ fbp_dger_edge(0, rows, 0, cols, m, cols, P, A, beta, C); }
static void fbp_sger(int rows, int cols, int m, const float *P, const float *A, float beta, float *C)
{ fbp_sger_edge(0, rows, 0, cols, m, cols, P, A, beta, C); }

#endif

#endif  /* FASTBP_GEMM_H */
