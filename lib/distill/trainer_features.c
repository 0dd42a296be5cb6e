/* Feature terms of the trainer (kd_trainer_add_feature_loss): hints, attention, relations and the
 * like between a student layer (through an optional regressor) and a teacher layer, computed after
 * the student's forward and taken back into the student with kd_model_feature_backward; plus the
 * FitNets hint-only stage and the teachers' mean logits for losses that compare logits. */
#include "distill/trainer_features.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "distill/losses/losses.h"
#include "nn/layers/attention.h"

typedef struct kdi_feature_term {
    kd_feature_loss *loss; /* borrowed */
    int32_t student_layer, teacher, teacher_layer;
    float weight;
    kd_model *regressor; /* owned, or NULL */
    kd_optimizer *ropt;  /* the regressor's optimizer, owned, or NULL */
    kdi_shape rshape;    /* the student's side: the regressor's output or the layer */
    kdi_shape tshape;
    /* Rows an example the loss sees: T when a pointwise loss compares two sequences token by
     * token (DistilBERT's cosine on hidden states), else 1; ls and lt are then the rows' shapes. */
    int64_t per;
    kdi_shape ls, lt;
    kdi_buf rout; /* the regressor's output [batch, size(rshape)] */
    kdi_buf grad; /* weight * d loss / d rout */
    kdi_buf dx;   /* d loss / d student feature, through the regressor */
    double value; /* weight * loss of the last step */
    /* An attention term (kd_trainer_add_attention_loss): student_layer and teacher_layer count
     * attention layers; heads is the kd_attention_heads pairing, sheads the student's heads. In
     * mean mode rout holds the two means, the student's [batch, T, T] then the teacher's. */
    int attn, heads;
    int64_t sheads;
} kdi_feature_term;

static void term_free(kdi_feature_term *f)
{
    kd_optimizer_destroy(f->ropt);
    kd_model_destroy(f->regressor);
    kdi_buf_free(&f->rout);
    kdi_buf_free(&f->grad);
    kdi_buf_free(&f->dx);
}

void kdi_trainer_features_free(kd_trainer *t)
{
    for (int32_t k = 0; k < t->nterms; k++) term_free(&t->terms[k]);
    kdi_free(t->terms);
    kdi_buf_free(&t->tlogits);
    t->terms = NULL;
    t->nterms = t->term_cap = 0;
}

/* ---------------------------------------------------------------- adding a term */

static kd_status check_layer(const kd_model *m, const char *who, int32_t layer)
{
    if (layer < 0 || layer >= m->seq.n)
        return kdi_fail(KD_ERR_ARGUMENT, "%s layer %d is not in 0..%d", who, (int)layer,
                        (int)m->seq.n - 1);
    return KD_OK;
}

/* "input CxHxW | spec" (for a sequence layer [T, d], "sequence T d | spec", so that a dense layer
 * projects each token) unless spec starts with its own input layer; heap, caller frees. */
