/* The update rules: the one rule struct, shared with _kernels.pyx, and the
 * loops of the gradient-then-rule updates, one fused pass each over a weight
 * matrix or a bias vector:
 *
 *   fbp_rule              a rule and all its hyperparameters (the Python dict)
 *   fbp_step              what changes from one update to the next
 *   FBP_PENALIZED         g + l2 w + l1 sign(w): the data gradient with the
 *                         coupled penalties, the one place that writes it
 *   fbp_?add_penalty      g <- g + l2 w + l1 sign(w) (the gradients-only path)
 *   fbp_?sgd[_avx2]       plain SGD, heavy-ball or Nesterov momentum
 *   fbp_?rmsprop[_avx2]   s <- rho s + (1-rho) g^2;  w <- keep w - lr g / (sqrt(s) + eps)
 *   fbp_?adam[_avx2]      m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
 *                         w <- keep w - lr (m c1) / (sqrt(v c2) + eps)
 *
 * keep = 1 - lr weight_decay (decoupled decay). Over a bias vector
 * (weights = 0) there is no penalty and no decay: l2 = l1 = 0, keep = 1.
 * The fused SGD paths, whose update rides on the GEMM, are in _kernels.pyx.
 *
 * Plain C loops that the compiler vectorizes: with SSE2 in the default twin
 * and AVX2 in the _avx2 one. Neither contracts to FMA, and sqrt and division
 * are correctly rounded in any width, so both twins give the same bits.
 */
#ifndef FASTBP_RULES_H
#define FASTBP_RULES_H

#include "fbp_cpu.h"

typedef struct {
    int kind;               /* SGD, RMSPROP or ADAM of _kernels.pyx (0, 1, 2) */
    double learning_rate;
    double l2;              /* coupled: part of J and of the gradient */
    double l1;              /* coupled, subgradient l1 sign(W) */
    double weight_decay;    /* decoupled: W <- (1 - learning_rate weight_decay) W - ... */
    double momentum;        /* sgd */
    int nesterov;           /* sgd */
    double rho;             /* rmsprop: decay of the squared-gradient average */
    double beta1;           /* adam: decay of the first moment */
    double beta2;           /* adam: decay of the second moment */
    double epsilon;         /* rmsprop, adam */
    int bias_corrected_epsilon; /* adam: epsilon beside sqrt(v c2) (1) or, the
                                   epsilon-hat form, sqrt(v) (0); see fbp_step */
} fbp_rule;

typedef struct {
    double correction1;     /* adam: 1 / (1 - beta1^t) at update t */
    double correction2;     /* adam: 1 / (1 - beta2^t) at update t */
    double epsilon;         /* adam: the epsilon beside sqrt(v c2) at update t:
                               epsilon, or epsilon sqrt(c2) in the epsilon-hat form */
} fbp_step;

/* sign(w) as selects of T constants: an int result would stop the float64
   loops from vectorizing */
#define FBP_SIGN(T, w) (((w) > 0 ? (T)1 : (T)0) - ((w) < 0 ? (T)1 : (T)0))
#define FBP_PENALIZED(T, g, w, l2, l1) ((g) + (l2) * (w) + (l1) * FBP_SIGN(T, w))

/* The scalars every rule reads, in T, for weights or for biases */
#define FBP_RULE_SCALARS(T, r, weights)                                        \
    const T lr = (T)(r)->learning_rate;                                        \
    const T l2 = (T)((weights) ? (r)->l2 : 0), l1 = (T)((weights) ? (r)->l1 : 0); \
    const T keep = (T)((weights) ? 1 - (r)->learning_rate * (r)->weight_decay : 1)

#define FBP_ADD_PENALTY(T, S)                                                  \
static void fbp_##S##add_penalty(T *restrict g, const T *restrict w, size_t n, \
                                 const fbp_rule *r)                            \
{                                                                              \
    const T l2 = (T)r->l2, l1 = (T)r->l1;                                      \
    for (size_t i = 0; i < n; i++)                                             \
        g[i] = FBP_PENALIZED(T, g[i], w[i], l2, l1);                           \
}

FBP_ADD_PENALTY(double, d)
FBP_ADD_PENALTY(float, s)

