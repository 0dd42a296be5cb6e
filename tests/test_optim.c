/* The optimizer module: SGD against PyTorch's formulas, schedules, options, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "testutil.h"

static kd_model *small_model(void)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 3 | dense 2 | relu | dense 2", 1, &m), KD_OK);
    return m;
}

static kd_optimizer *sgd(kd_model *m, float lr, float mu, float wd, int nesterov)
{
    kd_optimizer *o;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, lr), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_MOMENTUM, mu), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WEIGHT_DECAY, wd), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_NESTEROV, nesterov), KD_OK);
    return o;
}

/* Every trainable value of m set to w, every gradient to g. */
static void set_all(kd_model *m, float w, float g)
{
    const kdi_param_list *pl = kdi_model_params(m);
    for (int32_t i = 0; i < pl->n; i++)
        for (int64_t j = 0; j < pl->items[i].p->count; j++) {
            pl->items[i].p->value[j] = w;
            pl->items[i].p->grad[j] = g;
        }
}

static float first_weight(kd_model *m) { return kdi_model_params(m)->items[0].p->value[0]; }

/* w = 1, g = 0.5, lr = 0.1, wd = 0.01, mu = 0.9, by hand from torch.optim.SGD's documented update:
 * step 1: g' = 0.51, v = 0.51, w = 1 - 0.051 = 0.949
 * step 2: g' = 0.50949, v = 0.9 * 0.51 + 0.50949 = 0.96849, w = 0.949 - 0.096849 = 0.852151
 * Nesterov, step 1: w = 1 - 0.1 * (0.51 + 0.9 * 0.51) = 0.9031
 *           step 2: g' = 0.509031, v = 0.968031,
 *                   w = 0.9031 - 0.1 * (0.509031 + 0.8712279) = 0.7650741 */
START_TEST(sgd_hand_computed)
{
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        kd_model *m = small_model();
        kd_optimizer *o = sgd(m, 0.1f, 0.9f, 0.01f, nesterov);
        set_all(m, 1.0f, 0.5f);
        ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
        ck_assert_float_eq_tol(first_weight(m), nesterov ? 0.9031f : 0.949f, 1e-6f);
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++)
            for (int64_t j = 0; j < pl->items[i].p->count; j++) {
                ck_assert(pl->items[i].p->grad[j] == 0.0f); /* cleared by the step */
                pl->items[i].p->grad[j] = 0.5f;
            }
        ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
        ck_assert_float_eq_tol(first_weight(m), nesterov ? 0.7650741f : 0.852151f, 1e-6f);
        int64_t step;
        ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_STEP, &step), KD_OK);
        ck_assert_int_eq(step, 2);
        kd_optimizer_destroy(o);
        kd_model_destroy(m);
    }
}
END_TEST

/* Random weights and gradients over several steps against the formula in double. */
START_TEST(sgd_matches_reference)
{
    static const float cfg[][4] = {{0.05f, 0.0f, 0.0f, 0},
                                   {0.05f, 0.9f, 0.0f, 0},
                                   {0.02f, 0.8f, 1e-3f, 1},
                                   {0.1f, 0.0f, 0.05f, 0}};
    for (int k = 0; k < 4; k++) {
        kd_model *m = small_model();
        kd_optimizer *o = sgd(m, cfg[k][0], cfg[k][1], cfg[k][2], (int)cfg[k][3]);
        const kdi_param_list *pl = kdi_model_params(m);
        double w[64], v[64] = {0};
        for (int step = 0; step < 4; step++) {
            int n = 0;
            for (int32_t i = 0; i < pl->n; i++) {
                kdi_param *p = pl->items[i].p;
                kdt_fill(p->grad, p->count, 100 + step * 10 + i, -1.0f, 1.0f);
                for (int64_t j = 0; j < p->count; j++, n++) {
                    if (step == 0) w[n] = p->value[j];
                    double lr = cfg[k][0], mu = cfg[k][1], wd = cfg[k][2];
                    double g = p->grad[j] + wd * w[n];
                    if (mu != 0.0) v[n] = mu * v[n] + g;
                    w[n] -= lr * (mu == 0.0 ? g : cfg[k][3] ? g + mu * v[n] : v[n]);
                }
            }
            ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
            n = 0;
            for (int32_t i = 0; i < pl->n; i++)
                for (int64_t j = 0; j < pl->items[i].p->count; j++, n++)
                    ck_assert_msg(fabs(pl->items[i].p->value[j] - w[n]) < 1e-6, "config %d step %d",
                                  k, step);
        }
        kd_optimizer_destroy(o);
        kd_model_destroy(m);
    }
}
END_TEST

