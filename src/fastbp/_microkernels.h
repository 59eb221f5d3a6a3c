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

#endif  /* FASTBP_MICROKERNELS_H */