static kd_status regressor_spec(const char *spec, kdi_shape in, int seq, char **out)
{
    const char *p = spec;
    while (isspace((unsigned char)*p)) p++;
    size_t len = strlen(spec) + 96;
    char *full = kdi_malloc(len);
    if (full == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the regressor's spec");
    if (strncmp(p, "input", 5) == 0 && (p[5] == '\0' || isspace((unsigned char)p[5])))
        snprintf(full, len, "%s", spec);
    else if (seq)
        snprintf(full, len, "sequence %lld %lld | %s", (long long)in.c, (long long)(in.h * in.w),
                 spec);
    else if (in.h == 1 && in.w == 1)
        snprintf(full, len, "input %lld | %s", (long long)in.c, spec);
    else
        snprintf(full, len, "input %lldx%lldx%lld | %s", (long long)in.c, (long long)in.h,
                 (long long)in.w, spec);
    *out = full;
    return KD_OK;
}

/* Builds term k's regressor for student feature shape s, with an optimizer of the student's kind. */
static kd_status make_regressor(const kd_trainer *t, const char *spec, kdi_shape s, int seq,
                                int32_t k, kdi_feature_term *f)
{
    char *full = NULL;
    KDI_TRY(regressor_spec(spec, s, seq, &full));
    uint64_t seed = kdi_rng_derive(t->student->seed, 0x5245470000ULL + (uint64_t)k); /* "REG" */
    kd_status st = kd_model_create(full, seed, &f->regressor);
    kdi_free(full);
    KDI_TRY(st);
    int64_t in = kdi_shape_size(f->regressor->seq.in);
    if (in != kdi_shape_size(s))
        st = kdi_fail(KD_ERR_SHAPE,
                      "the regressor takes %lld values an example; the student layer gives %lld",
                      (long long)in, (long long)kdi_shape_size(s));
    if (st == KD_OK) st = kd_optimizer_create(t->opt->kind, f->regressor, &f->ropt);
    if (st != KD_OK) {
        kd_model_destroy(f->regressor);
        f->regressor = NULL;
        return st;
    }
    f->rshape = f->regressor->seq.out;
    return KD_OK;
}

/* Pointwise losses (hint, cosine) on two sequences of the same length compare token by token, as
 * DistilBERT's cosine loss on hidden states [batch * T, d]; others see one row an example. */
static void loss_rows(kdi_feature_term *f, int sseq, int tseq)
{
    int pointwise = f->loss->kind == KD_FEATURE_COSINE || f->loss->kind == KD_FEATURE_HINT;
    f->per = 1;
    f->ls = f->rshape;
    f->lt = f->tshape;
    if (!pointwise || !sseq || !tseq || f->rshape.c != f->tshape.c) return;
    f->per = f->rshape.c;
    f->ls = kdi_shape_flat(f->rshape.h * f->rshape.w);
    f->lt = kdi_shape_flat(f->tshape.h * f->tshape.w);
}

static kd_status grow_terms(kd_trainer *t)
{
    if (t->nterms < t->term_cap) return KD_OK;
    if (t->nterms >= (1 << 20)) return kdi_fail(KD_ERR_ARGUMENT, "too many feature terms");
    int32_t cap = t->term_cap ? 2 * t->term_cap : 4;
    kdi_feature_term *terms = kdi_realloc(t->terms, (size_t)cap * sizeof *terms);
    if (terms == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the list of feature terms");
    t->terms = terms;
    t->term_cap = cap;
    return KD_OK;
}

kd_status kd_trainer_add_feature_loss(kd_trainer *t, kd_feature_loss *loss, int32_t student_layer,
                                      int32_t teacher, int32_t teacher_layer,
                                      const char *regressor_spec, float weight)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(loss);
    if (!(weight > 0.0f) || !isfinite(weight))
        return kdi_fail(KD_ERR_ARGUMENT, "weight %g must be finite and greater than 0",
                        (double)weight);
    if (teacher < 0 || teacher >= t->nteachers)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "teacher %d is not one of the %d added (kd_trainer_add_teacher first)",
                        (int)teacher, (int)t->nteachers);
    const kd_model *tm = t->teachers[teacher];
    KDI_TRY(check_layer(t->student, "student", student_layer));
    KDI_TRY(check_layer(tm, "teacher", teacher_layer));
    kdi_feature_term f = {.loss = loss,
                          .student_layer = student_layer,
                          .teacher = teacher,
                          .teacher_layer = teacher_layer,
                          .weight = weight,
                          .rshape = t->student->seq.layers[student_layer].out,
                          .tshape = tm->seq.layers[teacher_layer].out};
    int sseq = t->student->seq.layers[student_layer].seq > 0;
    if (regressor_spec != NULL)
        KDI_TRY(make_regressor(t, regressor_spec, f.rshape, sseq, t->nterms, &f));
    if (f.regressor != NULL) sseq = f.regressor->seq.seq_out;
    loss_rows(&f, sseq, tm->seq.layers[teacher_layer].seq > 0);
    kd_status st = kdi_feature_loss_check(loss, f.ls, f.lt, f.per);
    if (st == KD_OK) st = grow_terms(t);
    if (st != KD_OK) {
        term_free(&f);
        return st;
    }
    t->terms[t->nterms++] = f;
    return KD_OK;
}

/* ---------------------------------------------------------------- attention terms */