static kd_optimizer *adam(kd_model *m, kd_optimizer_kind kind, float lr, float wd)
{
    kd_optimizer *o;
    ck_assert_int_eq(kd_optimizer_create(kind, m, &o), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, lr), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WEIGHT_DECAY, wd), KD_OK);
    return o;
}

/* A constant gradient g makes Adam's bias-corrected ratio m / sqrt(v) equal sign(g) at every step,
 * so each step moves w by lr (up to eps): w = 1, g = 0.5, lr = 0.1 gives 0.9 then 0.8. AdamW with
 * wd = 0.01 first decays w by 1 - lr wd: 0.999 - 0.1 = 0.899. */
START_TEST(adam_hand_computed)
{
    kd_model *m = small_model();
    kd_optimizer *o = adam(m, KD_OPTIMIZER_ADAM, 0.1f, 0.0f);
    set_all(m, 1.0f, 0.5f);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_float_eq_tol(first_weight(m), 0.9f, 1e-6f);
    set_all(m, first_weight(m), 0.5f);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_float_eq_tol(first_weight(m), 0.8f, 1e-6f);
    kd_optimizer_destroy(o);
    o = adam(m, KD_OPTIMIZER_ADAMW, 0.1f, 0.01f);
    set_all(m, 1.0f, 0.5f);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_float_eq_tol(first_weight(m), 0.899f, 1e-6f);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

/* torch.optim.Adam / AdamW's documented update, in double, over several random steps. */
START_TEST(adam_matches_reference)
{
    for (int decoupled = 0; decoupled <= 1; decoupled++) {
        kd_model *m = small_model();
        double lr = 0.01, wd = 0.05, b1 = 0.8, b2 = 0.99, eps = 1e-6;
        kd_optimizer *o =
            adam(m, decoupled ? KD_OPTIMIZER_ADAMW : KD_OPTIMIZER_ADAM, (float)lr, (float)wd);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_BETA1, (float)b1), KD_OK);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_BETA2, (float)b2), KD_OK);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_EPSILON, (float)eps), KD_OK);
        const kdi_param_list *pl = kdi_model_params(m);
        double w[64], m1[64] = {0}, m2[64] = {0};
        for (int step = 0; step < 5; step++) {
            int n = 0;
            for (int32_t i = 0; i < pl->n; i++) {
                kdi_param *p = pl->items[i].p;
                kdt_fill(p->grad, p->count, 200 + step * 10 + i, -1.0f, 1.0f);
                for (int64_t j = 0; j < p->count; j++, n++) {
                    if (step == 0) w[n] = p->value[j];
                    double g = p->grad[j];
                    if (decoupled)
                        w[n] *= 1.0 - lr * wd;
                    else
                        g += wd * w[n];
                    m1[n] = b1 * m1[n] + (1 - b1) * g;
                    m2[n] = b2 * m2[n] + (1 - b2) * g * g;
                    double mh = m1[n] / (1 - pow(b1, step + 1)),
                           vh = m2[n] / (1 - pow(b2, step + 1));
                    w[n] -= lr * mh / (sqrt(vh) + eps);
                }
            }
            ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
            n = 0;
            for (int32_t i = 0; i < pl->n; i++)
                for (int64_t j = 0; j < pl->items[i].p->count; j++, n++)
                    ck_assert_msg(fabs(pl->items[i].p->value[j] - w[n]) < 1e-5,
                                  "decoupled %d step %d: %g, want %g", decoupled, step,
                                  (double)pl->items[i].p->value[j], w[n]);
        }
        kd_optimizer_destroy(o);
        kd_model_destroy(m);
    }
}
END_TEST

