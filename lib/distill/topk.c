/* Sparse teacher caches: the k largest logits of each row, their classes, and the log-sum-exp of
 * the rest, so a language model's teacher over a large vocabulary can be cached in O(k) a token
 * and expanded to dense soft targets at any temperature (kd.h, kd_topk_tail, for the tail). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"

/* Whether class a ranks above class b in row z: a larger logit, or an equal one and a lower
 * class. */
static int above(const float *z, int32_t a, int32_t b)
{
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

/* heap[0 .. n) is a min-heap by rank (the lowest-ranked class at the root); sift i down. */
static void sift_down(const float *z, int32_t *heap, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, low = i;
        if (l < n && above(z, heap[low], heap[l])) low = l;
        if (r < n && above(z, heap[low], heap[r])) low = r;
        if (low == i) return;
        int32_t t = heap[i];
        heap[i] = heap[low];
        heap[low] = t;
        i = low;
    }
}

/* The k top classes of row z, largest first, into idx (a heap of k, then heap-sorted). */
static void top_k(const float *z, int64_t classes, int32_t k, int32_t *idx)
{
    for (int32_t i = 0; i < k; i++) idx[i] = i;
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(z, idx, k, i);
    for (int64_t c = k; c < classes; c++)
        if (above(z, (int32_t)c, idx[0])) {
            idx[0] = (int32_t)c;
            sift_down(z, idx, k, 0);
        }
    /* Popping the lowest to the end leaves the array largest first. */
    for (int32_t n = k - 1; n > 0; n--) {
        int32_t t = idx[0];
        idx[0] = idx[n];
        idx[n] = t;
        sift_down(z, idx, n, 0);
    }
}

static kd_status check_sizes(int64_t rows, int64_t classes, int32_t k)
{
    int64_t count;
    if (rows < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "rows is %lld; it must be 1 or more", (long long)rows);
    if (classes < 1 || classes > INT32_MAX)
        return kdi_fail(KD_ERR_ARGUMENT, "classes is %lld; it must be in 1..%d", (long long)classes,
                        INT32_MAX);
    if (k < 1 || k > classes)
        return kdi_fail(KD_ERR_ARGUMENT, "k is %d; it must be in 1..classes (%lld)", (int)k,
                        (long long)classes);
    if (!kdi_mul_ok(rows, classes, &count) || count > (1LL << 40))
        return kdi_fail(KD_ERR_ARGUMENT, "rows %lld x classes %lld is too large", (long long)rows,
                        (long long)classes);
    return KD_OK;
}