static kd_status attention_layer(const kd_model *m, const char *who, int32_t k, kdi_layer **l)
{
    *l = kdi_model_attention_layer(m, k);
    if (*l != NULL) return KD_OK;
    int32_t count = 0;
    (void)kd_model_attention_count(m, &count);
    if (count == 0) return kdi_fail(KD_ERR_ARGUMENT, "the %s has no attention layer", who);
    return kdi_fail(KD_ERR_ARGUMENT, "%s attention layer %d is not in 0..%d", who, (int)k,
                    (int)count - 1);
}

kd_status kd_trainer_add_attention_loss(kd_trainer *t, kd_feature_loss *loss,
                                        int32_t student_attention, int32_t teacher,
                                        int32_t teacher_attention, kd_attention_heads heads,
                                        float weight)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(loss);
    if (!(weight > 0.0f) || !isfinite(weight))
        return kdi_fail(KD_ERR_ARGUMENT, "weight %g must be finite and greater than 0",
                        (double)weight);
    if (heads != KD_ATTENTION_HEADS_MATCHED && heads != KD_ATTENTION_HEADS_MEAN)
        return kdi_fail(KD_ERR_ARGUMENT, "heads %d is not a kd_attention_heads", (int)heads);
    if (teacher < 0 || teacher >= t->nteachers)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "teacher %d is not one of the %d added (kd_trainer_add_teacher first)",
                        (int)teacher, (int)t->nteachers);
    kdi_layer *sl, *tl;
    KDI_TRY(attention_layer(t->student, "student", student_attention, &sl));
    KDI_TRY(attention_layer(t->teachers[teacher], "teacher", teacher_attention, &tl));
    int64_t b, hs, ht, ls, lt;
    kdi_attention_probs(sl, &b, &hs, &ls);
    kdi_attention_probs(tl, &b, &ht, &lt);
    if (ls != lt)
        return kdi_fail(KD_ERR_SHAPE,
                        "the student's attention sees %lld positions, the teacher's %lld; they "
                        "must be equal",
                        (long long)ls, (long long)lt);
    if (heads == KD_ATTENTION_HEADS_MATCHED && hs != ht)
        return kdi_fail(KD_ERR_SHAPE,
                        "matched heads need equal head counts: the student has %lld, the "
                        "teacher %lld (KD_ATTENTION_HEADS_MEAN compares their means)",
                        (long long)hs, (long long)ht);
    int64_t c = heads == KD_ATTENTION_HEADS_MEAN ? 1 : hs;
    kdi_feature_term f = {.loss = loss,
                          .student_layer = student_attention,
                          .teacher = teacher,
                          .teacher_layer = teacher_attention,
                          .weight = weight,
                          .per = 1,
                          .ls = {c, ls, ls},
                          .lt = {c, ls, ls},
                          .attn = 1,
                          .heads = (int)heads,
                          .sheads = hs};
    f.rshape = f.ls;
    f.tshape = f.lt;
    KDI_TRY(kdi_feature_loss_check(loss, f.ls, f.lt, 1));
    KDI_TRY(grow_terms(t));
    t->terms[t->nterms++] = f;
    return KD_OK;
}

/* ---------------------------------------------------------------- options and values */

kd_status kd_trainer_set_int(kd_trainer *t, kd_trainer_option key, int64_t value)
{
    KDI_CHECK_NULL(t);
    if (key == KD_TRAINER_SYNC_BATCHNORM) return kdi_trainer_set_sync_bn(t, value);
    if (key == KD_TRAINER_BUCKET_FLOATS) {
        if (value < 0)
            return kdi_fail(KD_ERR_ARGUMENT, "KD_TRAINER_BUCKET_FLOATS is 0 or more, not %lld",
                            (long long)value);
        t->par.bucket_floats = value;
        return KD_OK;
    }
    if (key != KD_TRAINER_HINT_ONLY)
        return kdi_fail(KD_ERR_ARGUMENT, "trainer option %d is not a kd_trainer_option", (int)key);
    if (value != 0 && value != 1)
        return kdi_fail(KD_ERR_ARGUMENT, "KD_TRAINER_HINT_ONLY is 0 or 1, not %lld",
                        (long long)value);
    if (value == 1 && t->nterms == 0)
        return kdi_fail(KD_ERR_STATE,
                        "KD_TRAINER_HINT_ONLY trains on the feature terms alone: add one first "
                        "(kd_trainer_add_feature_loss)");
    t->hint_only = (int32_t)value;
    return KD_OK;
}

