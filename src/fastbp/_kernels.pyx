# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Hot loops of fastbp: fused forward, backward and update over whole epochs.

Conventions (the README's "The maths in brief"): a batch is stored as rows, A^0 = X of shape
(m, n_0); layers are l = 1..L, W^l of shape (n_l, n_{l-1}), b^l of shape
(n_l,). The code indexes layers as the maths does: W[l] = W^l, B[l] = b^l,
A[l] = A^l (A[0] the batch), delta^l, sizes[l] = n_l; only `activations`,
which comes from Python, is 0-based: activations[l - 1] is f_l. All
parameters of a network live in one flat C-contiguous vector laid out as
[W^1, b^1, W^2, b^2, ...]; the per-epoch scratch space lives in one flat
"work" vector whose layout is fixed by ``workspace_size``. Python validates
everything (dtypes, shapes, contiguity, finiteness) before calling in; these
functions trust their arguments, except for the O(1) sizes of the buffers,
which they check so that a caller's mistake is an exception instead of a
write out of bounds.

The C helpers are in csrc/: fbp_cpu.h (CPU features, FTZ/DAZ), fbp_gemm.h
(small-batch GEMM), fbp_sigmoid.h (vector exp and sigmoid), fbp_reductions.h
(norms, finiteness) and fbp_rules.h (the rule struct and the update loops).
"""

from cpython.exc cimport PyErr_CheckSignals
from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, pow, sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

# The codes Python passes in (module constants: fastbp's contract module maps
# names to them).
cpdef enum:             # activations f_l
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4
    EXP = 5             # output only: the log link of Poisson regression

cpdef enum:             # losses
    MSE = 0
    CROSS_ENTROPY = 1
    POISSON = 2         # half Poisson deviance, with an EXP output

cpdef enum:             # rule kinds (fbp_rule.kind); adamw is ADAM with a weight decay
    SGD = 0
    RMSPROP = 1
    ADAM = 2

# How a batch updates its layers, decided once per call by _update_mode.
cdef enum:
    FUSED_SGD = 0           # plain SGD, L2 decay folded into the update GEMM
    FUSED_MOMENTUM = 1      # heavy-ball momentum, velocity updated by the GEMM
    GRADIENT_THEN_RULE = 2  # gradient into `grads`, then one fused pass of the rule
    GRADIENTS_ONLY = 3      # write dJ/dW, dJ/db into `grads`, no update
    GRADIENTS_ADD = 4       # add the data terms of dJ/dW, dJ/db to `grads` (row blocks)


cdef extern from "fbp_cpu.h" nogil:
    int fbp_have_avx2()
    int fbp_have_avx512()
    unsigned fbp_flush_denormals()
    void fbp_restore_csr(unsigned old)

cdef extern from "fbp_gemm.h" nogil:
    void fbp_dgemm_nt(int m, int n, int k, const double* A, const double* W, double* Z)
    void fbp_sgemm_nt(int m, int n, int k, const float* A, const float* W, float* Z)
    void fbp_dger(int rows, int cols, int m, const double* P, const double* A,
                  double beta, double* C)
    void fbp_sger(int rows, int cols, int m, const float* P, const float* A,
                  float beta, float* C)

cdef extern from "fbp_gemm512.h" nogil:
    void fbp_dgemm_nt_avx512(int m, int n, int k, const double* A, const double* W,
                             double* Z)
    void fbp_sgemm_nt_avx512(int m, int n, int k, const float* A, const float* W, float* Z)
    void fbp_dger_avx512(int rows, int cols, int m, const double* P, const double* A,
                         double beta, double* C)
    void fbp_sger_avx512(int rows, int cols, int m, const float* P, const float* A,
                         float beta, float* C)

cdef extern from "fbp_sigmoid.h" nogil:
    void fbp_dbias_sigmoid(double* z, const double* b, int m, int n)
    void fbp_sbias_sigmoid(float* z, const float* b, int m, int n)

cdef extern from "fbp_reductions.h" nogil:
    void fbp_dnorms(const double* w, size_t n, double* squares, double* absolutes)
    void fbp_snorms(const float* w, size_t n, double* squares, double* absolutes)
    int fbp_dall_finite(const double* x, size_t n)
    int fbp_sall_finite(const float* x, size_t n)
    double fbp_dgradient_squares(const double* g, const double* w, size_t n,
                                 double l2, double l1)
    double fbp_sgradient_squares(const float* g, const float* w, size_t n,
                                 double l2, double l1)
    double fbp_dgram_squares(const double* D, const double* A, int m, int n_out, int n_in)
    double fbp_sgram_squares(const float* D, const float* A, int m, int n_out, int n_in)
    double fbp_dgram_squares_scalar(const double* D, const double* A, int m, int n_out,
                                    int n_in)
    double fbp_sgram_squares_scalar(const float* D, const float* A, int m, int n_out,
                                    int n_in)
    double fbp_dgradient_squares_scalar(const double* g, const double* w, size_t n,
                                        double l2, double l1)
    double fbp_sgradient_squares_scalar(const float* g, const float* w, size_t n,
                                        double l2, double l1)

cdef extern from "fbp_rules.h" nogil:
    # train_epoch's `rule` dict converts to this struct, key by field
    ctypedef struct fbp_rule:
        int kind
        double learning_rate
        double l2
        double l1
        double weight_decay
        double momentum
        bint nesterov
        double rho
        double beta1
        double beta2
        double epsilon
        bint bias_corrected_epsilon
    ctypedef struct fbp_step:
        double correction1
        double correction2
        double epsilon
    void fbp_dadd_penalty(double* g, const double* w, size_t n, const fbp_rule* r)
    void fbp_sadd_penalty(float* g, const float* w, size_t n, const fbp_rule* r)
    void fbp_dsgd(double* w, const double* g, double* velocity, size_t n,
                  const fbp_rule* r, int weights)
    void fbp_ssgd(float* w, const float* g, float* velocity, size_t n,
                  const fbp_rule* r, int weights)
    void fbp_dsgd_avx2(double* w, const double* g, double* velocity, size_t n,
                       const fbp_rule* r, int weights)
    void fbp_ssgd_avx2(float* w, const float* g, float* velocity, size_t n,
                       const fbp_rule* r, int weights)
    void fbp_drmsprop(double* w, const double* g, double* s, size_t n,
                      const fbp_rule* r, int weights)
    void fbp_srmsprop(float* w, const float* g, float* s, size_t n,
                      const fbp_rule* r, int weights)
    void fbp_drmsprop_avx2(double* w, const double* g, double* s, size_t n,
                           const fbp_rule* r, int weights)
    void fbp_srmsprop_avx2(float* w, const float* g, float* s, size_t n,
                           const fbp_rule* r, int weights)
    void fbp_dadam(double* w, const double* g, double* m, double* v, size_t n,
                   const fbp_rule* r, int weights, const fbp_step* step)
    void fbp_sadam(float* w, const float* g, float* m, float* v, size_t n,
                   const fbp_rule* r, int weights, const fbp_step* step)
    void fbp_dadam_avx2(double* w, const double* g, double* m, double* v, size_t n,
                        const fbp_rule* r, int weights, const fbp_step* step)
    void fbp_sadam_avx2(float* w, const float* g, float* m, float* v, size_t n,
                        const fbp_rule* r, int weights, const fbp_step* step)

# The keys of train_epoch's `rule`: the fields of fbp_rule
_RULE_KEYS = frozenset(["kind", "learning_rate", "l2", "l1", "weight_decay", "momentum",
                        "nesterov", "rho", "beta1", "beta2", "epsilon",
                        "bias_corrected_epsilon"])

# Batches of at most this many rows use the register-blocked kernels of
# fbp_gemm.h for their two big products instead of BLAS, whose packing
# and dispatch dominate at that size (bench/README.md has the measurements).
cdef bint _have_avx2 = fbp_have_avx2()
cdef Py_ssize_t _small_batch = 32 if _have_avx2 else 0
# The AVX2 twins of the update-rule loops (same bits as the SSE2 ones)
cdef bint _avx2_rules = _have_avx2
# The small-batch products' AVX-512 twins, where the CPU has AVX-512 F
cdef bint _have_avx512 = fbp_have_avx512()
cdef bint _gemm512 = _have_avx512


def small_batch_kernels():
    """Which small-batch GEMM kernels this CPU runs: 'avx512', 'avx2' or 'blas' (none)."""
    if not _have_avx2:
        return "blas"
    return "avx512" if _gemm512 else "avx2"


def _set_avx512_gemm(bint on):
    """Testing knob: the AVX-512 (True) or AVX2 (False) small-batch products; returns the old.

    Has no effect where the CPU lacks AVX-512 F.
    """
    global _gemm512
    old = _gemm512
    _gemm512 = on and _have_avx512
    return old


def _set_small_batch(Py_ssize_t rows):
    """Testing knob: use the small-batch kernels up to `rows` rows; returns the old limit.

    0 sends every product to BLAS. Has no effect without AVX2 + FMA.
    """
    global _small_batch
    old = _small_batch
    _small_batch = rows if _have_avx2 else 0
    return old


def _set_avx2_rules(bint on):
    """Testing knob: AVX2 (True) or SSE2 (False) loops for the update rules; returns the old choice.

    Has no effect without AVX2 + FMA.
    """
    global _avx2_rules
    old = _avx2_rules
    _avx2_rules = on and _have_avx2
    return old


# ---------------------------------------------------------------- scalar maths

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)

cdef inline floating _sigmoid(floating z) noexcept nogil:
    # split on the sign of z so that exp never overflows
    cdef floating e
    if z >= 0:
        e = _exp(-z)
        return 1 / (1 + e)
    e = _exp(z)
    return e / (1 + e)


cdef inline floating _softplus(floating t) noexcept nogil:
    # log(1 + e^t) = max(t, 0) + log1p(e^-|t|)
    if t > 0:
        return t + _log1p(_exp(-t))
    return _log1p(_exp(t))


# ------------------------------------------------------------------------ BLAS

cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       floating alpha, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """Row-major C := alpha * op(A).op(B) + beta * C, with C of shape (m, n)."""
    # Column-major BLAS sees the row-major C as C^T = op(B)^T op(A)^T.
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


cdef inline void _matmul_nt(const floating* a, const floating* w, floating* z,
                            Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Z (m, n) := A (m, k) . W^T, with W of shape (n, k)."""
    if m <= _small_batch:
        if floating is float:
            (fbp_sgemm_nt_avx512 if _gemm512 else fbp_sgemm_nt)(<int> m, <int> n, <int> k,
                                                                 a, w, z)
        else:
            (fbp_dgemm_nt_avx512 if _gemm512 else fbp_dgemm_nt)(<int> m, <int> n, <int> k,
                                                                 a, w, z)
    else:
        _gemm(c'N', c'T', <int> m, <int> n, <int> k, 1, a, <int> k, w, <int> k, 0,
              z, <int> n)


cdef inline void _outer_update(const floating* delta, const floating* a,
                               Py_ssize_t m, Py_ssize_t n_out, Py_ssize_t n_in,
                               floating scale, floating beta, floating* c,
                               floating* scratch) noexcept nogil:
    """C (n_out, n_in) := beta C + scale delta^T A, delta (m, n_out), A (m, n_in)."""
    cdef Py_ssize_t i, j
    if m <= _small_batch:
        # P = scale delta^T, laid out row by row for the kernel's broadcasts
        for i in range(m):
            for j in range(n_out):
                scratch[j * m + i] = scale * delta[i * n_out + j]
        if floating is float:
            (fbp_sger_avx512 if _gemm512 else fbp_sger)(<int> n_out, <int> n_in, <int> m,
                                                         scratch, a, beta, c)
        else:
            (fbp_dger_avx512 if _gemm512 else fbp_dger)(<int> n_out, <int> n_in, <int> m,
                                                         scratch, a, beta, c)
    else:
        _gemm(c'T', c'N', <int> n_out, <int> n_in, <int> m, scale, delta,
              <int> n_out, a, <int> n_in, beta, c, <int> n_in)


# ---------------------------------------------------------------- layer pieces

cdef void _bias_activation(floating* z, const floating* b, Py_ssize_t m,
                           Py_ssize_t n, int activation) noexcept nogil:
    """In place over the GEMM result z (m, n): a = f(z + b)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating t, top, total
    if activation == SIGMOID and _have_avx2:
        # lane-wise exp: the scalar libm call would dominate wide layers
        if floating is float:
            fbp_sbias_sigmoid(z, b, <int> m, <int> n)
        else:
            fbp_dbias_sigmoid(z, b, <int> m, <int> n)
        return
    for i in range(m):
        row = z + i * n
        if activation == SIGMOID:
            for j in range(n):
                row[j] = _sigmoid(row[j] + b[j])
        elif activation == TANH:
            for j in range(n):
                row[j] = _tanh(row[j] + b[j])
        elif activation == RELU:
            for j in range(n):
                t = row[j] + b[j]
                # written so that a NaN stays NaN and divergence is seen
                row[j] = 0 if t < 0 else t
        elif activation == EXP:
            for j in range(n):
                row[j] = _exp(row[j] + b[j])
        elif activation == SOFTMAX:
            # subtract the row max so exp never overflows
            top = row[0] + b[0]
            for j in range(n):
                row[j] += b[j]
                if row[j] > top:
                    top = row[j]
            total = 0
            for j in range(n):
                row[j] = _exp(row[j] - top)
                total += row[j]
            for j in range(n):
                row[j] /= total
        else:
            for j in range(n):
                row[j] += b[j]


cdef void _times_derivative(floating* delta, const floating* a, Py_ssize_t size,
                            int activation) noexcept nogil:
    """delta *= f'(z), with f' taken from the cached activation a = f(z)."""
    cdef Py_ssize_t i
    if activation == SIGMOID:
        for i in range(size):
            delta[i] *= a[i] * (1 - a[i])
    elif activation == TANH:
        for i in range(size):
            delta[i] *= 1 - a[i] * a[i]
    elif activation == RELU:
        for i in range(size):
            if not a[i] > 0:
                delta[i] = 0


cdef double _output_row(floating* a, const floating* b, const floating* y,
                        floating* delta, Py_ssize_t n, int output, int loss,
                        Py_ssize_t* n_correct) noexcept nogil:
    """One output row: a = g(z + b) in place, delta^L = dC/dz, returns C.

    Works from z while it is at hand, so that the log terms are exact and
    stable: softmax+CE uses log a_k = z_k - logsumexp(z), sigmoid+CE uses
    -log a = softplus(-z) and -log(1 - a) = softplus(z).
    """
    cdef Py_ssize_t j, best_a = 0, best_y = 0
    cdef floating z, top, total, g
    cdef double cost = 0, log_total, dot = 0
    if output == SOFTMAX:
        top = a[0] + b[0]
        for j in range(n):
            a[j] += b[j]
            if a[j] > top:
                top = a[j]
        total = 0
        for j in range(n):
            delta[j] = _exp(a[j] - top)      # stash e^(z - max) in delta
            total += delta[j]
        if loss == CROSS_ENTROPY:
            # C = -sum_k y_k log a_k = sum_k y_k (max + log total - z_k)
            log_total = top + _log(total)
            for j in range(n):
                if y[j] != 0:
                    cost += y[j] * (log_total - a[j])
                a[j] = delta[j] / total
                delta[j] = a[j] - y[j]       # delta^L = a - y
        else:
            # G = a - y; delta^L = a * (G - rowsum(a * G))
            for j in range(n):
                a[j] = delta[j] / total
                g = a[j] - y[j]
                cost += 0.5 * g * g
                dot += a[j] * g
            for j in range(n):
                delta[j] = a[j] * ((a[j] - y[j]) - <floating> dot)
    elif output == SIGMOID:
        for j in range(n):
            z = a[j] + b[j]
            a[j] = _sigmoid(z)
            g = a[j] - y[j]
            if loss == CROSS_ENTROPY:
                # -[y log a + (1-y) log(1-a)] = softplus(z) - y z
                cost += _softplus(z) - y[j] * z
                delta[j] = g
            else:
                cost += 0.5 * g * g
                delta[j] = g * a[j] * (1 - a[j])
    elif output == EXP:
        for j in range(n):
            z = a[j] + b[j]
            a[j] = _exp(z)
            g = a[j] - y[j]
            if loss == POISSON:
                # half deviance y log(y / a) - y + a, with log a = z exactly;
                # the canonical link makes delta^L = a - y
                if y[j] > 0:
                    cost += y[j] * (_log(y[j]) - z)
                cost += g
                delta[j] = g
            else:
                cost += 0.5 * g * g
                delta[j] = g * a[j]
    else:
        for j in range(n):
            a[j] += b[j]
            g = a[j] - y[j]
            cost += 0.5 * g * g
            delta[j] = g

    if n == 1:
        if (a[0] >= 0.5) == (y[0] >= 0.5):
            n_correct[0] += 1
    else:
        for j in range(1, n):
            if a[j] > a[best_a]:
                best_a = j
            if y[j] > y[best_y]:
                best_y = j
        if best_a == best_y:
            n_correct[0] += 1
    return cost


cdef double _penalty(const floating* params, const Py_ssize_t* sizes, Py_ssize_t n_layers,
                     double l2, double l1) noexcept nogil:
    """(l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1, in double, over the flat params."""
    cdef Py_ssize_t l, i, size, offset = 0
    cdef double squares = 0, absolutes = 0
    cdef const floating* w
    if l2 == 0 and l1 == 0:
        return 0
    for l in range(1, n_layers + 1):
        w = params + offset
        size = sizes[l - 1] * sizes[l]
        offset += size + sizes[l]
        if _have_avx2:
            # vectorized, many accumulators: this runs once per batch
            if floating is float:
                fbp_snorms(w, size, &squares, &absolutes)
            else:
                fbp_dnorms(w, size, &squares, &absolutes)
        else:
            for i in range(size):
                squares += <double> w[i] * w[i]
                absolutes += w[i] if w[i] >= 0 else -w[i]
    return 0.5 * l2 * squares + l1 * absolutes


cdef void _column_sums(const floating* delta, Py_ssize_t m, Py_ssize_t n,
                       floating* out) noexcept nogil:
    cdef Py_ssize_t i, j
    for j in range(n):
        out[j] = 0
    for i in range(m):
        for j in range(n):
            out[j] += delta[i * n + j]


# ---------------------------------------------------------------- the buffers

cdef struct Buffers:
    # Every buffer pointer of one call, filled by _bind and released by
    # _unbind, the same for all entry points. A struct cannot be fused over
    # float and double, so the pointers are untyped: each routine casts them
    # to its floating type. Per-layer arrays are indexed by l (see the top).
    Py_ssize_t n_layers         # L
    const Py_ssize_t* sizes     # n_0 .. n_L
    const int* activations      # f_1 .. f_L at 0 .. L-1
    int loss
    void** W                    # W[l] = W^l, l = 1..L (W[0] unused): into params
    void** B                    # B[l] = b^l
    void** A                    # A[l] = A^l, l = 0..L: A^0 set per batch, the rest in work
    void** GW                   # dJ/dW^l, dJ/db^l: into grads, or NULL
    void** GB
    void** M1W                  # moment1 (running sum of gradients) per layer, or NULL
    void** M1B
    void** M2W                  # moment2 (average of squared gradients) per layer, or NULL
    void** M2B
    void* delta                 # delta^l, (m, n_l), and the spare one that the
    void* spare                 # recursion swaps with it: each (capacity, widest)
    void* scratch               # (eta/m) (delta^l)^T laid out for fbp_?ger
    void* x_rows                # the gathered rows of X and of Y
    void* y_rows
    void* column_sums           # sum over rows of delta^l
    double* grad_norms          # sum over batches of ||dJ/dW^l||_F at l - 1, or NULL
    void* weight_rows           # the gathered sample weights of a batch, or NULL
    double denominator          # the batch's normaliser: m, or sum_i w_i with weights


cdef void _layer_views(floating* vector, const Py_ssize_t* sizes, Py_ssize_t n_layers,
                       void** W, void** B) noexcept nogil:
    """W[l], B[l] for l = 1..L into a vector with the layout of params (or NULL)."""
    cdef Py_ssize_t l, offset = 0
    W[0] = B[0] = NULL
    for l in range(1, n_layers + 1):
        W[l] = vector + offset if vector != NULL else NULL
        offset += sizes[l - 1] * sizes[l]
        B[l] = vector + offset if vector != NULL else NULL
        offset += sizes[l]


cdef int _bind(Buffers* buf, floating* params, floating* grads, floating* moment1,
               floating* moment2, floating* work, const Py_ssize_t[::1] sizes,
               const int[::1] activations, int loss, Py_ssize_t capacity) except -1:
    """Point `buf` into the flat parameter, gradient, moment and work vectors.

    The work layout, for batches of up to `capacity` rows, is the one of
    workspace_size. Raises MemoryError; on success, release with _unbind.
    """
    cdef Py_ssize_t l, offset = 0, widest = 0, n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t stride = n_layers + 1
    cdef void** table = <void**> malloc(9 * stride * sizeof(void*))
    if table == NULL:
        raise MemoryError()
    buf.n_layers = n_layers
    buf.sizes = &sizes[0]
    buf.activations = &activations[0]
    buf.loss = loss
    buf.W, buf.B, buf.A = table, table + stride, table + 2 * stride
    buf.GW, buf.GB = table + 3 * stride, table + 4 * stride
    buf.M1W, buf.M1B = table + 5 * stride, table + 6 * stride
    buf.M2W, buf.M2B = table + 7 * stride, table + 8 * stride
    _layer_views(params, buf.sizes, n_layers, buf.W, buf.B)
    _layer_views(grads, buf.sizes, n_layers, buf.GW, buf.GB)
    _layer_views(moment1, buf.sizes, n_layers, buf.M1W, buf.M1B)
    _layer_views(moment2, buf.sizes, n_layers, buf.M2W, buf.M2B)
    buf.A[0] = NULL
    for l in range(1, n_layers + 1):
        buf.A[l] = work + offset
        offset += capacity * sizes[l]
        if sizes[l] > widest:
            widest = sizes[l]
    buf.delta = work + offset
    offset += capacity * widest
    buf.spare = work + offset
    offset += capacity * widest
    buf.scratch = work + offset
    offset += capacity * widest
    buf.x_rows = work + offset
    offset += capacity * sizes[0]
    buf.y_rows = work + offset
    offset += capacity * sizes[n_layers]
    buf.column_sums = work + offset
    buf.grad_norms = NULL
    buf.weight_rows = NULL
    buf.denominator = 0
    return 0


cdef inline void _unbind(Buffers* buf) noexcept:
    free(buf.W)         # the start of the one table


# ---------------------------------------------------------------- whole network

cdef double _forward(Buffers* buf, floating* x, const floating* y, const floating* sw,
                     Py_ssize_t m, Py_ssize_t* n_correct,
                     double* correct_weight) noexcept nogil:
    """A^1 .. A^L from A^0 = x (m rows); with targets y, also delta^L and sum_i C_i.

    With sample weights sw (NULL: none), the cost is sum_i w_i C_i, each row
    of delta^L is scaled by its w_i, and correct_weight[0] gains the w_i of
    each correct prediction (n_correct still counts them).
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, n_layers = buf.n_layers, before
    cdef double row_cost
    cdef floating weight
    cdef floating** W = <floating**> buf.W
    cdef floating** B = <floating**> buf.B
    cdef floating** A = <floating**> buf.A
    cdef floating* delta = <floating*> buf.delta
    cdef double cost = 0
    A[0] = x
    for l in range(1, n_layers + 1):
        n_in = buf.sizes[l - 1]
        n_out = buf.sizes[l]
        # Z^l = A^{l-1} (W^l)^T, then b^l and f_l while it is hot: A^l in place of Z^l
        _matmul_nt(A[l - 1], W[l], A[l], m, n_out, n_in)
        if l < n_layers or y == NULL:
            _bias_activation(A[l], B[l], m, n_out, buf.activations[l - 1])
        elif sw == NULL:
            for i in range(m):
                cost += _output_row(A[l] + i * n_out, B[l], y + i * n_out,
                                    delta + i * n_out, n_out, buf.activations[l - 1],
                                    buf.loss, n_correct)
        else:
            for i in range(m):
                before = n_correct[0]
                row_cost = _output_row(A[l] + i * n_out, B[l], y + i * n_out,
                                       delta + i * n_out, n_out, buf.activations[l - 1],
                                       buf.loss, n_correct)
                weight = sw[i]
                # sum_i w_i C_i; delta^L_i <- w_i delta^L_i (scikit-learn's
                # deltas[last] *= sample_weight)
                cost += weight * row_cost
                for j in range(n_out):
                    delta[i * n_out + j] *= weight
                if n_correct[0] != before:
                    correct_weight[0] += weight
    return cost


cdef int _update_mode(const fbp_rule* rule) noexcept nogil:
    """FUSED_SGD or FUSED_MOMENTUM when only the L2 decay joins the data gradient
    of plain SGD (then it rides on the update GEMM), else GRADIENT_THEN_RULE."""
    if (rule.kind == SGD and rule.l1 == 0 and rule.weight_decay == 0
            and not rule.nesterov):
        return FUSED_MOMENTUM if rule.momentum != 0 else FUSED_SGD
    return GRADIENT_THEN_RULE


cdef inline void _apply_rule(floating* w, const floating* g, floating* moment1,
                             floating* moment2, Py_ssize_t size, bint weights,
                             const fbp_rule* rule, const fbp_step* step) noexcept nogil:
    """One fused pass of the rule (fbp_rules.h) over W^l (weights) or b^l, from g."""
    if rule.kind == ADAM:
        if floating is float:
            (fbp_sadam_avx2 if _avx2_rules else fbp_sadam)(
                w, g, moment1, moment2, size, rule, weights, step)
        else:
            (fbp_dadam_avx2 if _avx2_rules else fbp_dadam)(
                w, g, moment1, moment2, size, rule, weights, step)
    elif rule.kind == RMSPROP:
        if floating is float:
            (fbp_srmsprop_avx2 if _avx2_rules else fbp_srmsprop)(
                w, g, moment2, size, rule, weights)
        else:
            (fbp_drmsprop_avx2 if _avx2_rules else fbp_drmsprop)(
                w, g, moment2, size, rule, weights)
    else:
        if floating is float:
            (fbp_ssgd_avx2 if _avx2_rules else fbp_ssgd)(w, g, moment1, size, rule, weights)
        else:
            (fbp_dsgd_avx2 if _avx2_rules else fbp_dsgd)(w, g, moment1, size, rule, weights)


cdef inline double _gradient_norm(const floating* g, const floating* w, Py_ssize_t size,
                                  double l2, double l1) noexcept nogil:
    """||g + l2 W + l1 sign(W)||_F in double: dJ/dW^l from its data term g."""
    cdef double squares
    if _have_avx2:
        if floating is float:
            squares = fbp_sgradient_squares(g, w, size, l2, l1)
        else:
            squares = fbp_dgradient_squares(g, w, size, l2, l1)
    elif floating is float:
        squares = fbp_sgradient_squares_scalar(g, w, size, l2, l1)
    else:
        squares = fbp_dgradient_squares_scalar(g, w, size, l2, l1)
    return sqrt(squares)


cdef inline double _gram_norm(const floating* delta, const floating* a, Py_ssize_t m,
                              Py_ssize_t n_out, Py_ssize_t n_in,
                              double denominator) noexcept nogil:
    """||(1/denominator) delta^T A||_F in double, without the product."""
    # ||delta^T A||_F^2 = sum_ij (a_i . a_j)(d_i . d_j): m(m+1)/2 (n_in + n_out)
    # multiply-adds instead of m n_in n_out
    cdef double squares
    if _have_avx2:
        if floating is float:
            squares = fbp_sgram_squares(delta, a, <int> m, <int> n_out, <int> n_in)
        else:
            squares = fbp_dgram_squares(delta, a, <int> m, <int> n_out, <int> n_in)
    elif floating is float:
        squares = fbp_sgram_squares_scalar(delta, a, <int> m, <int> n_out, <int> n_in)
    else:
        squares = fbp_dgram_squares_scalar(delta, a, <int> m, <int> n_out, <int> n_in)
    # rounding can leave a sum of ~0 slightly negative
    return sqrt(squares) / denominator if squares > 0 else 0.0


cdef void _update_layer(Buffers* buf, Py_ssize_t l, const floating* delta, Py_ssize_t m,
                        int mode, const fbp_rule* rule, const fbp_step* step) noexcept nogil:
    """Layer l's update from delta^l and A^{l-1} (or its gradient): every rule goes here.

    The data terms are normalised by buf.denominator, written m below: the
    batch's row count, or its sum of sample weights (whose delta^L rows carry
    the weights already).
    """
    cdef Py_ssize_t i, j, n_in = buf.sizes[l - 1], n_out = buf.sizes[l]
    cdef Py_ssize_t size = n_in * n_out
    cdef unsigned csr
    cdef floating* w = (<floating**> buf.W)[l]
    cdef floating* b = (<floating**> buf.B)[l]
    cdef const floating* a = (<floating**> buf.A)[l - 1]
    cdef floating* column_sums = <floating*> buf.column_sums
    cdef floating* scratch = <floating*> buf.scratch
    cdef floating* v
    cdef floating* gw
    cdef floating* gb
    cdef double denominator = buf.denominator
    cdef floating rate = <floating> (rule.learning_rate / denominator)     # eta / m
    cdef floating eta_l2 = <floating> (rule.learning_rate * rule.l2)
    cdef floating mu = <floating> rule.momentum
    cdef Py_ssize_t gram_weight = 1
    if floating is float:
        gram_weight = 2
    _column_sums(delta, m, n_out, column_sums)
    if buf.grad_norms != NULL and mode != GRADIENT_THEN_RULE:
        # the fused updates never form dJ/dW^l, and must not change for its
        # norm: without L2, by the Gram identity when that is cheaper than
        # the product; else an extra product (1/m) (delta^l)^T A^{l-1} into
        # `grads`, before W^l changes. The Gram's dots run in double, on half
        # the lanes of a float32 product: they count twice there (callgrind:
        # the float32 medium workload's first layer, m = 64, lost by 30%)
        if <floating> rule.l2 == 0 and (m + 1) * (n_in + n_out) * gram_weight < size:
            buf.grad_norms[l - 1] += _gram_norm(delta, a, m, n_out, n_in, denominator)
        else:
            gw = (<floating**> buf.GW)[l]
            _outer_update(delta, a, m, n_out, n_in, <floating> (1.0 / denominator), 0, gw,
                          scratch)
            buf.grad_norms[l - 1] += _gradient_norm(gw, w, size, <floating> rule.l2, 0)
    if mode == FUSED_SGD:
        # W^l <- (1 - eta l2) W^l - (eta/m) (delta^l)^T A^{l-1}: the decay is the GEMM's beta
        _outer_update(delta, a, m, n_out, n_in, -rate, 1 - eta_l2, w, scratch)
        for j in range(n_out):
            b[j] -= rate * column_sums[j]
    elif mode == FUSED_MOMENTUM:
        # v <- mu v - eta dJ/dW^l (its data term from the GEMM); W^l <- W^l + v
        v = (<floating**> buf.M1W)[l]
        _outer_update(delta, a, m, n_out, n_in, -rate, mu, v, scratch)
        if eta_l2 != 0:
            for i in range(size):
                v[i] -= eta_l2 * w[i]
                w[i] += v[i]
        else:
            for i in range(size):
                w[i] += v[i]
        v = (<floating**> buf.M1B)[l]
        for j in range(n_out):
            v[j] = mu * v[j] - rate * column_sums[j]
            b[j] += v[j]
    elif mode == GRADIENTS_ADD:
        # one block of a data set's rows: its share (1/m_total) (delta^l)^T A^{l-1}
        gw = (<floating**> buf.GW)[l]
        gb = (<floating**> buf.GB)[l]
        _outer_update(delta, a, m, n_out, n_in, <floating> (1.0 / denominator), 1, gw,
                      scratch)
        for j in range(n_out):
            gb[j] += column_sums[j] / <floating> denominator
    else:
        # dJ/dW^l = (1/m) (delta^l)^T A^{l-1} (+ penalties); dJ/db^l = (1/m) sum_rows delta^l
        gw = (<floating**> buf.GW)[l]
        gb = (<floating**> buf.GB)[l]
        _outer_update(delta, a, m, n_out, n_in, <floating> (1.0 / denominator), 0, gw,
                      scratch)
        for j in range(n_out):
            gb[j] = column_sums[j] / <floating> denominator
        if mode == GRADIENT_THEN_RULE:
            if buf.grad_norms != NULL:
                # ||dJ/dW^l||_F at the W^l of the forward pass, penalties included
                buf.grad_norms[l - 1] += _gradient_norm(gw, w, size, <floating> rule.l2,
                                                        <floating> rule.l1)
            # subnormal moments flushed to zero: see fbp_flush_denormals
            csr = fbp_flush_denormals()
            _apply_rule(w, gw, (<floating**> buf.M1W)[l], (<floating**> buf.M2W)[l],
                        size, True, rule, step)
            _apply_rule(b, gb, (<floating**> buf.M1B)[l], (<floating**> buf.M2B)[l],
                        n_out, False, rule, step)
            fbp_restore_csr(csr)
        elif <floating> rule.l2 != 0 or <floating> rule.l1 != 0:
            # GRADIENTS_ONLY: dJ/dW^l += l2 W^l + l1 sign(W^l)
            if floating is float:
                fbp_sadd_penalty(gw, w, size, rule)
            else:
                fbp_dadd_penalty(gw, w, size, rule)


cdef void _backward(Buffers* buf, floating* delta, Py_ssize_t m, int mode,
                    const fbp_rule* rule, const fbp_step* step) noexcept nogil:
    """Backpropagate delta^L (in `delta`), updating each layer on the way down.

    Layer l is updated right after delta^{l-1} has been computed from the
    old W^l, so the recursion always sees the parameters of the forward pass.
    """
    cdef Py_ssize_t l, n_in, n_out
    cdef floating** W = <floating**> buf.W
    cdef floating** A = <floating**> buf.A
    cdef floating* spare = <floating*> buf.spare
    cdef floating* swap
    for l in range(buf.n_layers, 0, -1):
        n_in = buf.sizes[l - 1]
        n_out = buf.sizes[l]
        if l > 1:
            # delta^{l-1} = (delta^l W^l) * f_{l-1}'(A^{l-1}); the input layer needs none
            _gemm(c'N', c'N', <int> m, <int> n_in, <int> n_out, 1, delta,
                  <int> n_out, W[l], <int> n_in, 0, spare, <int> n_in)
            _times_derivative(spare, A[l - 1], m * n_in, buf.activations[l - 2])
        _update_layer(buf, l, delta, m, mode, rule, step)
        if l > 1:
            swap = delta
            delta = spare
            spare = swap


cdef double _batch(Buffers* buf, floating* x, const floating* y, const floating* sw,
                   Py_ssize_t m, int mode, const fbp_rule* rule, const fbp_step* step,
                   Py_ssize_t* n_correct, double* correct_weight) noexcept nogil:
    """One batch of m rows, A^0 = x against y (weights sw, or NULL): forward,
    delta^L, backward with the update (or the gradient, by `mode`), normalised
    by buf.denominator. Returns sum_i w_i C_i before the update."""
    cdef double cost = _forward(buf, x, y, sw, m, n_correct, correct_weight)
    _backward(buf, <floating*> buf.delta, m, mode, rule, step)
    return cost


# ------------------------------------------------------------- buffers & checks

def all_finite(const floating[::1] values not None):
    """True when no value is NaN or infinite: one GIL-free, memory-bound pass."""
    cdef bint result = True
    cdef Py_ssize_t n = values.shape[0]
    if n == 0:
        return True
    with nogil:
        result = _block_finite(&values[0], n)
    return result


def one_hot_rows(const floating[:, ::1] Y not None):
    """True when every row of Y holds one 1 and zeros elsewhere: one GIL-free pass."""
    cdef Py_ssize_t i, j, ones
    cdef bint result = True
    with nogil:
        for i in range(Y.shape[0]):
            ones = 0
            for j in range(Y.shape[1]):
                if Y[i, j] == 1:
                    ones += 1
                elif Y[i, j] != 0:
                    ones = 2
                    break
            if ones != 1:
                result = False
                break
    return result


cdef int _scalar_all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if x[i] * 0 != 0:
            return 0
    return 1


cdef inline bint _block_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    if _have_avx2:
        if floating is float:
            return fbp_sall_finite(x, n) != 0
        else:
            return fbp_dall_finite(x, n) != 0
    return _scalar_all_finite(x, n) != 0


class NonFiniteInput(ValueError):
    """train_epoch(check_inputs=True) met NaN or infinity in X."""


def parameter_count(const Py_ssize_t[::1] sizes not None):
    """Length of the flat parameter vector [W^1, b^1, W^2, b^2, ...].

    Raises ValueError for a non-positive size and OverflowError when the
    count does not fit in a Py_ssize_t (the arithmetic is done in Python
    integers, so it cannot wrap).
    """
    cdef Py_ssize_t k
    total = 0
    for k in range(sizes.shape[0]):
        if sizes[k] < 1:
            raise ValueError("layer sizes must be positive")
    for k in range(sizes.shape[0] - 1):
        total += <object> sizes[k + 1] * (<object> sizes[k] + 1)
    if total > PY_SSIZE_T_MAX:
        raise OverflowError("the network has too many parameters to address")
    return total


def workspace_size(const Py_ssize_t[::1] sizes not None, Py_ssize_t capacity):
    """Length of the work vector for batches of up to `capacity` rows.

    Layout: A^1 .. A^L, three buffers of the widest layer (two deltas and the
    scaled delta^T of the small-batch update), a gathered input batch, a
    gathered target batch, one row of column sums. OverflowError when the
    length does not fit in a Py_ssize_t.
    """
    cdef Py_ssize_t k, n_layers = sizes.shape[0] - 1
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    widest = 0
    total = 0
    for k in range(1, n_layers + 1):
        total += sizes[k]
        widest = max(widest, sizes[k])
    size = <object> capacity * (total + 3 * widest + sizes[0] + sizes[n_layers]) + widest
    if size > PY_SSIZE_T_MAX:
        raise OverflowError("the workspace for this batch size is too large to address")
    return size


cdef _check_network(Py_ssize_t n_params, const Py_ssize_t[::1] sizes,
                    Py_ssize_t n_activations):
    if sizes.shape[0] < 2:
        raise ValueError("sizes needs at least an input and an output layer")
    if n_activations != sizes.shape[0] - 1:
        raise ValueError("activations needs one code per layer")
    if n_params != parameter_count(sizes):
        raise ValueError("params does not match sizes")


cdef _check_work(Py_ssize_t n_work, const Py_ssize_t[::1] sizes, Py_ssize_t capacity):
    if n_work < workspace_size(sizes, capacity):
        raise ValueError("work is too small for this batch size; "
                         "allocate it with workspace_size(sizes, capacity)")


cdef _check_data(Py_ssize_t rows_x, Py_ssize_t cols_x, Py_ssize_t rows_y,
                 Py_ssize_t cols_y, const Py_ssize_t[::1] sizes):
    if cols_x != sizes[0] or cols_y != sizes[sizes.shape[0] - 1] or rows_x != rows_y:
        raise ValueError("X and Y shapes do not match the network")


# ------------------------------------------------------------------ entry points

cdef Py_ssize_t _find_out_of_range(const Py_ssize_t* order, Py_ssize_t n) noexcept nogil:
    """First position of `order` whose value is not in [0, n), or -1."""
    cdef Py_ssize_t i
    for i in range(n):
        if order[i] < 0 or order[i] >= n:
            return i
    return -1


cdef floating* _data_or_null(floating[::1] vector) noexcept:
    return &vector[0] if vector.shape[0] > 0 else NULL



cdef fbp_rule _as_rule(rule) except *:
    """train_epoch's `rule` dict as the C struct, refusing unknown or missing keys."""
    if not isinstance(rule, dict):
        raise TypeError(f"rule must be a dict, not {type(rule).__name__}")
    if rule.keys() != _RULE_KEYS:
        raise ValueError(f"rule must have exactly the keys {sorted(_RULE_KEYS)}; "
                         f"it has {sorted(rule)}")
    cdef fbp_rule r = rule
    return r


def needs_gradients(rule):
    """True when train_epoch needs the `grads` buffer for this rule (gradient then rule)."""
    cdef fbp_rule r = _as_rule(rule)
    return _update_mode(&r) == GRADIENT_THEN_RULE


def penalty(const floating[::1] params not None, const Py_ssize_t[::1] sizes not None,
            double l2, double l1):
    """(l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1 in double: train_epoch's own sum."""
    cdef double result
    if sizes.shape[0] < 2:
        raise ValueError("sizes needs at least an input and an output layer")
    if params.shape[0] != parameter_count(sizes):
        raise ValueError("params does not match sizes")
    with nogil:
        result = _penalty(&params[0], &sizes[0], sizes.shape[0] - 1, l2, l1)
    return result


def train_epoch(floating[::1] params, floating[::1] grads, floating[::1] moment1,
                floating[::1] moment2, const Py_ssize_t[::1] sizes,
                const int[::1] activations, int loss,
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] order, Py_ssize_t batch_size,
                floating[::1] work, double[::1] progress, rule,
                long long step=0, bint check_signals=False, bint check_inputs=False,
                grad_norms=None, sample_weight=None, bint l2_per_sample=False):
    """One epoch of mini-batch training in one GIL-free call.

    Batches are X[order[0:b]], X[order[b:2b]], ... (an empty `order` means
    0, 1, ..., n-1, and then rows are read in place, not gathered); each
    batch is forward, output delta, backward and update, all in `work`.

    `rule` is a dict with exactly the keys kind (SGD, RMSPROP or ADAM),
    learning_rate, l2, l1, weight_decay, momentum, nesterov, rho, beta1,
    beta2, epsilon and bias_corrected_epsilon (Adam: True adds epsilon to
    sqrt(vhat); False to sqrt(v) before the bias correction, the
    epsilon-hat form of Kingma and Ba that scikit-learn and Keras use). grads, moment1 and moment2 have the layout of params,
    or are empty where the rule does not use them: grads is scratch for the
    gradient of the rules that need one (see needs_gradients); moment1 is the
    running sum of gradients (sgd momentum's velocity, adam's first moment);
    moment2 the running average of squared gradients (rmsprop's, adam's
    second moment). `step` counts the updates made before this epoch (Adam's
    bias correction uses step + 1 for the first batch).

    After every batch, progress[0:3] holds (batches done, sum of m_B * J_B
    so far, correct predictions so far). A `progress` of 5 entries also
    gains, batch by batch, the two terms of J_B weighed by the batch's row
    count m_B (not its weight sum): progress[3] += m_B * (data term of J_B),
    progress[4] += m_B * (penalty term of J_B), the sums of scikit-learn's
    loss_ (its accumulated batch_loss * batch size); they are added to, not
    reset. With check_signals, the GIL is
    taken every few milliseconds of work to run Python's signal handlers:
    a KeyboardInterrupt then propagates from here, between two batches, so
    the parameters are those after the last completed update and `progress`
    tells how far the epoch got.

    With check_inputs, the rows of each batch are checked for NaN and
    infinity right after they are gathered (in cache, so at little cost
    instead of a separate pass over X): at the first batch that holds one,
    the epoch stops before that batch's forward pass and NonFiniteInput is
    raised, with the parameters of the batches before it updated.

    With grad_norms (one double per layer), each batch adds ||dJ/dW^l||_F
    (penalties included, at the parameters before its update) to
    grad_norms[l - 1]; grads must then have the layout of params whatever
    the rule, since the fused SGD updates, which otherwise never form
    dJ/dW^l, use it when the Gram identity does not apply (l2 != 0) or costs
    more than the product. The updates are the same, bit for bit.

    With sample_weight (one non-negative weight per row of X, the dtype of
    X), each batch's data term is sum_{i in B} w_i C_i / sum_{i in B} w_i and
    its gradients are normalised the same way, the weights gathered with
    the rows; m_B below is then the batch's weight sum W_B. A batch whose
    weights sum to 0 is skipped: no update, not counted in progress[0].

    With l2_per_sample, each batch's L2 coefficient is rule l2 / m_B (m_B
    its row count, or its weight sum W_B): scikit-learn's alpha, which adds
    (alpha / 2) ||W||^2 / m_B to J_B and alpha W / m_B to its gradient, so
    a shorter last batch is penalised more. Every update path takes it: the
    fused SGD decay (the GEMM's beta), momentum, the rules' gradients, the
    loss and grad_norms.

    Returns (sum over batches of m_B * J_B, number of correct predictions),
    each J_B measured at the parameters before that batch's update; with
    sample_weight, the second is the weight sum of the correct predictions.
    """
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_in = sizes[0], n_out = sizes[n_layers]
    cdef Py_ssize_t n_params = params.shape[0]
    cdef Py_ssize_t start, stop, m, i, n_correct = 0, batches = 0, check_every
    cdef Py_ssize_t bad_row
    cdef bint gather = order.shape[0] > 0, finite = True
    cdef double total = 0, penalty, correct_weight = 0, weight_sum, data
    cdef bint split = progress.shape[0] >= 5
    cdef const floating* sw = NULL
    cdef fbp_rule r = _as_rule(rule)
    cdef fbp_rule batch_rule = r    # r with this batch's l2 (l2_per_sample)
    cdef fbp_step corrections
    cdef int mode = _update_mode(&r)
    cdef Buffers buf
    cdef floating* x
    cdef const floating* y
    # typed here, not in the signature: a memoryview default would add a
    # defaults object that every garbage collection then traverses
    cdef double[::1] norms = grad_norms
    cdef const floating[::1] weights = sample_weight
    cdef bint weighted = weights is not None

    _check_network(n_params, sizes, activations.shape[0])
    _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
    if weighted and weights.shape[0] != X.shape[0]:
        raise ValueError("sample_weight needs one weight per row of X")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    # a batch never holds more than the data: the work is sized for that
    if batch_size > n_samples:
        batch_size = max(n_samples, 1)
    _check_work(work.shape[0], sizes, batch_size)
    if gather:
        if order.shape[0] != n_samples:
            raise ValueError("order must be empty or a permutation of the rows")
        with nogil:
            bad_row = _find_out_of_range(&order[0], n_samples)
        if bad_row >= 0:
            raise ValueError(f"order[{bad_row}] is not a row index of X")
    if r.kind not in (SGD, RMSPROP, ADAM):
        raise ValueError("unknown rule kind: use SGD, RMSPROP or ADAM")
    if progress.shape[0] < 3:
        raise ValueError("progress needs 3 entries")
    if mode == GRADIENT_THEN_RULE and grads.shape[0] != n_params:
        raise ValueError("grads must have the layout of params")
    if norms is not None:
        if norms.shape[0] != n_layers:
            raise ValueError("grad_norms needs one entry per layer")
        if grads.shape[0] != n_params:
            raise ValueError("grads must have the layout of params when grad_norms is given")
    if ((r.kind == ADAM or (r.kind == SGD and r.momentum != 0))
            and moment1.shape[0] != n_params):
        raise ValueError("moment1 must have the layout of params")
    if (r.kind == ADAM or r.kind == RMSPROP) and moment2.shape[0] != n_params:
        raise ValueError("moment2 must have the layout of params")
    if n_samples == 0:
        return 0.0, 0
    # look for signals about every 2e6 multiply-adds of work (~ a millisecond)
    check_every = max(1, 2000000 // max(1, batch_size * n_params))

    _bind(&buf, &params[0], _data_or_null(grads), _data_or_null(moment1),
          _data_or_null(moment2), &work[0], sizes, activations, loss, batch_size)
    if norms is not None:
        buf.grad_norms = &norms[0]
    if weighted and gather:
        buf.weight_rows = malloc(batch_size * sizeof(floating))
        if buf.weight_rows == NULL:
            _unbind(&buf)
            raise MemoryError()
    try:
        with nogil:
            start = 0
            while start < n_samples:
                stop = start + batch_size
                if stop > n_samples:
                    stop = n_samples
                m = stop - start
                if gather:
                    x = <floating*> buf.x_rows
                    for i in range(m):
                        memcpy(x + i * n_in, &X[order[start + i], 0],
                               n_in * sizeof(floating))
                        memcpy((<floating*> buf.y_rows) + i * n_out, &Y[order[start + i], 0],
                               n_out * sizeof(floating))
                    y = <floating*> buf.y_rows
                else:
                    x = <floating*> &X[start, 0]
                    y = &Y[start, 0]
                if check_inputs and not _block_finite(x, m * n_in):
                    finite = False
                    break
                if weighted:
                    if gather:
                        for i in range(m):
                            (<floating*> buf.weight_rows)[i] = weights[order[start + i]]
                        sw = <floating*> buf.weight_rows
                    else:
                        sw = &weights[start]
                    weight_sum = 0
                    for i in range(m):
                        weight_sum += sw[i]
                    if weight_sum == 0:
                        # no data in this batch: J_B and its gradient are undefined
                        start = stop
                        continue
                    buf.denominator = weight_sum
                else:
                    buf.denominator = <double> m
                if l2_per_sample:
                    batch_rule.l2 = r.l2 / buf.denominator
                step += 1
                if r.kind == ADAM:
                    corrections.correction1 = 1 / (1 - pow(r.beta1, <double> step))
                    corrections.correction2 = 1 / (1 - pow(r.beta2, <double> step))
                    # Kingma and Ba's epsilon-hat form (scikit-learn's, Keras'):
                    # lr c1 m / (sqrt(c2) (sqrt(v) + eps)) is lr (m c1) / (sqrt(v c2)
                    # + eps sqrt(c2))
                    corrections.epsilon = r.epsilon if r.bias_corrected_epsilon else (
                        r.epsilon * sqrt(corrections.correction2))
                penalty = _penalty(&params[0], &sizes[0], n_layers, batch_rule.l2, r.l1)
                data = _batch(&buf, x, y, sw, m, mode, &batch_rule, &corrections,
                              &n_correct, &correct_weight)
                total += data + buf.denominator * penalty
                start = stop
                batches += 1
                progress[0] = batches
                progress[1] = total
                progress[2] = correct_weight if weighted else n_correct
                if split:
                    # J_B's two terms, each weighed by the batch's row count
                    progress[3] += m * (data / buf.denominator)
                    progress[4] += m * penalty
                if check_signals and batches % check_every == 0:
                    with gil:
                        PyErr_CheckSignals()
    finally:
        free(buf.weight_rows)
        _unbind(&buf)
    if not finite:
        raise NonFiniteInput(f"X holds NaN or infinity in the batch of rows from {start}")
    if weighted:
        return total, correct_weight
    return total, n_correct


def loss_and_gradients(const floating[::1] params, floating[::1] grads,
                       const Py_ssize_t[::1] sizes, const int[::1] activations,
                       int loss, const floating[:, ::1] X,
                       const floating[:, ::1] Y, floating[::1] work, double l2,
                       double l1=0.0, sample_weight=None, bint l2_per_sample=False,
                       Py_ssize_t capacity=0):
    """J on the batch (X, Y) and dJ/dW, dJ/db written into `grads`.

    `work` must hold a batch of `capacity` rows (0: X.shape[0]); a larger X
    is taken `capacity` rows at a time within the one GIL-free call, each
    block adding its share of the data terms, and the result is the one
    batch's (a full-batch solver's objective, in bounded memory). With
    sample_weight (one per row, weights summing to W > 0), J = sum_i w_i C_i
    / W + penalties and the gradients are normalised by W. Returns (J,
    n_correct), n_correct the weight sum of the correct predictions with
    sample_weight. With l2_per_sample the L2 coefficient is l2 / m (l2 / W
    with weights), as train_epoch has it.
    """
    cdef Py_ssize_t m = X.shape[0], n_correct = 0, i, start, rows, l, size, offset
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1
    cdef double total = 0, correct_weight = 0, weight_sum = 0
    cdef const floating[::1] weights = sample_weight
    cdef const floating* sw = NULL
    cdef fbp_rule r
    cdef Buffers buf

    _check_network(params.shape[0], sizes, activations.shape[0])
    _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
    if m == 0:
        raise ValueError("X must have at least one row")
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    if capacity == 0 or capacity > m:
        capacity = m
    _check_work(work.shape[0], sizes, capacity)
    if grads.shape[0] != params.shape[0]:
        raise ValueError("grads must have the layout of params")
    if weights is not None:
        if weights.shape[0] != m:
            raise ValueError("sample_weight needs one weight per row of X")
        for i in range(m):
            weight_sum += weights[i]
        if not weight_sum > 0:
            raise ValueError("sample_weight must not sum to 0")
        sw = &weights[0]
    else:
        weight_sum = <double> m
    if l2_per_sample:
        l2 = l2 / weight_sum

    # only the penalties of a rule matter for the gradients
    r = fbp_rule(kind=SGD, learning_rate=0, l2=l2, l1=l1, weight_decay=0, momentum=0,
                 nesterov=False, rho=0, beta1=0, beta2=0, epsilon=0,
                 bias_corrected_epsilon=True)
    _bind(&buf, <floating*> &params[0], &grads[0], NULL, NULL, &work[0], sizes,
          activations, loss, capacity)
    buf.denominator = weight_sum
    try:
        with nogil:
            if capacity == m:
                total = _batch(&buf, <floating*> &X[0, 0], &Y[0, 0], sw, m, GRADIENTS_ONLY,
                               &r, NULL, &n_correct, &correct_weight)
            else:
                for i in range(grads.shape[0]):
                    grads[i] = 0
                start = 0
                while start < m:
                    rows = min(capacity, m - start)
                    total += _batch(&buf, <floating*> &X[start, 0], &Y[start, 0],
                                    sw + start if sw != NULL else NULL, rows, GRADIENTS_ADD,
                                    &r, NULL, &n_correct, &correct_weight)
                    start += rows
                if <floating> l2 != 0 or <floating> l1 != 0:
                    offset = 0
                    for l in range(1, n_layers + 1):
                        size = sizes[l - 1] * sizes[l]
                        if floating is float:
                            fbp_sadd_penalty(&grads[offset], &params[offset], size, &r)
                        else:
                            fbp_dadd_penalty(&grads[offset], &params[offset], size, &r)
                        offset += size + sizes[l]
            total = total / weight_sum
            total += _penalty(&params[0], &sizes[0], n_layers, l2, l1)
    finally:
        _unbind(&buf)
    if sw != NULL:
        return total, correct_weight
    return total, n_correct


def forward(const floating[::1] params, const Py_ssize_t[::1] sizes,
            const int[::1] activations, int loss, const floating[:, ::1] X,
            const floating[:, ::1] Y, floating[:, ::1] out, floating[::1] work,
            Py_ssize_t capacity, bint check_signals=False, sample_weight=None):
    """Output activations A^L of X into `out`, `capacity` rows at a time.

    With a Y of X's length (an empty Y skips this), also returns the data
    cost sum_i C_i and the number of correct predictions; otherwise (0, 0).
    With sample_weight (one per row, used with Y only), the weighted sums
    sum_i w_i C_i and the weight sum of the correct predictions.
    """
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t n_samples = X.shape[0], n_out = sizes[n_layers]
    cdef Py_ssize_t start, stop, m, n_correct = 0
    cdef bint with_targets = Y.shape[0] > 0
    cdef double total = 0, correct_weight = 0
    cdef Buffers buf
    cdef const floating[::1] weights = sample_weight
    cdef bint weighted = weights is not None and with_targets

    _check_network(params.shape[0], sizes, activations.shape[0])
    if with_targets:
        _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
    elif X.shape[1] != sizes[0]:
        raise ValueError("X shape does not match the network")
    if out.shape[0] != n_samples or out.shape[1] != n_out:
        raise ValueError("out must have shape (n_samples, n_outputs)")
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    if weighted and weights.shape[0] != n_samples:
        raise ValueError("sample_weight needs one weight per row of X")
    _check_work(work.shape[0], sizes, capacity)
    if n_samples == 0:
        return 0.0, 0

    _bind(&buf, <floating*> &params[0], NULL, NULL, NULL, &work[0], sizes, activations,
          loss, capacity)
    try:
        with nogil:
            start = 0
            while start < n_samples:
                stop = start + capacity
                if stop > n_samples:
                    stop = n_samples
                m = stop - start
                # the output layer writes straight into `out`
                (<floating**> buf.A)[n_layers] = &out[start, 0]
                total += _forward(&buf, <floating*> &X[start, 0],
                                  &Y[start, 0] if with_targets else NULL,
                                  &weights[start] if weighted else NULL, m, &n_correct,
                                  &correct_weight)
                start = stop
                if check_signals:
                    with gil:
                        PyErr_CheckSignals()
    finally:
        _unbind(&buf)
    if weighted:
        return total, correct_weight
    return total, n_correct
