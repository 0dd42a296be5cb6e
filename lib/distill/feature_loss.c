/* kd_feature_loss: a loss between a student's and a teacher's hidden features, one ops table per
 * method (losses/). The generic part -- options, shape checks, double-buffered gradient -- is
 * here once, as loss.c does for the logit losses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "distill/losses/losses.h"

kd_status kd_feature_loss_create(kd_feature_loss_kind kind, kd_feature_loss **out)
{
    KDI_CHECK_NULL(out);
    const kdi_feature_ops *ops = NULL;
    switch (kind) {
    case KD_FEATURE_HINT: ops = &kdi_hint_ops; break;
    case KD_FEATURE_ATTENTION: ops = &kdi_attention_ops; break;
    case KD_FEATURE_RKD: ops = &kdi_rkd_ops; break;
    case KD_FEATURE_SIMILARITY: ops = &kdi_similarity_ops; break;
    case KD_FEATURE_PKT: ops = &kdi_pkt_ops; break;
    case KD_FEATURE_COSINE: ops = &kdi_cosine_ops; break;
    case KD_FEATURE_ATTENTION_KL: ops = &kdi_attention_kl_ops; break;
    case KD_FEATURE_CRD: ops = &kdi_crd_ops; break;
    }
    if (ops == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "feature loss kind %d is not a kd_feature_loss_kind",
                        (int)kind);
    kd_feature_loss *l = kdi_calloc(1, sizeof *l);
    if (l == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a feature loss");
    l->kind = kind;
    l->ops = ops;
    l->opt[KD_FEATURE_RKD_DISTANCE_WEIGHT] = 25.0f; /* Park et al. 2019, section 4 */
    l->opt[KD_FEATURE_RKD_ANGLE_WEIGHT] = 50.0f;
    l->opt[KD_FEATURE_CRD_TEMPERATURE] = 0.07f; /* Tian et al. 2020, their code's nce_t */
    l->opt[KD_FEATURE_CRD_NEGATIVES] = 4096.0f;
    l->opt[KD_FEATURE_CRD_MOMENTUM] = 0.5f; /* their nce_m */
    l->opt[KD_FEATURE_CRD_SEED] = 0.0f;
    *out = l;
    return KD_OK;
}

void kd_feature_loss_destroy(kd_feature_loss *l)
{
    if (l == NULL) return;
    for (int i = 0; i < 2; i++) kdi_buf_free(&l->grad[i]);
    for (int i = 0; i < KDI_FEATURE_NWS; i++) kdi_buf_free(&l->ws[i]);
    kdi_buf_free(&l->crd_memory);
    kdi_free(l);
}

static kd_status check_key(int key)
{
    if (key < 0 || key >= KDI_FEATURE_NOPTIONS ||
        (key > KD_FEATURE_RKD_ANGLE_WEIGHT && key < KD_FEATURE_CRD_TEMPERATURE))
        return kdi_fail(KD_ERR_ARGUMENT, "feature loss option %d is not a kd_feature_loss_option",
                        key);
    return KD_OK;
}

/* The ranges of CRD's options (the others take any finite value >= 0). */
static kd_status check_value(int key, float v)
{
    if (key == KD_FEATURE_CRD_TEMPERATURE && !(v > 0.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "KD_FEATURE_CRD_TEMPERATURE is %g; it must be > 0",
                        (double)v);
    if (key == KD_FEATURE_CRD_NEGATIVES && (v < 1.0f || v > 1048576.0f || v != floorf(v)))
        return kdi_fail(KD_ERR_ARGUMENT,
                        "KD_FEATURE_CRD_NEGATIVES is %g; it must be an integer in [1, 1048576]",
                        (double)v);
    if (key == KD_FEATURE_CRD_MOMENTUM && v > 1.0f)
        return kdi_fail(KD_ERR_ARGUMENT, "KD_FEATURE_CRD_MOMENTUM is %g; it must be in [0, 1]",
                        (double)v);
    if (key == KD_FEATURE_CRD_SEED && (v > 16777216.0f || v != floorf(v)))
        return kdi_fail(KD_ERR_ARGUMENT,
                        "KD_FEATURE_CRD_SEED is %g; it must be an integer in [0, 2^24]", (double)v);
    return KD_OK;
}

static const char *option_name(int key)
{
    switch ((kd_feature_loss_option)key) {
    case KD_FEATURE_RKD_DISTANCE_WEIGHT: return "KD_FEATURE_RKD_DISTANCE_WEIGHT";
    case KD_FEATURE_RKD_ANGLE_WEIGHT: return "KD_FEATURE_RKD_ANGLE_WEIGHT";
    case KD_FEATURE_CRD_TEMPERATURE: return "KD_FEATURE_CRD_TEMPERATURE";
    case KD_FEATURE_CRD_NEGATIVES: return "KD_FEATURE_CRD_NEGATIVES";
    case KD_FEATURE_CRD_MOMENTUM: return "KD_FEATURE_CRD_MOMENTUM";
    case KD_FEATURE_CRD_SEED: return "KD_FEATURE_CRD_SEED";
    }
    return "?";
}

kd_status kd_feature_loss_set_float(kd_feature_loss *l, kd_feature_loss_option key, float value)
{
    KDI_CHECK_NULL(l);
    KDI_TRY(check_key((int)key));
    if (!(value >= 0.0f) || !isfinite(value))
        return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be finite and >= 0", option_name((int)key),
                        (double)value);
    KDI_TRY(check_value((int)key, value));
    l->opt[key] = value;
    return KD_OK;
}