kd_status kd_trainer_get_int(const kd_trainer *t, kd_trainer_option key, int64_t *value)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(value);
    if (key == KD_TRAINER_SYNC_BATCHNORM) {
        *value = t->sync_bn;
        return KD_OK;
    }
    if (key == KD_TRAINER_BUCKET_FLOATS) {
        *value = t->par.bucket_floats;
        return KD_OK;
    }
    if (key != KD_TRAINER_HINT_ONLY)
        return kdi_fail(KD_ERR_ARGUMENT, "trainer option %d is not a kd_trainer_option", (int)key);
    *value = t->hint_only;
    return KD_OK;
}

static kd_status check_term(const kd_trainer *t, int32_t k, int minus_one)
{
    if ((minus_one && k == -1) || (k >= 0 && k < t->nterms)) return KD_OK;
    if (t->nterms == 0)
        return kdi_fail(KD_ERR_ARGUMENT, "feature term %d: the trainer has no feature terms%s",
                        (int)k, minus_one ? " (only -1, their sum, is allowed)" : "");
    return kdi_fail(KD_ERR_ARGUMENT, "feature term %d is not in %s0..%d", (int)k,
                    minus_one ? "-1 or " : "", (int)t->nterms - 1);
}

kd_status kd_trainer_feature_value(const kd_trainer *t, int32_t k, float *value)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(value);
    KDI_TRY(check_term(t, k, 1));
    if (!t->features_ran)
        return kdi_fail(KD_ERR_STATE, "feature values need a kd_trainer_step with feature terms");
    *value = (float)(k == -1 ? t->feature_total : t->terms[k].value);
    return KD_OK;
}

kd_status kd_trainer_regressor(const kd_trainer *t, int32_t k, kd_model **regressor)
{
    KDI_CHECK_NULL(t);
    KDI_CHECK_NULL(regressor);
    KDI_TRY(check_term(t, k, 0));
    *regressor = t->terms[k].regressor;
    return KD_OK;
}

/* ---------------------------------------------------------------- a step */

/* The regressors' optimizers take the student's options at each step, so the trainer's check of
 * the student's optimizer covers them. */
kd_status kdi_trainer_features_check(const kd_trainer *t)
{
    if (t->hint_only && t->nterms == 0)
        return kdi_fail(KD_ERR_STATE, "KD_TRAINER_HINT_ONLY needs a feature term");
    return KD_OK;
}

kd_status kdi_trainer_features_check_size(const kd_trainer *t, int64_t batch)
{
    for (int32_t k = 0; k < t->nterms; k++)
        if (t->terms[k].regressor != NULL)
            KDI_TRY(kdi_model_check_size(t->terms[k].regressor, batch));
    return KD_OK;
}

kd_status kdi_trainer_mean_logits(kd_trainer *t, const float *x, const float *cached, int64_t batch,
                                  const float **out)
{
    int64_t count = batch * t->rows * t->classes;
    int32_t n = kdi_trainer_cached_teachers(t);
    if (cached == NULL && t->nteachers == 0)
        return kdi_fail(KD_ERR_STATE,
                        "the loss needs the teachers' logits but the trainer has no teacher and "
                        "teacher_logits is NULL; add a teacher or pass cached logits");
    if (cached != NULL && !kdi_all_finite(cached, count * n))
        return kdi_fail(KD_ERR_NUMERIC, "the teachers' logits hold NaN or infinity");
    KDI_TRY(kdi_buf_reserve(&t->soft, count));
    if (cached == NULL) KDI_TRY(kdi_buf_reserve(&t->tlogits, count));
    double wsum = 0.0;
    for (int32_t i = 0; i < n; i++) wsum += t->nteachers > 0 ? t->weights[i] : 1.0;
    float *mean = t->soft.data;
    memset(mean, 0, (size_t)count * sizeof *mean);
    for (int32_t i = 0; i < n; i++) {
        const float *z = cached != NULL ? cached + i * count : t->tlogits.data;
        if (cached == NULL) {
            KDI_TRY(kdi_model_predict(t->teachers[i], x, batch, t->tlogits.data));
            if (!kdi_all_finite(z, count))
                return kdi_fail(KD_ERR_NUMERIC, "teacher %d produced NaN or infinite logits",
                                (int)i);
        }
        float share = (float)((t->nteachers > 0 ? t->weights[i] : 1.0) / wsum);
        for (int64_t j = 0; j < count; j++) mean[j] += share * z[j];
    }
    if (cached == NULL) t->teachers_ran = 1;
    *out = mean;
    return KD_OK;
}