START_TEST(options_per_kind)
{
    kd_model *m = small_model();
    kd_optimizer *s, *a, *aw;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &s), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, m, &a), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAMW, m, &aw), KD_OK);
    float f;
    ck_assert_int_eq(kd_optimizer_get_float(a, KD_OPT_LEARNING_RATE, &f), KD_OK);
    ck_assert(f == 0.001f);
    ck_assert_int_eq(kd_optimizer_get_float(a, KD_OPT_WEIGHT_DECAY, &f), KD_OK);
    ck_assert(f == 0.0f);
    ck_assert_int_eq(kd_optimizer_get_float(aw, KD_OPT_WEIGHT_DECAY, &f), KD_OK);
    ck_assert(f == 0.01f);
    ck_assert_int_eq(kd_optimizer_get_float(aw, KD_OPT_BETA1, &f), KD_OK);
    ck_assert(f == 0.9f);
    ck_assert_int_eq(kd_optimizer_get_float(aw, KD_OPT_BETA2, &f), KD_OK);
    ck_assert(f == 0.999f);
    ck_assert_int_eq(kd_optimizer_get_float(aw, KD_OPT_EPSILON, &f), KD_OK);
    ck_assert(f == 1e-8f);
    /* an option of another kind would be ignored, so it is refused */
    ck_assert_int_eq(kd_optimizer_set_float(s, KD_OPT_BETA1, 0.5f), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "sgd") != NULL);
    ck_assert_int_eq(kd_optimizer_set_float(a, KD_OPT_MOMENTUM, 0.5f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(aw, KD_OPT_NESTEROV, 1), KD_ERR_ARGUMENT);
    const float bad_beta[] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(kd_optimizer_set_float(a, KD_OPT_BETA1, bad_beta[i]), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_optimizer_set_float(a, KD_OPT_BETA2, bad_beta[i]), KD_ERR_ARGUMENT);
    }
    ck_assert_int_eq(kd_optimizer_set_float(a, KD_OPT_EPSILON, 0.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(a, KD_OPT_EPSILON, INFINITY), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(a, KD_OPT_EPSILON, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_float(a, KD_OPT_BETA1, &f), KD_OK);
    ck_assert(f == 0.9f);
    ck_assert_int_eq(kd_optimizer_get_float(a, KD_OPT_EPSILON, &f), KD_OK);
    ck_assert(f == 1e-8f);
    /* Adam's state: two zeroed buffers per trainable parameter */
    ck_assert_int_eq(a->ops->nstate, 2);
    ck_assert_ptr_nonnull(a->state[1]);
    ck_assert(a->state[1][0] == 0.0f);
    kd_optimizer_destroy(s);
    kd_optimizer_destroy(a);
    kd_optimizer_destroy(aw);
    kd_model_destroy(m);
}
END_TEST

static float current_lr(kd_optimizer *o, int64_t step)
{
    float lr;
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP, step), KD_OK);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_CURRENT_LR, &lr), KD_OK);
    return lr;
}

/* lr = 0.1, min 0.001, 100 steps: 0.1 at 0, 0.0855018 at 25, 0.0505 at 50, 0.001 at 100 and on. */
START_TEST(cosine_schedule)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.0f, 0.0f, 0);
    ck_assert(current_lr(o, 37) == 0.1f); /* constant by default */
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_TOTAL_STEPS, 100), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_MIN_LR, 0.001f), KD_OK);
    ck_assert_float_eq_tol(current_lr(o, 0), 0.1f, 1e-7f);
    ck_assert_float_eq_tol(current_lr(o, 25), 0.0855018f, 1e-7f);
    ck_assert_float_eq_tol(current_lr(o, 50), 0.0505f, 1e-7f);
    ck_assert_float_eq_tol(current_lr(o, 100), 0.001f, 1e-7f);
    ck_assert_float_eq_tol(current_lr(o, 1000), 0.001f, 1e-7f);
    /* a step uses the scheduled rate and advances it */
    set_all(m, 1.0f, 1.0f);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP, 50), KD_OK);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_float_eq_tol(first_weight(m), 1.0f - 0.0505f, 1e-6f);
    float lr;
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_CURRENT_LR, &lr), KD_OK);
    ck_assert(lr < 0.0505f);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

START_TEST(defaults)
{
    kd_model *m = small_model();
    kd_optimizer *o;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, &o), KD_OK);
    float f;
    int64_t i;
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_LEARNING_RATE, &f), KD_OK);
    ck_assert(f == 0.01f);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_CURRENT_LR, &f), KD_OK);
    ck_assert(f == 0.01f);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_MOMENTUM, &f), KD_OK);
    ck_assert(f == 0.0f);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_WEIGHT_DECAY, &f), KD_OK);
    ck_assert(f == 0.0f);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_MIN_LR, &f), KD_OK);
    ck_assert(f == 0.0f);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_NESTEROV, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_SCHEDULE, &i), KD_OK);
    ck_assert_int_eq(i, KD_SCHEDULE_CONSTANT);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_TOTAL_STEPS, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_STEP, &i), KD_OK);
    ck_assert_int_eq(i, 0);
    kd_optimizer_destroy(o);
    kd_optimizer_destroy(NULL);
    kd_model_destroy(m);
}
END_TEST