#define FBP_RULES(T, S, SQRT, SUFFIX, ATTR)                                    \
ATTR static void fbp_##S##sgd##SUFFIX(T *restrict w, const T *restrict g,     \
                                      T *restrict velocity, size_t n,          \
                                      const fbp_rule *r, int weights)          \
{                                                                              \
    FBP_RULE_SCALARS(T, r, weights);                                           \
    const T mu = (T)r->momentum;                                               \
    if (mu == 0) {                                                             \
        for (size_t i = 0; i < n; i++)                                         \
            w[i] = keep * w[i] - lr * FBP_PENALIZED(T, g[i], w[i], l2, l1);    \
    } else if (r->nesterov) {                                                  \
        /* v <- mu v - lr g;  w <- keep w + mu v - lr g */                     \
        for (size_t i = 0; i < n; i++) {                                       \
            const T wi = w[i], grad = FBP_PENALIZED(T, g[i], wi, l2, l1);      \
            const T vi = mu * velocity[i] - lr * grad;                         \
            velocity[i] = vi;                                                  \
            w[i] = keep * wi + (mu * vi - lr * grad);                          \
        }                                                                      \
    } else {                                                                   \
        /* v <- mu v - lr g;  w <- keep w + v */                               \
        for (size_t i = 0; i < n; i++) {                                       \
            const T wi = w[i], grad = FBP_PENALIZED(T, g[i], wi, l2, l1);      \
            const T vi = mu * velocity[i] - lr * grad;                         \
            velocity[i] = vi;                                                  \
            w[i] = keep * wi + vi;                                             \
        }                                                                      \
    }                                                                          \
}                                                                              \
ATTR static void fbp_##S##rmsprop##SUFFIX(T *restrict w, const T *restrict g, \
                                          T *restrict s, size_t n,             \
                                          const fbp_rule *r, int weights)      \
{                                                                              \
    FBP_RULE_SCALARS(T, r, weights);                                           \
    const T a = (T)r->rho, rest_a = (T)(1 - r->rho), eps = (T)r->epsilon;      \
    for (size_t i = 0; i < n; i++) {                                           \
        const T wi = w[i], grad = FBP_PENALIZED(T, g[i], wi, l2, l1);          \
        const T si = a * s[i] + rest_a * grad * grad;                          \
        s[i] = si;                                                             \
        w[i] = keep * wi - lr * grad / (SQRT(si) + eps);                       \
    }                                                                          \
}                                                                              \
ATTR static void fbp_##S##adam##SUFFIX(T *restrict w, const T *restrict g,    \
                                       T *restrict m, T *restrict v, size_t n, \
                                       const fbp_rule *r, int weights,         \
                                       const fbp_step *step)                   \
{                                                                              \
    FBP_RULE_SCALARS(T, r, weights);                                           \
    const T a = (T)r->beta1, rest_a = (T)(1 - r->beta1);                       \
    const T b = (T)r->beta2, rest_b = (T)(1 - r->beta2);                       \
    const T c1 = (T)step->correction1, c2 = (T)step->correction2;              \
    const T eps = (T)step->epsilon;                                            \
    for (size_t i = 0; i < n; i++) {                                           \
        const T wi = w[i], grad = FBP_PENALIZED(T, g[i], wi, l2, l1);          \
        const T mi = a * m[i] + rest_a * grad;                                 \
        const T vi = b * v[i] + rest_b * grad * grad;                          \
        m[i] = mi;                                                             \
        v[i] = vi;                                                             \
        w[i] = keep * wi - lr * (mi * c1) / (SQRT(vi * c2) + eps);             \
    }                                                                          \
}

FBP_RULES(double, d, sqrt, , )
FBP_RULES(float, s, sqrtf, , )
#if FBP_X86
FBP_RULES(double, d, sqrt, _avx2, __attribute__((target("avx2"))))
FBP_RULES(float, s, sqrtf, _avx2, __attribute__((target("avx2"))))
#else   /* never chosen (fbp_have_avx2() is 0), defined for linking */
#define fbp_dsgd_avx2 fbp_dsgd
#define fbp_ssgd_avx2 fbp_ssgd
#define fbp_drmsprop_avx2 fbp_drmsprop
#define fbp_srmsprop_avx2 fbp_srmsprop
#define fbp_dadam_avx2 fbp_dadam
#define fbp_sadam_avx2 fbp_sadam
#endif

#endif  /* FASTBP_RULES_H */