/* Runs teacher i on x unless it already ran in this step (live soft targets or an earlier term). */
static kd_status run_teacher(kd_trainer *t, const float *x, int64_t batch, int32_t k)
{
    int32_t i = t->terms[k].teacher;
    if (t->teachers_ran) return KD_OK;
    for (int32_t j = 0; j < k; j++)
        if (t->terms[j].teacher == i) return KD_OK;
    KDI_TRY(kdi_buf_reserve(&t->tlogits, batch * t->rows * t->classes));
    return kdi_model_predict(t->teachers[i], x, batch, t->tlogits.data);
}

int kdi_trainer_crd(const kd_trainer *t, int32_t k, kd_feature_loss **loss, int64_t *dim)
{
    const kdi_feature_term *f = &t->terms[k];
    if (f->attn || f->loss->kind != KD_FEATURE_CRD) return 0;
    *loss = f->loss;
    *dim = kdi_shape_size(f->ls);
    return 1;
}

int kdi_trainer_regressor(const kd_trainer *t, int32_t k, kd_model **m, kd_optimizer **o)
{
    *m = t->terms[k].regressor;
    *o = t->terms[k].ropt;
    return *m != NULL;
}

/* The regressor's optimizer follows the student's: same options, same place in the schedule (a
 * copy of every option, so options added later follow too); it keeps its own kind, model and
 * state. Clipping bounds the regressor's gradients by their own norm. */
static void sync_optimizer(kd_optimizer *dst, const kd_optimizer *src)
{
    kd_optimizer keep = *dst;
    *dst = *src;
    dst->kind = keep.kind;
    dst->ops = keep.ops;
    dst->model = keep.model;
    dst->state = keep.state;
    dst->nparams = keep.nparams;
    dst->grad_norm = keep.grad_norm;
}

/* Term k on the batch: loss, gradients into the regressor and the student's layer. */
static kd_status run_term(kd_trainer *t, kdi_feature_term *f, int64_t batch)
{
    const float *sf = kdi_model_feature(t->student, f->student_layer);
    const float *tf = kdi_model_feature(t->teachers[f->teacher], f->teacher_layer);
    int64_t n = batch * kdi_shape_size(f->rshape);
    KDI_TRY(kdi_buf_reserve(&f->grad, n));
    const float *in = sf;
    if (f->regressor != NULL) {
        KDI_TRY(kdi_buf_reserve(&f->rout, n));
        KDI_TRY(kdi_buf_reserve(&f->dx, batch * kdi_shape_size(f->regressor->seq.in)));
        KDI_TRY(kdi_model_forward(f->regressor, sf, batch, f->rout.data));
        in = f->rout.data;
    }
    double v;
    KDI_TRY(kdi_feature_loss_check(f->loss, f->ls, f->lt, batch * f->per));
    KDI_TRY(kdi_feature_loss_run(f->loss, in, f->ls, tf, f->lt, batch * f->per, &v));
    const float *g = kdi_feature_loss_grad(f->loss);
    for (int64_t i = 0; i < n; i++) f->grad.data[i] = f->weight * g[i];
    f->value = (double)f->weight * v;
    if (f->regressor == NULL)
        return kdi_model_feature_backward(t->student, f->student_layer, f->grad.data);
    sync_optimizer(f->ropt, t->opt);
    kdi_model_zero_grad(f->regressor);
    KDI_TRY(kdi_seq_backward(&f->regressor->seq, f->grad.data, f->dx.data));
    return kdi_model_feature_backward(t->student, f->student_layer, f->dx.data);
}