/* Snapshot of every option, to show that failed calls change nothing. */
typedef struct snapshot {
    float f[4];
    int64_t i[4];
} snapshot;

static snapshot snap(const kd_optimizer *o)
{
    snapshot s;
    static const kd_optimizer_option fk[4] = {KD_OPT_LEARNING_RATE, KD_OPT_MOMENTUM,
                                              KD_OPT_WEIGHT_DECAY, KD_OPT_MIN_LR};
    static const kd_optimizer_option ik[4] = {KD_OPT_NESTEROV, KD_OPT_SCHEDULE, KD_OPT_TOTAL_STEPS,
                                              KD_OPT_STEP};
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(kd_optimizer_get_float(o, fk[k], &s.f[k]), KD_OK);
        ck_assert_int_eq(kd_optimizer_get_int(o, ik[k], &s.i[k]), KD_OK);
    }
    return s;
}

START_TEST(bad_options)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.5f, 0.01f, 0), *none = NULL;
    ck_assert_int_eq(kd_optimizer_create((kd_optimizer_kind)77, m, &none), KD_ERR_ARGUMENT);
    ck_assert_ptr_null(none);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, NULL, &none), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, m, NULL), KD_ERR_ARGUMENT);
    snapshot before = snap(o);
    const float bad_lr[] = {0.0f, -0.1f, NAN, INFINITY};
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_LEARNING_RATE, bad_lr[k]),
                         KD_ERR_ARGUMENT);
    const float bad_mu[] = {1.0f, -0.1f, NAN, 2.0f};
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_MOMENTUM, bad_mu[k]), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WEIGHT_DECAY, -1e-3f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WEIGHT_DECAY, INFINITY), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_MIN_LR, -1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_MIN_LR, NAN), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_NESTEROV, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_NESTEROV, -1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, 9), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_TOTAL_STEPS, 0), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP, -1), KD_ERR_ARGUMENT);
    /* read-only, wrong types, unknown keys */
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_CURRENT_LR, 0.5f), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "read only") != NULL);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_NESTEROV, 1.0f), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "kd_optimizer_set_int") != NULL);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_LEARNING_RATE, 1), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "kd_optimizer_set_float") != NULL);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_CURRENT_LR, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, (kd_optimizer_option)99, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, (kd_optimizer_option)-1, 1), KD_ERR_ARGUMENT);
    float f;
    int64_t i;
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_STEP, &f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_MOMENTUM, &i), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_float(o, (kd_optimizer_option)99, &f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_MOMENTUM, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(NULL, KD_OPT_MOMENTUM, 0.1f), KD_ERR_ARGUMENT);
    snapshot after = snap(o);
    ck_assert(memcmp(&before, &after, sizeof before) == 0);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

/* A step that cannot run changes no weight, no gradient and no step count. */
static void expect_refused_step(kd_optimizer *o, kd_model *m, kd_status status)
{
    const kdi_param_list *pl = kdi_model_params(m);
    float keep_w[64], keep_g[64];
    int n = 0;
    for (int32_t i = 0; i < pl->n; i++)
        for (int64_t j = 0; j < pl->items[i].p->count; j++, n++) {
            keep_w[n] = pl->items[i].p->value[j];
            keep_g[n] = pl->items[i].p->grad[j];
        }
    int64_t step0, step1;
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_STEP, &step0), KD_OK);
    ck_assert_int_eq(kd_optimizer_step(o), status);
    ck_assert_int_eq(kd_optimizer_get_int(o, KD_OPT_STEP, &step1), KD_OK);
    ck_assert_int_eq(step0, step1);
    n = 0;
    for (int32_t i = 0; i < pl->n; i++)
        for (int64_t j = 0; j < pl->items[i].p->count; j++, n++) {
            ck_assert(memcmp(&keep_w[n], &pl->items[i].p->value[j], sizeof(float)) == 0);
            ck_assert(memcmp(&keep_g[n], &pl->items[i].p->grad[j], sizeof(float)) == 0);
        }
}

