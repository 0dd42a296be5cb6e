/* Pieces shared by the distillation methods: input checks, Gram matrices and their gradient, the
 * Huber function. */
#include <math.h>

#include "core/error.h"
#include "distill/losses/losses.h"
#include "kernels/kernels.h"

kd_status kdi_check_probabilities(const float *p, int64_t batch, int64_t classes)
{
    for (int64_t r = 0; r < batch; r++) {
        const float *row = p + r * classes;
        double sum = 0.0;
        for (int64_t c = 0; c < classes; c++) {
            if (!isfinite(row[c]))
                return kdi_fail(KD_ERR_NUMERIC, "soft_targets row %lld holds NaN or infinity",
                                (long long)r);
            if (row[c] < 0.0f)
                return kdi_fail(KD_ERR_ARGUMENT,
                                "soft_targets[%lld][%lld] is %g; probabilities are >= 0",
                                (long long)r, (long long)c, (double)row[c]);
            sum += row[c];
        }
        if (fabs(sum - 1.0) > 1e-3)
            return kdi_fail(KD_ERR_ARGUMENT,
                            "soft_targets row %lld sums to %g, not 1; this loss takes the "
                            "teachers' probabilities at its temperature, not logits",
                            (long long)r, sum);
    }
    return KD_OK;
}

kd_status kdi_check_labels(const int32_t *labels, int64_t batch, int64_t classes)
{
    for (int64_t r = 0; r < batch; r++)
        if (labels[r] != -1 && (labels[r] < 0 || labels[r] >= classes))
            return kdi_fail(KD_ERR_ARGUMENT, "label %d of example %lld is not in 0..%lld or -1",
                            (int)labels[r], (long long)r, (long long)classes - 1);
    return KD_OK;
}

kd_status kdi_log_probs(kdi_buf *ws, const float *z, int64_t batch, int64_t classes, float t,
                        int soft, float **out)
{
    KDI_TRY(kdi_buf_reserve(ws, batch * classes));
    kdi_kernels_get()->log_softmax_rows(ws->data, z, batch, classes, 1.0f / t);
    if (!kdi_all_finite(ws->data, batch * classes)) {
        /* The cross-entropy term is also a model's training alone (kd train): no student, no
         * temperature. The trainer's logits reach here unchecked: they may be NaN themselves. */
        const char *who = soft ? "the student's logits" : "the logits";
        if (!kdi_all_finite(z, batch * classes))
            return kdi_fail(KD_ERR_NUMERIC, "%s hold NaN or infinity", who);
        if (!soft) return kdi_fail(KD_ERR_NUMERIC, "the logits overflow their softmax");
        return kdi_fail(KD_ERR_NUMERIC, "the student's logits overflow at temperature %g",
                        (double)t);
    }
    *out = ws->data;
    return KD_OK;
}

kd_status kdi_check_same_size(const char *what, kdi_shape s, kdi_shape t)
{
    if (kdi_shape_size(s) != kdi_shape_size(t))
        return kdi_fail(KD_ERR_SHAPE,
                        "%s compares features of one size: the student's has %lld values an "
                        "example, the teacher's %lld; add a regressor",
                        what, (long long)kdi_shape_size(s), (long long)kdi_shape_size(t));
    return KD_OK;
}

kd_status kdi_check_any_size(kdi_shape s, kdi_shape t)
{
    (void)s;
    (void)t;
    return KD_OK;
}

kd_status kdi_ws_doubles(kdi_buf *b, int64_t n, double **out)
{
    KDI_TRY(kdi_buf_reserve(b, 2 * n));
    *out = (double *)(void *)b->data;
    return KD_OK;
}

void kdi_gram(const float *x, int64_t batch, int64_t dim, double *k)
{
    const kdi_kernels *kern = kdi_kernels_get();
    for (int64_t i = 0; i < batch; i++)
        for (int64_t j = 0; j <= i; j++)
            k[i * batch + j] = k[j * batch + i] = kern->dot(x + i * dim, x + j * dim, dim);
}

void kdi_gram_backward(const double *dk, const float *x, int64_t batch, int64_t dim, float *tmp,
                       float *grad)
{
    for (int64_t i = 0; i < batch; i++)
        for (int64_t j = 0; j < batch; j++)
            tmp[i * batch + j] = (float)(dk[i * batch + j] + dk[j * batch + i]);
    kdi_kernels_get()->gemm(0, 0, batch, dim, batch, 1.0f, tmp, batch, x, dim, 0.0f, grad, dim);
}

double kdi_smooth_l1(double x)
{
    double a = fabs(x);
    return a < 1.0 ? 0.5 * x * x : a - 0.5;
}

double kdi_smooth_l1_grad(double x)
{
    if (x >= 1.0) return 1.0;
    if (x <= -1.0) return -1.0;
    return x;
}

kd_status kdi_check_alpha_inputs(const kd_loss *l, const float *soft, const int32_t *labels,
                                 int64_t batch, int64_t classes)
{
    float alpha = l->opt[KD_LOSS_ALPHA];
    if (alpha > 0.0f && soft == NULL)
        return kdi_fail(
            KD_ERR_ARGUMENT,
            "soft_targets is NULL but alpha is %g; NULL is allowed only when alpha is 0",
            (double)alpha);
    if (alpha < 1.0f && labels == NULL)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "labels is NULL but alpha is %g; NULL is allowed only when alpha is 1",
                        (double)alpha);
    if (labels != NULL) KDI_TRY(kdi_check_labels(labels, batch, classes));
    return KD_OK;
}
