# cython: language_level=3
# cython: boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Hot loops of fastbp: fused forward, backward and update over whole epochs.

Conventions (see DESIGN.md): a batch is stored as rows, A^0 = X of shape
(m, n_0); layer k (0-based here) has weights W of shape (n_{k+1}, n_k) and
biases b of shape (n_{k+1},). All parameters of a network live in one flat
C-contiguous vector laid out as [W_0, b_0, W_1, b_1, ...]; the per-epoch
scratch space lives in one flat "work" vector whose layout is fixed by
``workspace_size``. Python validates everything (dtypes, shapes, contiguity,
finiteness) before calling in; these functions trust their arguments, except
for the O(1) sizes of the buffers, which they check so that a caller's
mistake is an exception instead of a write out of bounds.
"""

from cpython.exc cimport PyErr_CheckSignals
from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, sqrt, sqrtf, pow
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4

cdef enum:
    MSE = 0
    CROSS_ENTROPY = 1

# What a batch does after its forward pass and output delta.
cdef enum:
    MODE_SGD = 0        # plain SGD, L2 decay folded into the update GEMM
    MODE_MOMENTUM = 1   # heavy-ball momentum, velocity updated by the GEMM
    MODE_RULE = 2       # gradient into a buffer, then one fused pass of the rule
    MODE_GRADIENTS = 3  # write dJ/dW, dJ/db into a gradient vector, no update

cdef enum:
    OPT_SGD = 0
    OPT_RMSPROP = 1
    OPT_ADAM = 2

OPTIMIZER_CODES = {"sgd": OPT_SGD, "rmsprop": OPT_RMSPROP, "adam": OPT_ADAM,
                   "adamw": OPT_ADAM}


cdef struct Update:
    int mode
    int optimizer
    double learning_rate
    double l2                 # coupled: part of J and of the gradient
    double l1                 # coupled, subgradient l1 sign(W)
    double weight_decay       # decoupled: W <- W - eta weight_decay W
    double momentum
    bint nesterov
    double rho                # RMSprop decay of the squared-gradient average
    double beta1
    double beta2
    double epsilon
    double correction1        # Adam 1 / (1 - beta1^t) at this step
    double correction2        # Adam 1 / (1 - beta2^t) at this step


cdef extern from "_microkernels.h" nogil:
    int fbp_have_avx2()
    void fbp_dgemm_nt(int m, int n, int k, const double* A, const double* W, double* Z)
    void fbp_sgemm_nt(int m, int n, int k, const float* A, const float* W, float* Z)
    void fbp_dger(int rows, int cols, int m, const double* P, const double* A,
                  double beta, double* C)
    void fbp_sger(int rows, int cols, int m, const float* P, const float* A,
                  float beta, float* C)
    void fbp_dbias_sigmoid(double* z, const double* b, int m, int n)
    void fbp_sbias_sigmoid(float* z, const float* b, int m, int n)
    void fbp_dnorms(const double* w, size_t n, double* squares, double* absolutes)
    void fbp_snorms(const float* w, size_t n, double* squares, double* absolutes)
    int fbp_dall_finite(const double* x, size_t n)
    int fbp_sall_finite(const float* x, size_t n)
    unsigned fbp_flush_denormals()
    void fbp_restore_csr(unsigned old)
    ctypedef struct fbp_rule:
        double lr, l2, l1, keep, a, b, c1, c2, eps
    void fbp_dadam(double* w, const double* g, double* m, double* v, size_t n,
                   const fbp_rule* r)
    void fbp_sadam(float* w, const float* g, float* m, float* v, size_t n,
                   const fbp_rule* r)
    void fbp_dadam_avx2(double* w, const double* g, double* m, double* v, size_t n,
                        const fbp_rule* r)
    void fbp_sadam_avx2(float* w, const float* g, float* m, float* v, size_t n,
                        const fbp_rule* r)
    void fbp_drmsprop(double* w, const double* g, double* s, size_t n, const fbp_rule* r)
    void fbp_srmsprop(float* w, const float* g, float* s, size_t n, const fbp_rule* r)
    void fbp_drmsprop_avx2(double* w, const double* g, double* s, size_t n,
                           const fbp_rule* r)
    void fbp_srmsprop_avx2(float* w, const float* g, float* s, size_t n,
                           const fbp_rule* r)

# Batches of at most this many rows use the register-blocked kernels of
# _microkernels.h for their two big products instead of BLAS, whose packing
# and dispatch dominate at that size (bench/README.md has the measurements).
cdef bint _have_avx2 = fbp_have_avx2()
cdef Py_ssize_t _small_batch = 32 if _have_avx2 else 0
# The AVX2 twins of the adaptive update rules (same bits as the SSE2 ones)
cdef bint _avx2_rules = _have_avx2


def _set_small_batch(Py_ssize_t rows):
    """Testing knob: use the small-batch kernels up to `rows` rows; returns the old limit.

    0 sends every product to BLAS. Has no effect without AVX2 + FMA.
    """
    global _small_batch
    old = _small_batch
    _small_batch = rows if _have_avx2 else 0
    return old


def _set_avx2_rules(bint on):
    """Testing knob: AVX2 (True) or SSE2 (False) loops for rmsprop and adam; returns the old choice.

    Has no effect without AVX2 + FMA.
    """
    global _avx2_rules
    old = _avx2_rules
    _avx2_rules = on and _have_avx2
    return old


ACTIVATION_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH,
                    "relu": RELU, "softmax": SOFTMAX}
LOSS_CODES = {"mse": MSE, "cross_entropy": CROSS_ENTROPY}


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


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _sign(floating x) noexcept nogil:
    # selects of floating constants, not (x > 0) - (x < 0): an int result
    # would stop the float64 update loops from vectorizing
    cdef floating positive = 1 if x > 0 else 0
    cdef floating negative = 1 if x < 0 else 0
    return positive - negative


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
            fbp_sgemm_nt(<int> m, <int> n, <int> k, a, w, z)
        else:
            fbp_dgemm_nt(<int> m, <int> n, <int> k, a, w, z)
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
            fbp_sger(<int> n_out, <int> n_in, <int> m, scratch, a, beta, c)
        else:
            fbp_dger(<int> n_out, <int> n_in, <int> m, scratch, a, beta, c)
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


cdef double _penalty(floating** W, const Py_ssize_t* sizes, Py_ssize_t n_layers,
                     double l2, double l1) noexcept nogil:
    """(l2 / 2) sum_l ||W^l||_F^2 + l1 sum_l |W^l|_1."""
    cdef Py_ssize_t k, i
    cdef double squares = 0, absolutes = 0
    cdef floating* w
    if l2 == 0 and l1 == 0:
        return 0
    for k in range(n_layers):
        w = W[k]
        if _have_avx2:
            # vectorized, many accumulators: this runs once per batch
            if floating is float:
                fbp_snorms(w, sizes[k] * sizes[k + 1], &squares, &absolutes)
            else:
                fbp_dnorms(w, sizes[k] * sizes[k + 1], &squares, &absolutes)
        else:
            for i in range(sizes[k] * sizes[k + 1]):
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


# ---------------------------------------------------------------- whole network

cdef double _forward_batch(floating** W, floating** B, floating** A,
                           const Py_ssize_t* sizes, Py_ssize_t n_layers,
                           const int* activations, int loss,
                           const floating* y, Py_ssize_t m, floating* delta,
                           Py_ssize_t* n_correct) noexcept nogil:
    """Forward pass from A[0]; caches A[1..L]. With y, also delta^L and sum C_i."""
    cdef Py_ssize_t k, i, n_in, n_out
    cdef double cost = 0
    for k in range(n_layers):
        n_in = sizes[k]
        n_out = sizes[k + 1]
        # Z^k = A^{k-1} (W^k)^T, then bias and activation while it is hot
        _matmul_nt(A[k], W[k], A[k + 1], m, n_out, n_in)
        if k < n_layers - 1 or y == NULL:
            _bias_activation(A[k + 1], B[k], m, n_out, activations[k])
        else:
            for i in range(m):
                cost += _output_row(A[k + 1] + i * n_out, B[k], y + i * n_out,
                                    delta + i * n_out, n_out, activations[k],
                                    loss, n_correct)
    return cost


cdef void _apply_rule(floating* w, const floating* g, floating* s1, floating* s2,
                      Py_ssize_t size, bint weights, const Update* u) noexcept nogil:
    """One fused pass of the update rule over a weight matrix or bias vector.

    g holds the data gradient (1/m) delta^T A (or the bias one); the coupled
    penalties join it here, for weights only: g + l2 W + l1 sign(W).
    """
    cdef Py_ssize_t i
    cdef floating grad, change
    cdef floating lr = <floating> u.learning_rate
    cdef floating l2 = <floating> (u.l2 if weights else 0)
    cdef floating l1 = <floating> (u.l1 if weights else 0)
    cdef floating keep = <floating> (1 - u.learning_rate * u.weight_decay if weights else 1)
    cdef floating mu = <floating> u.momentum
    cdef fbp_rule r
    if u.optimizer == OPT_ADAM or u.optimizer == OPT_RMSPROP:
        # sqrt and a division per element: the vectorized loops of _microkernels.h
        r.lr, r.l2 = u.learning_rate, (u.l2 if weights else 0)
        r.l1 = u.l1 if weights else 0
        r.keep = 1 - u.learning_rate * u.weight_decay if weights else 1
        r.c1, r.c2, r.eps = u.correction1, u.correction2, u.epsilon
        if u.optimizer == OPT_ADAM:
            r.a, r.b = u.beta1, u.beta2
            if floating is float:
                (fbp_sadam_avx2 if _avx2_rules else fbp_sadam)(w, g, s1, s2, size, &r)
            else:
                (fbp_dadam_avx2 if _avx2_rules else fbp_dadam)(w, g, s1, s2, size, &r)
        else:
            r.a, r.b = u.rho, 0
            if floating is float:
                (fbp_srmsprop_avx2 if _avx2_rules else fbp_srmsprop)(w, g, s1, size, &r)
            else:
                (fbp_drmsprop_avx2 if _avx2_rules else fbp_drmsprop)(w, g, s1, size, &r)
    elif mu != 0:
        for i in range(size):
            grad = g[i] + l2 * w[i] + l1 * _sign(w[i])
            # v <- mu v - eta g ; W <- W + v, or W + mu v - eta g (Nesterov)
            s1[i] = mu * s1[i] - lr * grad
            change = mu * s1[i] - lr * grad if u.nesterov else s1[i]
            w[i] = keep * w[i] + change
    else:
        for i in range(size):
            grad = g[i] + l2 * w[i] + l1 * _sign(w[i])
            w[i] = keep * w[i] - lr * grad


cdef void _backward_batch(floating** W, floating** B, floating** A,
                          floating** GW, floating** GB,
                          floating** S1W, floating** S1B,
                          floating** S2W, floating** S2B,
                          const Py_ssize_t* sizes, Py_ssize_t n_layers,
                          const int* activations, Py_ssize_t m,
                          floating* delta, floating* spare, floating* column_sums,
                          floating* scratch, const Update* u) noexcept nogil:
    """Backpropagate delta^L (in `delta`) and update, or write gradients.

    Layer k's update comes after delta^{k-1} has been computed from the old
    W^k, so the recursion always sees the parameters of the forward pass.
    """
    cdef Py_ssize_t k, i, j, n_in, n_out, size
    cdef unsigned csr
    cdef floating* swap
    cdef floating* w
    cdef floating* v
    cdef floating step = <floating> (u.learning_rate / m)
    cdef floating eta_l2 = <floating> (u.learning_rate * u.l2)
    cdef floating mu = <floating> u.momentum
    cdef floating decay = <floating> u.l2
    cdef floating l1 = <floating> u.l1
    for k in range(n_layers - 1, -1, -1):
        n_in = sizes[k]
        n_out = sizes[k + 1]
        size = n_in * n_out
        if k > 0:
            # delta^{k-1} = (delta^k W^k) * f'(A^k); the input layer needs none
            _gemm(c'N', c'N', <int> m, <int> n_in, <int> n_out, 1, delta,
                  <int> n_out, W[k], <int> n_in, 0, spare, <int> n_in)
            _times_derivative(spare, A[k], m * n_in, activations[k - 1])
        _column_sums(delta, m, n_out, column_sums)
        w = W[k]
        if u.mode == MODE_SGD:
            # W <- (1 - eta l2) W - (eta/m) delta^T A^{k-1}
            _outer_update(delta, A[k], m, n_out, n_in, -step, 1 - eta_l2, w, scratch)
            for j in range(n_out):
                B[k][j] -= step * column_sums[j]
        elif u.mode == MODE_MOMENTUM:
            # v <- mu v - eta (dJ/dW); W <- W + v
            v = S1W[k]
            _outer_update(delta, A[k], m, n_out, n_in, -step, mu, v, scratch)
            if eta_l2 != 0:
                for i in range(size):
                    v[i] -= eta_l2 * w[i]
                    w[i] += v[i]
            else:
                for i in range(size):
                    w[i] += v[i]
            v = S1B[k]
            for j in range(n_out):
                v[j] = mu * v[j] - step * column_sums[j]
                B[k][j] += v[j]
        else:
            # dJ/dW = (1/m) delta^T A^{k-1} (+ l2 W + l1 sign W); dJ/db = (1/m) sum_rows delta
            v = GW[k]
            _outer_update(delta, A[k], m, n_out, n_in, <floating> (1.0 / m), 0, v,
                          scratch)
            for j in range(n_out):
                GB[k][j] = column_sums[j] / m
            if u.mode == MODE_RULE:
                # subnormal moments flushed to zero: see fbp_flush_denormals
                csr = fbp_flush_denormals()
                _apply_rule(w, v, S1W[k], S2W[k], size, True, u)
                _apply_rule(B[k], GB[k], S1B[k], S2B[k], n_out, False, u)
                fbp_restore_csr(csr)
            elif decay != 0 or l1 != 0:
                for i in range(size):
                    v[i] += decay * w[i] + l1 * _sign(w[i])
        if k > 0:
            swap = delta
            delta = spare
            spare = swap


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
    """Length of the flat parameter vector [W_0, b_0, W_1, b_1, ...].

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