START_TEST(refused_steps)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.0f, 0.0f, 1); /* Nesterov without momentum */
    set_all(m, 0.5f, 0.25f);
    expect_refused_step(o, m, KD_ERR_STATE);
    ck_assert(strstr(kd_last_error(), "MOMENTUM") != NULL);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_NESTEROV, 0), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE), KD_OK);
    expect_refused_step(o, m, KD_ERR_STATE); /* cosine without total steps */
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_TOTAL_STEPS, 10), KD_OK);
    kdi_model_params(m)->items[2].p->grad[1] = NAN;
    expect_refused_step(o, m, KD_ERR_NUMERIC);
    kdi_model_params(m)->items[2].p->grad[1] = 0.25f;
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_int_eq(kd_optimizer_step(NULL), KD_ERR_ARGUMENT);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

/* StepLR(step_size 3, gamma 0.5) and MultiStepLR(milestones {2, 5}, gamma 0.1) by hand, lr 0.1. */
START_TEST(step_schedules)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.0f, 0.0f, 0);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_STEP), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP_SIZE, 3), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_GAMMA, 0.5f), KD_OK);
    const float step_lr[8] = {0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.05f, 0.025f, 0.025f};
    for (int64_t s = 0; s < 8; s++) ck_assert_float_eq_tol(current_lr(o, s), step_lr[s], 1e-8f);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_MULTISTEP), KD_OK);
    const int64_t milestones[2] = {2, 5};
    ck_assert_int_eq(kd_optimizer_set_milestones(o, milestones, 2), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_GAMMA, 0.1f), KD_OK);
    const float multi_lr[7] = {0.1f, 0.1f, 0.01f, 0.01f, 0.01f, 0.001f, 0.001f};
    for (int64_t s = 0; s < 7; s++) ck_assert_float_eq_tol(current_lr(o, s), multi_lr[s], 1e-9f);
    int64_t got[4] = {0}, count = 0;
    ck_assert_int_eq(kd_optimizer_get_milestones(o, got, 4, &count), KD_OK);
    ck_assert_int_eq(count, 2);
    ck_assert(got[0] == 2 && got[1] == 5 && got[2] == 0);
    ck_assert_int_eq(kd_optimizer_get_milestones(o, NULL, 0, &count), KD_OK);
    ck_assert_int_eq(count, 2);
    /* a step runs at the scheduled rate */
    set_all(m, 1.0f, 1.0f);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP, 5), KD_OK);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_float_eq_tol(first_weight(m), 1.0f - 0.001f, 1e-7f);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

/* LinearLR(start_factor 0.25, total_iters 4) chained with cosine over 10 steps, lr 0.1: the factor
 * 0.25 + 0.75 s / 4 times the cosine rate, then the cosine rate alone. */
START_TEST(warmup)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.0f, 0.0f, 0);
    float f;
    ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_WARMUP_START, &f), KD_OK);
    ck_assert_float_eq_tol(f, 1.0f / 3.0f, 1e-7f); /* LinearLR's default */
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_WARMUP_STEPS, 4), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WARMUP_START, 0.25f), KD_OK);
    ck_assert_float_eq_tol(current_lr(o, 0), 0.025f, 1e-8f); /* constant schedule */
    ck_assert_float_eq_tol(current_lr(o, 2), 0.0625f, 1e-8f);
    ck_assert_float_eq_tol(current_lr(o, 4), 0.1f, 1e-8f);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_TOTAL_STEPS, 10), KD_OK);
    for (int64_t s = 0; s <= 10; s++) {
        double cosine = 0.1 * (1.0 + cos(3.14159265358979323846 * (double)s / 10.0)) / 2.0;
        double factor = s < 4 ? 0.25 + 0.75 * (double)s / 4.0 : 1.0;
        ck_assert_float_eq_tol(current_lr(o, s), (float)(cosine * factor), 1e-7f);
    }
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_WARMUP_STEPS, 0), KD_OK);
    ck_assert_float_eq_tol(current_lr(o, 0), 0.1f, 1e-8f);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

/* 14 values, every gradient 0.5: global norm 0.5 sqrt(14). Clipped to 1 as clip_grad_norm_, the
 * gradients become 0.5 / (norm + 1e-6); a larger bound leaves them alone. */