/* out[b] = (1/H) sum_h p[b, h] over maps of n values. */
static void head_mean(float *out, const float *p, int64_t batch, int64_t heads, int64_t n)
{
    float inv = 1.0f / (float)heads;
    for (int64_t b = 0; b < batch; b++) {
        float *o = out + b * n;
        memcpy(o, p + b * heads * n, (size_t)n * sizeof *o);
        for (int64_t h = 1; h < heads; h++) {
            const float *q = p + (b * heads + h) * n;
            for (int64_t i = 0; i < n; i++) o[i] += q[i];
        }
        for (int64_t i = 0; i < n; i++) o[i] *= inv;
    }
}

/* Attention term on the batch: the loss between the two layers' maps, its gradient added on the
 * student's probabilities for the coming backward. */
static kd_status run_attention(kd_trainer *t, kdi_feature_term *f, int64_t batch)
{
    kdi_layer *sl = kdi_model_attention_layer(t->student, f->student_layer);
    kdi_layer *tl = kdi_model_attention_layer(t->teachers[f->teacher], f->teacher_layer);
    int64_t b, hs, ht, len;
    const float *sp = kdi_attention_probs(sl, &b, &hs, &len);
    const float *tp = kdi_attention_probs(tl, &b, &ht, &len);
    int64_t tt = len * len, n = batch * hs * tt;
    KDI_TRY(kdi_buf_reserve(&f->grad, n));
    if (f->heads == KD_ATTENTION_HEADS_MEAN) {
        KDI_TRY(kdi_buf_reserve(&f->rout, 2 * batch * tt));
        head_mean(f->rout.data, sp, batch, hs, tt);
        head_mean(f->rout.data + batch * tt, tp, batch, ht, tt);
        sp = f->rout.data;
        tp = f->rout.data + batch * tt;
    }
    double v;
    KDI_TRY(kdi_feature_loss_check(f->loss, f->ls, f->lt, batch));
    KDI_TRY(kdi_feature_loss_run(f->loss, sp, f->ls, tp, f->lt, batch, &v));
    const float *g = kdi_feature_loss_grad(f->loss);
    if (f->heads == KD_ATTENTION_HEADS_MEAN) {
        float w = f->weight / (float)hs; /* d mean / d P_h = 1 / H */
        for (int64_t i = 0; i < batch; i++)
            for (int64_t h = 0; h < hs; h++)
                for (int64_t j = 0; j < tt; j++)
                    f->grad.data[(i * hs + h) * tt + j] = w * g[i * tt + j];
    } else {
        for (int64_t i = 0; i < n; i++) f->grad.data[i] = f->weight * g[i];
    }
    f->value = (double)f->weight * v;
    return kdi_attention_add_grad(sl, f->grad.data);
}

kd_status kdi_trainer_features_forward(kd_trainer *t, const float *x, int64_t batch, float *loss)
{
    if (t->nterms == 0) return KD_OK;
    double total = 0.0;
    for (int32_t k = 0; k < t->nterms; k++) {
        KDI_TRY(run_teacher(t, x, batch, k));
        kdi_feature_term *f = &t->terms[k];
        KDI_TRY(f->attn ? run_attention(t, f, batch) : run_term(t, f, batch));
        total += t->terms[k].value;
    }
    t->feature_total = total;
    t->features_ran = 1;
    *loss = (float)((double)*loss + total);
    return KD_OK;
}

kd_status kdi_trainer_features_ready(const kd_trainer *t)
{
    for (int32_t k = 0; k < t->nterms; k++)
        if (t->terms[k].ropt != NULL) KDI_TRY(kdi_optimizer_ready(t->terms[k].ropt));
    return KD_OK;
}

kd_status kdi_trainer_features_step(kd_trainer *t)
{
    for (int32_t k = 0; k < t->nterms; k++)
        if (t->terms[k].ropt != NULL) KDI_TRY(kdi_optimizer_step(t->terms[k].ropt));
    return KD_OK;
}