# Slots of the per-layer pointer table that every entry point fills: slot s
# of layer k is table[s * (n_layers + 1) + k]. A has n_layers + 1 entries.
cdef enum:
    SLOT_W = 0
    SLOT_B = 1
    SLOT_A = 2
    SLOT_GW = 3
    SLOT_GB = 4
    SLOT_S1W = 5
    SLOT_S1B = 6
    SLOT_S2W = 7
    SLOT_S2B = 8
    N_SLOTS = 9


cdef void _layer_views(floating* vector, const Py_ssize_t* sizes,
                       Py_ssize_t n_layers, floating** W, floating** B) noexcept nogil:
    """Per-layer W and b pointers into a vector with the layout of params."""
    cdef Py_ssize_t k, offset = 0
    for k in range(n_layers):
        W[k] = vector + offset if vector != NULL else NULL
        offset += sizes[k] * sizes[k + 1]
        B[k] = vector + offset if vector != NULL else NULL
        offset += sizes[k + 1]


cdef void _bind(floating** table, floating* params, floating* grads,
                floating* state1, floating* state2, floating* work,
                const Py_ssize_t* sizes, Py_ssize_t n_layers, Py_ssize_t capacity,
                floating** delta, floating** spare, floating** scratch,
                floating** x_rows, floating** y_rows,
                floating** column_sums) noexcept nogil:
    """Point the table into the flat parameter, gradient, state and work vectors."""
    cdef Py_ssize_t k, offset = 0, widest = 0, stride = n_layers + 1
    cdef floating** A = table + SLOT_A * stride
    _layer_views(params, sizes, n_layers, table + SLOT_W * stride, table + SLOT_B * stride)
    _layer_views(grads, sizes, n_layers, table + SLOT_GW * stride, table + SLOT_GB * stride)
    _layer_views(state1, sizes, n_layers, table + SLOT_S1W * stride,
                 table + SLOT_S1B * stride)
    _layer_views(state2, sizes, n_layers, table + SLOT_S2W * stride,
                 table + SLOT_S2B * stride)
    for k in range(1, n_layers + 1):
        A[k] = work + offset
        offset += capacity * sizes[k]
        if sizes[k] > widest:
            widest = sizes[k]
    delta[0] = work + offset
    offset += capacity * widest
    spare[0] = work + offset
    offset += capacity * widest
    scratch[0] = work + offset
    offset += capacity * widest
    x_rows[0] = work + offset
    offset += capacity * sizes[0]
    y_rows[0] = work + offset
    offset += capacity * sizes[n_layers]
    column_sums[0] = work + offset


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