START_TEST(clipping)
{
    const double norm = 0.5 * sqrt(14.0);
    const float bounds[3] = {0.0f, 1.0f, 5.0f};
    for (int b = 0; b < 3; b++) {
        kd_model *m = small_model();
        kd_optimizer *o = sgd(m, 1.0f, 0.0f, 0.0f, 0);
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_CLIP_NORM, bounds[b]), KD_OK);
        set_all(m, 1.0f, 0.5f);
        ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
        float g;
        ck_assert_int_eq(kd_optimizer_get_float(o, KD_OPT_GRAD_NORM, &g), KD_OK);
        ck_assert_float_eq_tol(g, (float)norm, 1e-6f);
        double applied = bounds[b] == 1.0f ? 0.5 * 1.0 / (norm + 1e-6) : 0.5;
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++)
            for (int64_t j = 0; j < pl->items[i].p->count; j++)
                ck_assert_float_eq_tol(pl->items[i].p->value[j], (float)(1.0 - applied), 1e-6f);
        kd_optimizer_destroy(o);
        kd_model_destroy(m);
    }
}
END_TEST

START_TEST(bad_schedules)
{
    kd_model *m = small_model();
    kd_optimizer *o = sgd(m, 0.1f, 0.0f, 0.0f, 0);
    set_all(m, 0.5f, 0.25f);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_STEP), KD_OK);
    expect_refused_step(o, m, KD_ERR_STATE);
    ck_assert(strstr(kd_last_error(), "KD_OPT_STEP_SIZE") != NULL);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_SCHEDULE, KD_SCHEDULE_MULTISTEP), KD_OK);
    expect_refused_step(o, m, KD_ERR_STATE);
    ck_assert(strstr(kd_last_error(), "milestones") != NULL);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_STEP_SIZE, 0), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_int(o, KD_OPT_WARMUP_STEPS, -1), KD_ERR_ARGUMENT);
    const float bad_gamma[] = {0.0f, -0.5f, 1.5f, NAN};
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_GAMMA, bad_gamma[k]), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WARMUP_START, 1.5f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_WARMUP_START, -0.1f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_CLIP_NORM, -1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_CLIP_NORM, INFINITY), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_float(o, KD_OPT_GRAD_NORM, 1.0f), KD_ERR_ARGUMENT);
    /* milestones: increasing, positive, at most KD_MAX_MILESTONES; a refusal keeps the old ones */
    const int64_t good[2] = {3, 7}, down[2] = {7, 3}, zero[2] = {0, 3}, same[2] = {3, 3};
    ck_assert_int_eq(kd_optimizer_set_milestones(o, good, 2), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, down, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, zero, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, same, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, NULL, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, good, -1), KD_ERR_ARGUMENT);
    int64_t many[KD_MAX_MILESTONES + 1];
    for (int k = 0; k <= KD_MAX_MILESTONES; k++) many[k] = k + 1;
    ck_assert_int_eq(kd_optimizer_set_milestones(o, many, KD_MAX_MILESTONES + 1), KD_ERR_ARGUMENT);
    int64_t got[2], count;
    ck_assert_int_eq(kd_optimizer_get_milestones(o, got, 2, &count), KD_OK);
    ck_assert(count == 2 && got[0] == 3 && got[1] == 7);
    ck_assert_int_eq(kd_optimizer_get_milestones(o, NULL, 2, &count), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_milestones(o, got, -1, &count), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_get_milestones(o, got, 2, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_set_milestones(NULL, good, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_optimizer_step(o), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_milestones(o, NULL, 0), KD_OK); /* cleared */
    expect_refused_step(o, m, KD_ERR_STATE);
    kd_optimizer_destroy(o);
    kd_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *t = tcase_create("optim");
    tcase_add_test(t, sgd_hand_computed);
    tcase_add_test(t, sgd_matches_reference);
    tcase_add_test(t, adam_hand_computed);
    tcase_add_test(t, adam_matches_reference);
    tcase_add_test(t, options_per_kind);
    tcase_add_test(t, cosine_schedule);
    tcase_add_test(t, defaults);
    tcase_add_test(t, bad_options);
    tcase_add_test(t, refused_steps);
    tcase_add_test(t, step_schedules);
    tcase_add_test(t, warmup);
    tcase_add_test(t, clipping);
    tcase_add_test(t, bad_schedules);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