kd_status kd_feature_loss_get_float(const kd_feature_loss *l, kd_feature_loss_option key,
                                    float *value)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(value);
    KDI_TRY(check_key((int)key));
    *value = l->opt[key];
    return KD_OK;
}

/* Each dimension >= 1 and batch * c * h * w within reach. */
static kd_status check_shape(const char *who, int64_t batch, kdi_shape s)
{
    int64_t n;
    if (s.c < 1 || s.h < 1 || s.w < 1)
        return kdi_fail(KD_ERR_SHAPE, "the %s feature's shape %lldx%lldx%lld has a size below 1",
                        who, (long long)s.c, (long long)s.h, (long long)s.w);
    if (!kdi_mul_ok(s.c, s.h, &n) || !kdi_mul_ok(n, s.w, &n) || !kdi_mul_ok(n, batch, &n) ||
        n > (1LL << 40))
        return kdi_fail(KD_ERR_SHAPE, "the %s feature (batch %lld of %lldx%lldx%lld) is too large",
                        who, (long long)batch, (long long)s.c, (long long)s.h, (long long)s.w);
    return KD_OK;
}

kd_status kdi_feature_loss_check(const kd_feature_loss *l, kdi_shape s, kdi_shape t, int64_t batch)
{
    if (batch < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "batch is %lld; it must be 1 or more", (long long)batch);
    KDI_TRY(check_shape("student", batch, s));
    KDI_TRY(check_shape("teacher", batch, t));
    return l->ops->check(s, t);
}

kd_status kdi_feature_loss_run(kd_feature_loss *l, const float *student, kdi_shape s,
                               const float *teacher, kdi_shape t, int64_t batch, double *value)
{
    int64_t n = batch * kdi_shape_size(s);
    if (!kdi_all_finite(student, n))
        return kdi_fail(KD_ERR_NUMERIC, "the student's feature holds NaN or infinity");
    if (!kdi_all_finite(teacher, batch * kdi_shape_size(t)))
        return kdi_fail(KD_ERR_NUMERIC, "the teacher's feature holds NaN or infinity");
    int next = 1 - l->cur;
    double v;
    KDI_TRY(kdi_buf_reserve(&l->grad[next], n));
    KDI_TRY(l->ops->forward(l, student, s, teacher, t, batch, &v, l->grad[next].data));
    if (!isfinite(v) || !kdi_all_finite(l->grad[next].data, n))
        return kdi_fail(KD_ERR_NUMERIC, "the %s loss is not finite (%g)", l->ops->name, v);
    l->cur = next;
    l->batch = batch;
    l->size = kdi_shape_size(s);
    l->value = v;
    /* Grow the other buffer now, so the next forward of this size does not allocate. */
    (void)kdi_buf_reserve(&l->grad[1 - next], n);
    *value = v;
    return KD_OK;
}

const float *kdi_feature_loss_grad(const kd_feature_loss *l) { return l->grad[l->cur].data; }

kd_status kd_feature_loss_forward(kd_feature_loss *l, const float *student, int64_t sc, int64_t sh,
                                  int64_t sw, const float *teacher, int64_t tc, int64_t th,
                                  int64_t tw, int64_t batch, float *loss)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(student);
    KDI_CHECK_NULL(teacher);
    KDI_CHECK_NULL(loss);
    kdi_shape s = {sc, sh, sw}, t = {tc, th, tw};
    KDI_TRY(kdi_feature_loss_check(l, s, t, batch));
    double v;
    KDI_TRY(kdi_feature_loss_run(l, student, s, teacher, t, batch, &v));
    *loss = (float)v;
    return KD_OK;
}

kd_status kd_feature_loss_backward(kd_feature_loss *l, float *grad_student)
{
    KDI_CHECK_NULL(l);
    KDI_CHECK_NULL(grad_student);
    if (l->batch == 0)
        return kdi_fail(KD_ERR_STATE,
                        "kd_feature_loss_backward needs a kd_feature_loss_forward first");
    memcpy(grad_student, l->grad[l->cur].data, (size_t)(l->batch * l->size) * sizeof *grad_student);
    return KD_OK;
}