def train_epoch(floating[::1] params, floating[::1] grads, floating[::1] state1,
                floating[::1] state2, const Py_ssize_t[::1] sizes,
                const int[::1] activations, int loss,
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] order, Py_ssize_t batch_size,
                floating[::1] work, double[::1] progress, *,
                double learning_rate, double l2=0.0,
                double l1=0.0, int optimizer=OPT_SGD, double momentum=0.0,
                bint nesterov=False, double weight_decay=0.0, double rho=0.9,
                double beta1=0.9, double beta2=0.999, double epsilon=1e-8,
                long long step=0, bint check_signals=False, bint check_inputs=False):
    """One epoch of mini-batch training in one GIL-free call.

    Batches are X[order[0:b]], X[order[b:2b]], ... (an empty `order` means
    0, 1, ..., n-1, and then rows are read in place, not gathered); each
    batch is forward, output delta, backward and update, all in `work`.

    grads, state1 and state2 have the layout of params (or are empty where
    the optimizer does not need them): grads is scratch for the gradient of
    the rules that need one; state1 is the velocity (sgd with momentum), the
    squared-gradient average (rmsprop) or the first moment (adam); state2
    the second moment (adam). `step` counts the updates made before this
    epoch (Adam's bias correction uses step + 1 for the first batch).

    After every batch, progress[0:3] holds (batches done, sum of m_B * J_B
    so far, correct predictions so far). With check_signals, the GIL is
    taken every few milliseconds of work to run Python's signal handlers:
    a KeyboardInterrupt then propagates from here, between two batches, so
    the parameters are those after the last completed update and `progress`
    tells how far the epoch got.

    With check_inputs, the rows of each batch are checked for NaN and
    infinity right after they are gathered (in cache, so at little cost
    instead of a separate pass over X): at the first batch that holds one,
    the epoch stops before that batch's forward pass and NonFiniteInput is
    raised, with the parameters of the batches before it updated.

    Returns (sum over batches of m_B * J_B, number of correct predictions),
    each J_B measured at the parameters before that batch's update.
    """
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1, stride = n_layers + 1
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t n_in = sizes[0], n_out = sizes[n_layers]
    cdef Py_ssize_t n_params = params.shape[0]
    cdef Py_ssize_t start, stop, m, i, n_correct = 0, batches = 0, check_every
    cdef Py_ssize_t bad_row
    cdef bint gather = order.shape[0] > 0, finite = True
    cdef double total = 0, penalty
    cdef Update u
    cdef floating** table
    cdef floating** A
    cdef floating* delta
    cdef floating* spare
    cdef floating* scratch
    cdef floating* x_rows
    cdef floating* y_rows
    cdef floating* column_sums
    cdef const floating* y_batch
    cdef floating* grads_data
    cdef floating* state1_data
    cdef floating* state2_data

    _check_network(n_params, sizes, activations.shape[0])
    _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
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
    if optimizer not in (OPT_SGD, OPT_RMSPROP, OPT_ADAM):
        raise ValueError("unknown optimizer code")
    if progress.shape[0] < 3:
        raise ValueError("progress needs 3 entries")
    # look for signals about every 2e6 multiply-adds of work (~ a millisecond)
    check_every = max(1, 2000000 // max(1, batch_size * n_params))

    u.optimizer = optimizer
    u.learning_rate = learning_rate
    u.l2 = l2
    u.l1 = l1
    u.weight_decay = weight_decay
    u.momentum = momentum
    u.nesterov = nesterov
    u.rho = rho
    u.beta1 = beta1
    u.beta2 = beta2
    u.epsilon = epsilon
    if optimizer == OPT_SGD and l1 == 0 and weight_decay == 0 and not nesterov:
        u.mode = MODE_MOMENTUM if momentum != 0 else MODE_SGD
    else:
        u.mode = MODE_RULE
    if u.mode == MODE_RULE and grads.shape[0] != n_params:
        raise ValueError("grads must have the layout of params")
    if (optimizer != OPT_SGD or momentum != 0) and state1.shape[0] != n_params:
        raise ValueError("state1 must have the layout of params")
    if optimizer == OPT_ADAM and state2.shape[0] != n_params:
        raise ValueError("state2 must have the layout of params")
    if n_samples == 0:
        return 0.0, 0

    table = <floating**> malloc(N_SLOTS * stride * sizeof(floating*))
    if table == NULL:
        raise MemoryError()
    A = table + SLOT_A * stride
    grads_data = _data_or_null(grads)
    state1_data = _data_or_null(state1)
    state2_data = _data_or_null(state2)
    try:
        with nogil:
            _bind(table, &params[0], grads_data, state1_data, state2_data, &work[0],
                  &sizes[0], n_layers, batch_size, &delta, &spare, &scratch,
                  &x_rows, &y_rows, &column_sums)
            start = 0
            while start < n_samples:
                stop = start + batch_size
                if stop > n_samples:
                    stop = n_samples
                m = stop - start
                if gather:
                    for i in range(m):
                        memcpy(x_rows + i * n_in, &X[order[start + i], 0],
                               n_in * sizeof(floating))
                        memcpy(y_rows + i * n_out, &Y[order[start + i], 0],
                               n_out * sizeof(floating))
                    A[0] = x_rows
                    y_batch = y_rows
                else:
                    A[0] = <floating*> &X[start, 0]
                    y_batch = &Y[start, 0]
                if check_inputs and not _block_finite(A[0], m * n_in):
                    finite = False
                    break
                step += 1
                if optimizer == OPT_ADAM:
                    u.correction1 = 1 / (1 - pow(beta1, <double> step))
                    u.correction2 = 1 / (1 - pow(beta2, <double> step))
                penalty = _penalty(table + SLOT_W * stride, &sizes[0], n_layers, l2, l1)
                total += _forward_batch(
                    table + SLOT_W * stride, table + SLOT_B * stride, A,
                    &sizes[0], n_layers, &activations[0], loss, y_batch, m,
                    delta, &n_correct) + m * penalty
                _backward_batch(
                    table + SLOT_W * stride, table + SLOT_B * stride, A,
                    table + SLOT_GW * stride, table + SLOT_GB * stride,
                    table + SLOT_S1W * stride, table + SLOT_S1B * stride,
                    table + SLOT_S2W * stride, table + SLOT_S2B * stride,
                    &sizes[0], n_layers, &activations[0], m, delta, spare,
                    column_sums, scratch, &u)
                start = stop
                batches += 1
                progress[0] = batches
                progress[1] = total
                progress[2] = n_correct
                if check_signals and batches % check_every == 0:
                    with gil:
                        PyErr_CheckSignals()
    finally:
        free(table)
    if not finite:
        raise NonFiniteInput(f"X holds NaN or infinity in the batch of rows from {start}")
    return total, n_correct


def loss_and_gradients(const floating[::1] params, floating[::1] grads,
                       const Py_ssize_t[::1] sizes, const int[::1] activations,
                       int loss, const floating[:, ::1] X,
                       const floating[:, ::1] Y, floating[::1] work, double l2,
                       double l1=0.0):
    """J on the batch (X, Y) and dJ/dW, dJ/db written into `grads`.

    `work` must hold a batch of X.shape[0] rows. Returns (J, n_correct).
    """
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1, stride = n_layers + 1
    cdef Py_ssize_t m = X.shape[0], n_correct = 0
    cdef double total
    cdef Update u
    cdef floating** table
    cdef floating** A
    cdef floating* delta
    cdef floating* spare
    cdef floating* scratch
    cdef floating* x_rows
    cdef floating* y_rows
    cdef floating* column_sums

    _check_network(params.shape[0], sizes, activations.shape[0])
    _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
    if m == 0:
        raise ValueError("X must have at least one row")
    _check_work(work.shape[0], sizes, m)
    if grads.shape[0] != params.shape[0]:
        raise ValueError("grads must have the layout of params")

    u.mode = MODE_GRADIENTS
    u.learning_rate = 0
    u.l2 = l2
    u.l1 = l1
    u.momentum = 0
    table = <floating**> malloc(N_SLOTS * stride * sizeof(floating*))
    if table == NULL:
        raise MemoryError()
    A = table + SLOT_A * stride
    try:
        with nogil:
            _bind(table, <floating*> &params[0], &grads[0], NULL, NULL, &work[0],
                  &sizes[0], n_layers, m, &delta, &spare, &scratch, &x_rows,
                  &y_rows, &column_sums)
            A[0] = <floating*> &X[0, 0]
            total = _forward_batch(
                table + SLOT_W * stride, table + SLOT_B * stride, A, &sizes[0],
                n_layers, &activations[0], loss, &Y[0, 0], m, delta,
                &n_correct) / m
            total += _penalty(table + SLOT_W * stride, &sizes[0], n_layers, l2, l1)
            _backward_batch(
                table + SLOT_W * stride, table + SLOT_B * stride, A,
                table + SLOT_GW * stride, table + SLOT_GB * stride,
                table + SLOT_S1W * stride, table + SLOT_S1B * stride,
                table + SLOT_S2W * stride, table + SLOT_S2B * stride,
                &sizes[0], n_layers, &activations[0], m, delta, spare,
                column_sums, scratch, &u)
    finally:
        free(table)
    return total, n_correct


def forward(const floating[::1] params, const Py_ssize_t[::1] sizes,
            const int[::1] activations, int loss, const floating[:, ::1] X,
            const floating[:, ::1] Y, floating[:, ::1] out, floating[::1] work,
            Py_ssize_t capacity, bint check_signals=False):
    """Output activations A^L of X into `out`, `capacity` rows at a time.

    With a Y of X's length (an empty Y skips this), also returns the data
    cost sum_i C_i and the number of correct predictions; otherwise (0, 0).
    """
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1, stride = n_layers + 1
    cdef Py_ssize_t n_samples = X.shape[0], n_out = sizes[n_layers]
    cdef Py_ssize_t start, stop, m, n_correct = 0
    cdef bint with_targets = Y.shape[0] > 0
    cdef double total = 0
    cdef floating** table
    cdef floating** A
    cdef floating* delta
    cdef floating* spare
    cdef floating* scratch
    cdef floating* x_rows
    cdef floating* y_rows
    cdef floating* column_sums
    cdef floating* last

    _check_network(params.shape[0], sizes, activations.shape[0])
    if with_targets:
        _check_data(X.shape[0], X.shape[1], Y.shape[0], Y.shape[1], sizes)
    elif X.shape[1] != sizes[0]:
        raise ValueError("X shape does not match the network")
    if out.shape[0] != n_samples or out.shape[1] != n_out:
        raise ValueError("out must have shape (n_samples, n_outputs)")
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    _check_work(work.shape[0], sizes, capacity)
    if n_samples == 0:
        return 0.0, 0

    table = <floating**> malloc(N_SLOTS * stride * sizeof(floating*))
    if table == NULL:
        raise MemoryError()
    A = table + SLOT_A * stride
    try:
        with nogil:
            _bind(table, <floating*> &params[0], NULL, NULL, NULL, &work[0],
                  &sizes[0], n_layers, capacity, &delta, &spare, &scratch,
                  &x_rows, &y_rows, &column_sums)
            last = A[n_layers]
            start = 0
            while start < n_samples:
                stop = start + capacity
                if stop > n_samples:
                    stop = n_samples
                m = stop - start
                A[0] = <floating*> &X[start, 0]
                # the output layer writes straight into `out`
                A[n_layers] = &out[start, 0]
                total += _forward_batch(
                    table + SLOT_W * stride, table + SLOT_B * stride, A,
                    &sizes[0], n_layers, &activations[0], loss,
                    &Y[start, 0] if with_targets else NULL, m, delta,
                    &n_correct)
                start = stop
                if check_signals:
                    with gil:
                        PyErr_CheckSignals()
            A[n_layers] = last
    finally:
        free(table)
    return total, n_correct
