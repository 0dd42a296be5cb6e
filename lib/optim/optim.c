/* Optimizers: options by key, learning-rate schedules, and one ops table per kind (see optim.h). */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Updates clear the gradient for the next step as they go, a block of floats at a time, so that
 * the zeroing finds it still in L1 (a memset after the update streamed every gradient through the
 * caches again: 7% of an MLP student's step). */
#define ZERO_BLOCK 4096

/* ---------------------------------------------------------------- SGD */

static kd_status sgd_check(const kd_optimizer *o)
{
    if (o->nesterov && !(o->momentum > 0.0f))
        return kdi_fail(KD_ERR_STATE, "KD_OPT_NESTEROV needs KD_OPT_MOMENTUM > 0 (it is %g)",
                        (double)o->momentum);
    return KD_OK;
}

/* PyTorch's torch.optim.SGD (dampening 0): g' = g + wd w; v = mu v + g'; w -= lr (nesterov ?
 * g' + mu v : v). The buffer starts at zero, so the first v is g', as PyTorch's clone(g'). */
static void sgd_part(const kd_optimizer *o, kdi_param *p, float *v, float lr, int64_t lo,
                     int64_t hi)
{
    const kdi_kernels *k = kdi_kernels_get();
    for (int64_t b = lo; b < hi; b += ZERO_BLOCK) {
        int64_t n = hi - b < ZERO_BLOCK ? hi - b : ZERO_BLOCK;
        k->sgd_update(p->value + b, v != NULL ? v + b : NULL, p->grad + b, n, lr, o->momentum,
                      o->weight_decay, o->nesterov);
        memset(p->grad + b, 0, (size_t)n * sizeof *p->grad);
    }
}

static void sgd_update(const kd_optimizer *o, kdi_param *p, float *const *state, float lr)
{
    float *v = state[0]; /* NULL without momentum */
    KDI_PARTS(p->count, sgd_part(o, p, v, lr, lo, hi));
}

static const kdi_optim_ops sgd_ops = {.name = "sgd",
                                      .nstate = 1,
                                      .state_names = {"momentum_buffer", NULL},
                                      .check = sgd_check,
                                      .update = sgd_update};

/* ---------------------------------------------------------------- Adam, AdamW */

static kd_status adam_check(const kd_optimizer *o)
{
    (void)o;
    return KD_OK;
}

/* Kingma and Ba 2015, algorithm 1, as torch.optim.Adam; AdamW (Loshchilov and Hutter 2019) decays
 * the weights apart from the gradient, w *= 1 - lr wd, as torch.optim.AdamW. The step about to be
 * taken is t = step + 1, so bias corrections 1 - beta^t restart correctly on resume. */
static void adam_part(const kd_optimizer *o, kdi_param *p, float *const *state, float lr, float bc1,
                      float bc2, int64_t lo, int64_t hi)
{
    const kdi_kernels *k = kdi_kernels_get();
    int decoupled = o->kind == KD_OPTIMIZER_ADAMW;
    for (int64_t b = lo; b < hi; b += ZERO_BLOCK) {
        int64_t n = hi - b < ZERO_BLOCK ? hi - b : ZERO_BLOCK;
        k->adam_update(p->value + b, state[0] + b, state[1] + b, p->grad + b, n, lr, o->beta1,
                       o->beta2, o->eps, o->weight_decay, bc1, bc2, decoupled);
        memset(p->grad + b, 0, (size_t)n * sizeof *p->grad);
    }
}

static void adam_update(const kd_optimizer *o, kdi_param *p, float *const *state, float lr)
{
    double t = (double)o->step + 1.0;
    float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    KDI_PARTS(p->count, adam_part(o, p, state, lr, bc1, bc2, lo, hi));
}

static const kdi_optim_ops adam_ops = {.name = "adam",
                                       .nstate = 2,
                                       .state_names = {"exp_avg", "exp_avg_sq"},
                                       .check = adam_check,
                                       .update = adam_update};

static const kdi_optim_ops adamw_ops = {.name = "adamw",
                                        .nstate = 2,
                                        .state_names = {"exp_avg", "exp_avg_sq"},
                                        .check = adam_check,
                                        .update = adam_update};

/* ---------------------------------------------------------------- schedules */

static double schedule_lr(const kd_optimizer *o)
{
    switch ((kd_schedule)o->schedule) {
    case KD_SCHEDULE_CONSTANT: break;
    case KD_SCHEDULE_COSINE: {
        /* Loshchilov and Hutter 2017 (SGDR), eq. 5, one cycle without restarts; held at min_lr
         * after total_steps. */
        if (o->total_steps <= 0) break;
        double frac =
            (double)(o->step < o->total_steps ? o->step : o->total_steps) / (double)o->total_steps;
        return o->min_lr + ((double)o->lr - o->min_lr) * (1.0 + cos(M_PI * frac)) / 2.0;
    }
    case KD_SCHEDULE_STEP:
        if (o->step_size <= 0) break;
        return o->lr * pow(o->gamma, (double)(o->step / o->step_size));
    case KD_SCHEDULE_MULTISTEP: {
        int64_t passed = 0;
        while (passed < o->nmilestones && o->milestones[passed] <= o->step) passed++;
        return o->lr * pow(o->gamma, (double)passed);
    }
    }
    return o->lr;
}

double kdi_optimizer_lr(const kd_optimizer *o)
{
    double lr = schedule_lr(o);
    if (o->step < o->warmup_steps)
        lr *= o->warmup_start + (1.0 - o->warmup_start) * (double)o->step / (double)o->warmup_steps;
    return lr;
}

static kd_status check_schedule(const kd_optimizer *o)
{
    if (o->schedule == KD_SCHEDULE_COSINE && o->total_steps <= 0)
        return kdi_fail(KD_ERR_STATE, "the cosine schedule needs KD_OPT_TOTAL_STEPS > 0");
    if (o->schedule == KD_SCHEDULE_STEP && o->step_size <= 0)
        return kdi_fail(KD_ERR_STATE, "the step schedule needs KD_OPT_STEP_SIZE > 0");
    if (o->schedule == KD_SCHEDULE_MULTISTEP && o->nmilestones == 0)
        return kdi_fail(KD_ERR_STATE,
                        "the multi-step schedule needs milestones (kd_optimizer_set_milestones)");
    return KD_OK;
}

kd_status kdi_optimizer_check(const kd_optimizer *o)
{
    KDI_CHECK_NULL(o);
    KDI_TRY(check_schedule(o));
    return o->ops->check(o);
}

/* ---------------------------------------------------------------- options */

enum { OPT_FLOAT, OPT_INT, OPT_READ_ONLY_FLOAT };

/* The kinds an option applies to, as bits (1 << kind). */
#define SGD_ONLY (1u << KD_OPTIMIZER_SGD)
#define ADAM_ONLY ((1u << KD_OPTIMIZER_ADAM) | (1u << KD_OPTIMIZER_ADAMW))
#define ALL_KINDS (SGD_ONLY | ADAM_ONLY)

static const struct {
    const char *name;
    int type;
    unsigned kinds;
} options[] = {
    [KD_OPT_LEARNING_RATE] = {"KD_OPT_LEARNING_RATE", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_MOMENTUM] = {"KD_OPT_MOMENTUM", OPT_FLOAT, SGD_ONLY},
    [KD_OPT_WEIGHT_DECAY] = {"KD_OPT_WEIGHT_DECAY", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_NESTEROV] = {"KD_OPT_NESTEROV", OPT_INT, SGD_ONLY},
    [KD_OPT_SCHEDULE] = {"KD_OPT_SCHEDULE", OPT_INT, ALL_KINDS},
    [KD_OPT_TOTAL_STEPS] = {"KD_OPT_TOTAL_STEPS", OPT_INT, ALL_KINDS},
    [KD_OPT_MIN_LR] = {"KD_OPT_MIN_LR", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_CURRENT_LR] = {"KD_OPT_CURRENT_LR", OPT_READ_ONLY_FLOAT, ALL_KINDS},
    [KD_OPT_STEP] = {"KD_OPT_STEP", OPT_INT, ALL_KINDS},
    [KD_OPT_BETA1] = {"KD_OPT_BETA1", OPT_FLOAT, ADAM_ONLY},
    [KD_OPT_BETA2] = {"KD_OPT_BETA2", OPT_FLOAT, ADAM_ONLY},
    [KD_OPT_EPSILON] = {"KD_OPT_EPSILON", OPT_FLOAT, ADAM_ONLY},
    [KD_OPT_STEP_SIZE] = {"KD_OPT_STEP_SIZE", OPT_INT, ALL_KINDS},
    [KD_OPT_GAMMA] = {"KD_OPT_GAMMA", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_WARMUP_STEPS] = {"KD_OPT_WARMUP_STEPS", OPT_INT, ALL_KINDS},
    [KD_OPT_WARMUP_START] = {"KD_OPT_WARMUP_START", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_CLIP_NORM] = {"KD_OPT_CLIP_NORM", OPT_FLOAT, ALL_KINDS},
    [KD_OPT_GRAD_NORM] = {"KD_OPT_GRAD_NORM", OPT_READ_ONLY_FLOAT, ALL_KINDS},
};
#define NOPTIONS ((int)(sizeof options / sizeof options[0]))

static const char *option_name(int key)
{
    return key >= 0 && key < NOPTIONS ? options[key].name : "?";
}

/* Fails unless key exists, is of type (reading: a read-only float counts as a float) and, when
 * writing, applies to the optimizer's kind: a setting that would be ignored is refused. */
static kd_status check_key(const kd_optimizer *o, int key, int type, int writing)
{
    if (key < 0 || key >= NOPTIONS)
        return kdi_fail(KD_ERR_ARGUMENT, "optimizer option %d is not a kd_optimizer_option", key);
    int t = options[key].type;
    if (writing && t == OPT_READ_ONLY_FLOAT)
        return kdi_fail(KD_ERR_ARGUMENT, "%s is read only", options[key].name);
    if (t == OPT_READ_ONLY_FLOAT) t = OPT_FLOAT;
    if (t != type) {
        const char *use = t == OPT_INT
                              ? (writing ? "kd_optimizer_set_int" : "kd_optimizer_get_int")
                              : (writing ? "kd_optimizer_set_float" : "kd_optimizer_get_float");
        return kdi_fail(KD_ERR_ARGUMENT, "%s is %s; use %s", options[key].name,
                        t == OPT_INT ? "an int" : "a float", use);
    }
    if (writing && !(options[key].kinds & (1u << o->kind)))
        return kdi_fail(KD_ERR_ARGUMENT, "%s does not apply to the %s optimizer", options[key].name,
                        o->ops->name);
    return KD_OK;
}

static kd_status check_float(kd_optimizer_option key, float v)
{
    const char *name = option_name((int)key);
    switch (key) {
    case KD_OPT_LEARNING_RATE:
        if (!(v > 0.0f) || !isfinite(v))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be finite and greater than 0", name,
                            (double)v);
        break;
    case KD_OPT_MOMENTUM:
    case KD_OPT_BETA1:
    case KD_OPT_BETA2:
        if (!(v >= 0.0f && v < 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be in [0, 1)", name, (double)v);
        break;
    case KD_OPT_EPSILON:
        if (!(v > 0.0f) || !isfinite(v))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be finite and greater than 0", name,
                            (double)v);
        break;
    case KD_OPT_GAMMA:
        if (!(v > 0.0f && v <= 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be in (0, 1]", name, (double)v);
        break;
    case KD_OPT_WARMUP_START:
        if (!(v >= 0.0f && v <= 1.0f))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be in [0, 1]", name, (double)v);
        break;
    default: /* weight decay, min lr, clip norm */
        if (!(v >= 0.0f) || !isfinite(v))
            return kdi_fail(KD_ERR_ARGUMENT, "%s %g must be finite and >= 0", name, (double)v);
        break;
    }
    return KD_OK;
}

kd_status kd_optimizer_set_float(kd_optimizer *o, kd_optimizer_option key, float value)
{
    KDI_CHECK_NULL(o);
    KDI_TRY(check_key(o, (int)key, OPT_FLOAT, 1));
    KDI_TRY(check_float(key, value));
    switch (key) {
    case KD_OPT_LEARNING_RATE: o->lr = value; break;
    case KD_OPT_MOMENTUM: o->momentum = value; break;
    case KD_OPT_WEIGHT_DECAY: o->weight_decay = value; break;
    case KD_OPT_MIN_LR: o->min_lr = value; break;
    case KD_OPT_BETA1: o->beta1 = value; break;
    case KD_OPT_BETA2: o->beta2 = value; break;
    case KD_OPT_EPSILON: o->eps = value; break;
    case KD_OPT_GAMMA: o->gamma = value; break;
    case KD_OPT_WARMUP_START: o->warmup_start = value; break;
    case KD_OPT_CLIP_NORM: o->clip_norm = value; break;
    default: break;
    }
    return KD_OK;
}

kd_status kd_optimizer_get_float(const kd_optimizer *o, kd_optimizer_option key, float *value)
{
    KDI_CHECK_NULL(o);
    KDI_CHECK_NULL(value);
    KDI_TRY(check_key(o, (int)key, OPT_FLOAT, 0));
    switch (key) {
    case KD_OPT_LEARNING_RATE: *value = o->lr; break;
    case KD_OPT_MOMENTUM: *value = o->momentum; break;
    case KD_OPT_WEIGHT_DECAY: *value = o->weight_decay; break;
    case KD_OPT_MIN_LR: *value = o->min_lr; break;
    case KD_OPT_CURRENT_LR: *value = (float)kdi_optimizer_lr(o); break;
    case KD_OPT_BETA1: *value = o->beta1; break;
    case KD_OPT_BETA2: *value = o->beta2; break;
    case KD_OPT_EPSILON: *value = o->eps; break;
    case KD_OPT_GAMMA: *value = o->gamma; break;
    case KD_OPT_WARMUP_START: *value = o->warmup_start; break;
    case KD_OPT_CLIP_NORM: *value = o->clip_norm; break;
    case KD_OPT_GRAD_NORM: *value = (float)o->grad_norm; break;
    default: break;
    }
    return KD_OK;
}

static kd_status check_int(kd_optimizer_option key, int64_t v)
{
    const char *name = option_name((int)key);
    switch (key) {
    case KD_OPT_NESTEROV:
        if (v != 0 && v != 1)
            return kdi_fail(KD_ERR_ARGUMENT, "%s %lld must be 0 or 1", name, (long long)v);
        break;
    case KD_OPT_SCHEDULE:
        if (v < KD_SCHEDULE_CONSTANT || v > KD_SCHEDULE_MULTISTEP)
            return kdi_fail(KD_ERR_ARGUMENT, "%s %lld is not a kd_schedule", name, (long long)v);
        break;
    case KD_OPT_TOTAL_STEPS:
    case KD_OPT_STEP_SIZE:
        if (v < 1)
            return kdi_fail(KD_ERR_ARGUMENT, "%s %lld must be 1 or more", name, (long long)v);
        break;
    default: /* step, warm-up steps */
        if (v < 0)
            return kdi_fail(KD_ERR_ARGUMENT, "%s %lld must be 0 or more", name, (long long)v);
        break;
    }
    return KD_OK;
}

kd_status kd_optimizer_set_int(kd_optimizer *o, kd_optimizer_option key, int64_t value)
{
    KDI_CHECK_NULL(o);
    KDI_TRY(check_key(o, (int)key, OPT_INT, 1));
    KDI_TRY(check_int(key, value));
    switch (key) {
    case KD_OPT_NESTEROV: o->nesterov = (int32_t)value; break;
    case KD_OPT_SCHEDULE: o->schedule = (int32_t)value; break;
    case KD_OPT_TOTAL_STEPS: o->total_steps = value; break;
    case KD_OPT_STEP: o->step = value; break;
    case KD_OPT_STEP_SIZE: o->step_size = value; break;
    case KD_OPT_WARMUP_STEPS: o->warmup_steps = value; break;
    default: break;
    }
    return KD_OK;
}

kd_status kd_optimizer_get_int(const kd_optimizer *o, kd_optimizer_option key, int64_t *value)
{
    KDI_CHECK_NULL(o);
    KDI_CHECK_NULL(value);
    KDI_TRY(check_key(o, (int)key, OPT_INT, 0));
    switch (key) {
    case KD_OPT_NESTEROV: *value = o->nesterov; break;
    case KD_OPT_SCHEDULE: *value = o->schedule; break;
    case KD_OPT_TOTAL_STEPS: *value = o->total_steps; break;
    case KD_OPT_STEP: *value = o->step; break;
    case KD_OPT_STEP_SIZE: *value = o->step_size; break;
    case KD_OPT_WARMUP_STEPS: *value = o->warmup_steps; break;
    default: break;
    }
    return KD_OK;
}

kd_status kd_optimizer_set_milestones(kd_optimizer *o, const int64_t *steps, int64_t count)
{
    KDI_CHECK_NULL(o);
    if (count < 0 || count > KD_MAX_MILESTONES)
        return kdi_fail(KD_ERR_ARGUMENT, "%lld milestones: from 0 to %d are allowed",
                        (long long)count, KD_MAX_MILESTONES);
    if (count > 0) KDI_CHECK_NULL(steps);
    for (int64_t i = 0; i < count; i++)
        if (steps[i] < 1 || (i > 0 && steps[i] <= steps[i - 1]))
            return kdi_fail(KD_ERR_ARGUMENT,
                            "milestone %lld (%lld) is not above 0 and above the one before",
                            (long long)i, (long long)steps[i]);
    if (count > 0) memcpy(o->milestones, steps, (size_t)count * sizeof *steps);
    o->nmilestones = count;
    return KD_OK;
}

kd_status kd_optimizer_get_milestones(const kd_optimizer *o, int64_t *steps, int64_t capacity,
                                      int64_t *count)
{
    KDI_CHECK_NULL(o);
    KDI_CHECK_NULL(count);
    if (capacity < 0)
        return kdi_fail(KD_ERR_ARGUMENT, "capacity %lld is negative", (long long)capacity);
    if (capacity > 0) KDI_CHECK_NULL(steps);
    int64_t n = capacity < o->nmilestones ? capacity : o->nmilestones;
    if (n > 0) memcpy(steps, o->milestones, (size_t)n * sizeof *steps);
    *count = o->nmilestones;
    return KD_OK;
}

/* ---------------------------------------------------------------- the handle */

static kd_status alloc_state(kd_optimizer *o)
{
    const kdi_param_list *pl = kdi_model_params(o->model);
    int32_t ns = o->ops->nstate;
    o->nparams = pl->n;
    o->state =
        kdi_calloc((size_t)(pl->n > 0 ? pl->n : 1) * (size_t)(ns > 0 ? ns : 1), sizeof *o->state);
    if (o->state == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the optimizer state");
    for (int32_t i = 0; i < pl->n; i++) {
        const kdi_param *p = pl->items[i].p;
        for (int32_t j = 0; p->grad != NULL && j < ns; j++)
            if ((o->state[i * ns + j] = kdi_alloc_floats(p->count)) == NULL)
                return kdi_fail(KD_ERR_NOMEM, "cannot allocate the optimizer state of '%s'",
                                pl->items[i].name);
    }
    return KD_OK;
}

kd_status kd_optimizer_create(kd_optimizer_kind kind, kd_model *m, kd_optimizer **out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    const kdi_optim_ops *ops = NULL;
    switch (kind) {
    case KD_OPTIMIZER_SGD: ops = &sgd_ops; break;
    case KD_OPTIMIZER_ADAM: ops = &adam_ops; break;
    case KD_OPTIMIZER_ADAMW: ops = &adamw_ops; break;
    }
    if (ops == NULL)
        return kdi_fail(KD_ERR_ARGUMENT, "optimizer kind %d is not a kd_optimizer_kind", (int)kind);
    if (kdi_model_is_int8(m))
        return kdi_fail(KD_ERR_UNSUPPORTED, "the model is int8 and cannot be trained: optimise the "
                                            "float model, then quantise it (kd_model_quantize)");
    kd_optimizer *o = kdi_calloc(1, sizeof *o);
    if (o == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate an optimizer");
    o->kind = kind;
    o->ops = ops;
    o->model = m;
    /* PyTorch's defaults for each kind. */
    o->lr = kind == KD_OPTIMIZER_SGD ? 0.01f : 0.001f;
    o->weight_decay = kind == KD_OPTIMIZER_ADAMW ? 0.01f : 0.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->schedule = KD_SCHEDULE_CONSTANT;
    o->gamma = 0.1f;
    o->warmup_start = 1.0f / 3.0f;
    kd_status st = alloc_state(o);
    if (st != KD_OK) {
        kd_optimizer_destroy(o);
        return st;
    }
    *out = o;
    return KD_OK;
}

void kd_optimizer_destroy(kd_optimizer *o)
{
    if (o == NULL) return;
    for (int32_t i = 0; o->state != NULL && i < o->nparams * o->ops->nstate; i++)
        kdi_free_floats(o->state[i]);
    kdi_free(o->state);
    kdi_free(o);
}

/* A parameter's squared gradient norm in SUM_SQ_CHUNKS sums of fixed slices, added in order: the
 * same value on any number of threads. On one thread this pass over every gradient ran while the
 * other thread waited (3% of an MLP student's step on 2 threads). */
#define SUM_SQ_CHUNKS 16
static double param_sum_sq(const kdi_kernels *k, const float *g, int64_t n)
{
    if (n < KDI_PARALLEL_MIN) return k->sum_sq(g, n);
    double part[SUM_SQ_CHUNKS];
    KDI_FOR(kdi_threads_for(n), c, SUM_SQ_CHUNKS, {
        int64_t lo = n * c / SUM_SQ_CHUNKS, hi = n * (c + 1) / SUM_SQ_CHUNKS;
        part[c] = k->sum_sq(g + lo, hi - lo);
    });
    double sum = 0.0;
    for (int c = 0; c < SUM_SQ_CHUNKS; c++) sum += part[c];
    return sum;
}

/* The sum of every squared gradient; fails when it is not finite. Squares of floats cannot
 * overflow a double, so the sum is finite exactly when every gradient is. */
static kd_status grad_sum_sq(const kd_optimizer *o, double *out)
{
    const kdi_param_list *pl = kdi_model_params(o->model);
    const kdi_kernels *k = kdi_kernels_get();
    double sum_sq = 0.0;
    for (int32_t i = 0; i < pl->n; i++) {
        const kdi_param *p = pl->items[i].p;
        if (p->grad != NULL) sum_sq += param_sum_sq(k, p->grad, p->count);
    }
    if (!isfinite(sum_sq)) {
        for (int32_t i = 0; i < pl->n; i++) {
            const kdi_param *p = pl->items[i].p;
            if (p->grad != NULL && !kdi_all_finite(p->grad, p->count))
                return kdi_fail(KD_ERR_NUMERIC, "the gradient of '%s' holds NaN or infinity",
                                pl->items[i].name);
        }
        return kdi_fail(KD_ERR_NUMERIC, "the gradients' squared norm is not finite");
    }
    *out = sum_sq;
    return KD_OK;
}

kd_status kdi_optimizer_ready(const kd_optimizer *o)
{
    double unused;
    KDI_TRY(kdi_optimizer_check(o));
    return grad_sum_sq(o, &unused);
}

kd_status kd_optimizer_step(kd_optimizer *o)
{
    KDI_TRY(kdi_optimizer_check(o));
    return kdi_optimizer_step(o);
}

kd_status kdi_optimizer_step(kd_optimizer *o)
{
    const kdi_param_list *pl = kdi_model_params(o->model);
    const kdi_kernels *k = kdi_kernels_get();
    /* All or nothing: a non-finite gradient refuses the step before any weight moves. */
    double sum_sq;
    KDI_TRY(grad_sum_sq(o, &sum_sq));
    o->grad_norm = sqrt(sum_sq);
    /* PyTorch's coefficient, applied only when it is below 1 (clamped there). */
    double coef = o->clip_norm > 0.0f ? (double)o->clip_norm / (o->grad_norm + 1e-6) : 1.0;
    if (coef < 1.0) {
        for (int32_t i = 0; i < pl->n; i++) {
            kdi_param *p = pl->items[i].p;
            if (p->grad != NULL) k->scale(p->grad, (float)coef, p->count);
        }
    }
    float lr = (float)kdi_optimizer_lr(o);
    int32_t ns = o->ops->nstate;
    for (int32_t i = 0; i < pl->n; i++) {
        kdi_param *p = pl->items[i].p;
        if (p->grad == NULL) continue;
        o->ops->update(o, p, &o->state[i * ns], lr); /* and clears p->grad */
    }
    o->model->grads_dirty = 0;
    o->step++;
    return KD_OK;
}