kd_status kd_topk_from_logits(const float *logits, int64_t rows, int64_t classes, int32_t k,
                              int32_t *indices, float *values, float *rest)
{
    KDI_CHECK_NULL(logits);
    KDI_CHECK_NULL(indices);
    KDI_CHECK_NULL(values);
    KDI_TRY(check_sizes(rows, classes, k));
    if (!kdi_all_finite(logits, rows * classes))
        return kdi_fail(KD_ERR_NUMERIC, "logits hold NaN or infinity");
    unsigned char *top = kdi_calloc((size_t)classes, 1);
    if (top == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes", (long long)classes);
    for (int64_t r = 0; r < rows; r++) {
        const float *z = logits + r * classes;
        int32_t *idx = indices + r * k;
        top_k(z, classes, k, idx);
        for (int32_t i = 0; i < k; i++) values[r * k + i] = z[idx[i]];
        if (rest == NULL) continue;
        /* log-sum-exp over the classes outside the top k, from their own maximum */
        for (int32_t i = 0; i < k; i++) top[idx[i]] = 1;
        double m = -INFINITY, sum = 0.0;
        for (int64_t c = 0; c < classes; c++)
            if (!top[c] && z[c] > m) m = z[c];
        for (int64_t c = 0; c < classes; c++)
            if (!top[c]) sum += exp((double)z[c] - m);
        rest[r] = k == classes ? -INFINITY : (float)(m + log(sum));
        for (int32_t i = 0; i < k; i++) top[idx[i]] = 0;
    }
    kdi_free(top);
    return KD_OK;
}

/* Checks a row's indices (in range, distinct) with the zeroed byte map seen, left zeroed. */
static kd_status check_row(const int32_t *idx, int32_t k, int64_t classes, int64_t r,
                           unsigned char *seen)
{
    kd_status st = KD_OK;
    int32_t i = 0;
    for (; i < k && st == KD_OK; i++) {
        if (idx[i] < 0 || idx[i] >= classes)
            st = kdi_fail(KD_ERR_ARGUMENT, "indices[%lld][%d] is %d, not in 0..%lld", (long long)r,
                          (int)i, (int)idx[i], (long long)classes - 1);
        else if (seen[idx[i]])
            st = kdi_fail(KD_ERR_ARGUMENT, "indices row %lld holds class %d twice", (long long)r,
                          (int)idx[i]);
        else
            seen[idx[i]] = 1;
    }
    for (int32_t j = 0; j < i; j++)
        if (idx[j] >= 0 && idx[j] < classes) seen[idx[j]] = 0;
    return st;
}

/* Checks a cache for expansion: sizes, the tail, finite values, each row's indices, and rest
 * (finite, or -infinity when finite_rest is 0) where the tail is used. */
static kd_status check_cache(const int32_t *indices, const float *values, const float *rest,
                             int64_t rows, int64_t classes, int32_t k, kd_topk_tail tail,
                             int finite_rest)
{
    KDI_CHECK_NULL(indices);
    KDI_CHECK_NULL(values);
    KDI_TRY(check_sizes(rows, classes, k));
    if (tail != KD_TOPK_TAIL_UNIFORM && tail != KD_TOPK_TAIL_NONE)
        return kdi_fail(KD_ERR_ARGUMENT, "tail %d is not a kd_topk_tail", (int)tail);
    int tailed = tail == KD_TOPK_TAIL_UNIFORM && k < classes;
    if (tailed && rest == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "rest is NULL; KD_TOPK_TAIL_UNIFORM needs it");
    if (!kdi_all_finite(values, rows * k))
        return kdi_fail(KD_ERR_NUMERIC, "values hold NaN or infinity");
    unsigned char *seen = kdi_calloc((size_t)classes, 1);
    if (seen == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld bytes", (long long)classes);
    kd_status st = KD_OK;
    for (int64_t r = 0; r < rows && st == KD_OK; r++) {
        st = check_row(indices + r * k, k, classes, r, seen);
        if (st == KD_OK && tailed && !isfinite(rest[r]) && (finite_rest || rest[r] != -INFINITY))
            st = kdi_fail(KD_ERR_NUMERIC, "rest[%lld] is %g; it must be finite%s", (long long)r,
                          (double)rest[r], finite_rest ? "" : " or -infinity");
    }
    kdi_free(seen);
    return st;
}

/* The tail's logit for row r, one per class outside the top k: rest - log(V - k), or none. */
static double tail_logit(const float *rest, int64_t r, int64_t classes, int32_t k,
                         kd_topk_tail tail)
{
    if (tail != KD_TOPK_TAIL_UNIFORM || k == classes) return -INFINITY;
    return (double)rest[r] - log((double)(classes - k));
}

kd_status kd_topk_logits(const int32_t *indices, const float *values, const float *rest,
                         int64_t rows, int64_t classes, int32_t k, float *logits)
{
    KDI_CHECK_NULL(logits);
    KDI_TRY(check_cache(indices, values, rest, rows, classes, k, KD_TOPK_TAIL_UNIFORM, 1));
    for (int64_t r = 0; r < rows; r++) {
        float *z = logits + r * classes,
              zt = (float)tail_logit(rest, r, classes, k, KD_TOPK_TAIL_UNIFORM);
        for (int64_t c = 0; c < classes && k < classes; c++) z[c] = zt;
        for (int32_t i = 0; i < k; i++) z[indices[r * k + i]] = values[r * k + i];
    }
    return KD_OK;
}

kd_status kd_topk_soft_targets(const int32_t *indices, const float *values, const float *rest,
                               int64_t rows, int64_t classes, int32_t k, float temperature,
                               kd_topk_tail tail, float *probs)
{
    KDI_CHECK_NULL(probs);
    if (!(temperature > 0.0f) || !isfinite(temperature) || !isfinite(1.0f / temperature))
        return kdi_fail(KD_ERR_ARGUMENT, "temperature %g must be finite and greater than 0",
                        (double)temperature);
    KDI_TRY(check_cache(indices, values, rest, rows, classes, k, tail, 0));
    double inv_t = 1.0 / (double)temperature;
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *idx = indices + r * k;
        const float *v = values + r * k;
        float *p = probs + r * classes;
        double zt = tail_logit(rest, r, classes, k, tail);
        double m = zt, sum = 0.0;
        for (int32_t i = 0; i < k; i++)
            if (v[i] > m) m = v[i];
        double et = zt == -INFINITY ? 0.0 : exp((zt - m) * inv_t);
        sum = et * (double)(classes - k);
        for (int32_t i = 0; i < k; i++) sum += exp(((double)v[i] - m) * inv_t);
        for (int64_t c = 0; c < classes; c++) p[c] = (float)(et / sum);
        for (int32_t i = 0; i < k; i++) p[idx[i]] = (float)(exp(((double)v[i] - m) * inv_t) / sum);
    }
    return KD_OK;
}
