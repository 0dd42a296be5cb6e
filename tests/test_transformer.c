/* Sequence layers (embed, posembed, per-token dense and layernorm, attention, lmhead): gradient
 * checks, reference values, causality, the token calls, files, and the PyTorch fixture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "nn/sequence.h"
#include "testutil.h"

/* ---------------------------------------------------------------- gradient checks */

typedef struct seq_ctx {
    kdi_seq *s;
    const float *x, *w;
    int64_t batch, nout;
    kdi_rng *streams; /* the layers' random streams at the first forward, restored every time */
} seq_ctx;

static void restore_streams(seq_ctx *c)
{
    for (int32_t i = 0; i < c->s->n; i++)
        if (c->s->layers[i].rng != NULL) *c->s->layers[i].rng = c->streams[i];
}

static double seq_objective(void *p)
{
    seq_ctx *c = p;
    const float *y;
    restore_streams(c);
    ck_assert_int_eq(kdi_seq_forward(c->s, c->x, c->batch, 1, &y), KD_OK);
    double sum = 0.0;
    for (int64_t i = 0; i < c->batch * c->nout; i++) sum += (double)c->w[i] * y[i];
    return sum;
}

/* d/dx (unless the input is token ids) and d/d(every parameter) of sum(w * y) for a chain on a
 * sequence of t rows of d (or t token ids below vocab), against central differences. Dropout
 * draws the same masks at every evaluation (streams restored). */
static void check_seq(const char *spec, int64_t t, int64_t d, int64_t vocab, int64_t batch)
{
    kdi_seq s;
    kdi_shape in = vocab > 0 ? kdi_shape_flat(t) : (kdi_shape){t, d, 1};
    ck_assert_msg(kdi_seq_build_as(&s, spec, in, 1, vocab, 7) == KD_OK, "%s: %s", spec,
                  kd_last_error());
    int64_t nin = batch * kdi_shape_size(in), nout = kdi_shape_size(s.out);
    float *x = malloc(sizeof(float) * nin), *dx = malloc(sizeof(float) * nin);
    float *w = malloc(sizeof(float) * batch * nout);
    kdi_rng *streams = calloc((size_t)s.n, sizeof *streams);
    for (int32_t i = 0; i < s.n; i++)
        if (s.layers[i].rng != NULL) streams[i] = *s.layers[i].rng;
    kdt_fill(x, nin, 1, -1.0f, 1.0f);
    if (vocab > 0)
        for (int64_t i = 0; i < nin; i++) x[i] = (float)((i * 7 + 3) % vocab);
    kdt_fill(w, batch * nout, 2, -1.0f, 1.0f);
    kdi_param_list params = {0};
    ck_assert_int_eq(kdi_seq_collect(&s, "", &params), KD_OK);
    seq_ctx c = {&s, x, w, batch, nout, streams};
    seq_objective(&c);
    ck_assert_int_eq(kdi_seq_backward(&s, w, vocab > 0 ? NULL : dx), KD_OK);
    double err;
    if (vocab == 0) {
        err = kdt_gradcheck(seq_objective, &c, x, dx, nin, 3e-3, 200);
        ck_assert_msg(err < 2e-2, "%s: input gradient error %g", spec, err);
    }
    for (int32_t i = 0; i < params.n; i++) {
        kdi_param *p = params.items[i].p;
        float *g = malloc(sizeof(float) * p->count);
        memcpy(g, p->grad, sizeof(float) * p->count);
        err = kdt_gradcheck(seq_objective, &c, p->value, g, p->count, 3e-3, 200);
        ck_assert_msg(err < 2e-2, "%s: gradient of %s off by %g", spec, params.items[i].name, err);
        free(g);
    }
    kdi_param_list_free(&params);
    kdi_seq_free(&s);
    free(streams);
    free(x);
    free(dx);
    free(w);
}

START_TEST(grad_embeddings)
{
    check_seq("embed 6 | posembed", 4, 0, 7, 3);
    check_seq("embed 6 | lmhead 7 tied", 4, 0, 7, 2);
    check_seq("embed 5 | posembed | layernorm | lmhead 9", 3, 0, 9, 2);
}
END_TEST

START_TEST(grad_per_token)
{
    check_seq("dense 5", 3, 4, 0, 2);
    check_seq("layernorm", 3, 4, 0, 2);
    check_seq("layernorm eps=0.01 | gelu | dense 3 | dropout 0.3", 4, 5, 0, 2);
    check_seq("residual(layernorm | dense 8 | gelu | dense 4)", 3, 4, 0, 2);
}
END_TEST

START_TEST(grad_attention)
{
    check_seq("attention 1", 3, 4, 0, 2);
    check_seq("attention 2", 4, 6, 0, 2);
    check_seq("attention 2 causal", 5, 4, 0, 2);
    check_seq("attention 3 causal dropout=0.3", 4, 6, 0, 2);
    check_seq("residual(layernorm | attention 2 causal)", 4, 4, 0, 2);
    /* past the causal products' row blocks of 16 */
    check_seq("attention 2 causal", 37, 4, 0, 2);
    check_seq("attention 2 causal dropout=0.2", 35, 4, 0, 1);
}
END_TEST

/* A whole block, along random directions (as kdt_check_directional): through two layernorms and
 * a tied head, single coordinates of the float objective are mostly rounding. */
static double directional(seq_ctx *c, float *v, const float *g, int64_t n, uint64_t seed)
{
    double fd, want;
    kdt_directional(seq_objective, c, v, g, n, seed, &fd, &want);
    return fabs(fd - want) / fmax(1e-3, fabs(fd) + fabs(want));
}

START_TEST(grad_block)
{
    const char *spec = "embed 8 | posembed | residual(layernorm | attention 2 causal) | "
                       "residual(layernorm | dense 16 | gelu | dense 8) | layernorm | lmhead 6 "
                       "tied";
    kdi_seq s;
    ck_assert_int_eq(kdi_seq_build_as(&s, spec, kdi_shape_flat(4), 1, 6, 7), KD_OK);
    float x[8], w[2 * 4 * 6];
    for (int i = 0; i < 8; i++) x[i] = (float)((i * 5 + 1) % 6);
    kdt_fill(w, 48, 2, -1.0f, 1.0f);
    kdi_param_list pl = {0};
    ck_assert_int_eq(kdi_seq_collect(&s, "", &pl), KD_OK);
    kdi_rng none[10] = {{{0}}};
    seq_ctx c = {&s, x, w, 2, 24, none};
    seq_objective(&c);
    ck_assert_int_eq(kdi_seq_backward(&s, w, NULL), KD_OK);
    for (int32_t i = 0; i < pl.n; i++)
        for (int k = 0; k < 3; k++) {
            kdi_param *p = pl.items[i].p;
            double err = directional(&c, p->value, p->grad, p->count, 30 + (uint64_t)(i * 3 + k));
            ck_assert_msg(err < 1e-2, "block: directional error of %s %g", pl.items[i].name, err);
        }
    kdi_param_list_free(&pl);
    kdi_seq_free(&s);
}
END_TEST

/* The gradient added on the attention probabilities goes through the softmax and below: the
 * objective sum(w * y) + sum(g * P). */
typedef struct tap_ctx {
    kd_model *m;
    const int32_t *ids;
    const float *w, *g;
    int64_t batch, nout, np;
} tap_ctx;

static double tap_objective(void *p)
{
    tap_ctx *c = p;
    float *y = malloc(sizeof(float) * c->batch * c->nout);
    ck_assert_int_eq(kd_model_forward_tokens(c->m, c->ids, c->batch, y), KD_OK);
    const float *probs;
    ck_assert_int_eq(kd_model_attention(c->m, 0, &probs, NULL, NULL, NULL), KD_OK);
    double sum = 0.0;
    for (int64_t i = 0; i < c->batch * c->nout; i++) sum += (double)c->w[i] * y[i];
    for (int64_t i = 0; i < c->np; i++) sum += (double)c->g[i] * probs[i];
    free(y);
    return sum;
}

START_TEST(grad_attention_tap)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("tokens 7 4 | embed 6 | residual(layernorm | attention 2 "
                                     "causal) | lmhead 7",
                                     3, &m),
                     KD_OK);
    int32_t ids[8] = {1, 5, 2, 6, 0, 3, 3, 4};
    int64_t nout = 4 * 7, np = 2 * 2 * 4 * 4;
    float w[2 * 28], g[2 * 2 * 16], y[2 * 28];
    kdt_fill(w, 2 * nout, 5, -1.0f, 1.0f);
    kdt_fill(g, np, 6, -1.0f, 1.0f);
    tap_ctx c = {m, ids, w, g, 2, nout, np};
    ck_assert_int_eq(kd_model_forward_tokens(m, ids, 2, y), KD_OK);
    ck_assert_int_eq(kd_model_attention_backward(m, 0, g), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, w), KD_OK);
    const kdi_param_list *pl = kdi_model_params(m);
    for (int32_t i = 0; i < pl->n; i++) {
        kdi_param *p = pl->items[i].p;
        float *grad = malloc(sizeof(float) * p->count);
        memcpy(grad, p->grad, sizeof(float) * p->count);
        double err = kdt_gradcheck(tap_objective, &c, p->value, grad, p->count, 3e-3, 100);
        ck_assert_msg(err < 2e-2, "tap: gradient of %s off by %g", pl->items[i].name, err);
        free(grad);
    }
    /* Out of range, before a forward, NULL. */
    ck_assert_int_eq(kd_model_attention_backward(m, 1, g), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_attention_backward(m, -1, g), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_attention_backward(m, 0, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 2, y), KD_OK);
    ck_assert_int_eq(kd_model_attention_backward(m, 0, g), KD_ERR_STATE);
    kd_model_destroy(m);
}
END_TEST

/* Attention distillation: MiniLM's KL between attention probabilities, its value by hand, its
 * gradient into the student's parameters through the tap against central differences. */
typedef struct akl_ctx {
    kd_model *student;
    kd_feature_loss *kl;
    const int32_t *ids;
    const float *teacher;
    float *logits;
} akl_ctx;

static double akl_objective(void *p)
{
    akl_ctx *c = p;
    const float *probs;
    float loss;
    ck_assert_int_eq(kd_model_forward_tokens(c->student, c->ids, 2, c->logits), KD_OK);
    ck_assert_int_eq(kd_model_attention(c->student, 0, &probs, NULL, NULL, NULL), KD_OK);
    ck_assert_int_eq(kd_feature_loss_forward(c->kl, probs, 2, 5, 5, c->teacher, 2, 5, 5, 2, &loss),
                     KD_OK);
    return loss;
}

START_TEST(attention_distillation)
{
    kd_model *teacher, *student;
    ck_assert_int_eq(kd_model_create("tokens 9 5 | embed 12 | residual(layernorm | attention 2 "
                                     "causal) | lmhead 9 tied",
                                     1, &teacher),
                     KD_OK);
    ck_assert_int_eq(kd_model_create("tokens 9 5 | embed 6 | posembed | residual(layernorm | "
                                     "attention 2 causal) | lmhead 9",
                                     2, &student),
                     KD_OK);
    int32_t ids[10] = {1, 4, 4, 8, 0, 2, 7, 3, 3, 5};
    float logits[2 * 5 * 9], zeros[2 * 5 * 9] = {0}, tprobs[2 * 2 * 25], grad[2 * 2 * 25];
    const float *p;
    ck_assert_int_eq(kd_model_predict_tokens(teacher, ids, 2, logits), KD_OK);
    ck_assert_int_eq(kd_model_attention(teacher, 0, &p, NULL, NULL, NULL), KD_OK);
    memcpy(tprobs, p, sizeof tprobs);
    kd_feature_loss *kl;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_ATTENTION_KL, &kl), KD_OK);
    akl_ctx c = {student, kl, ids, tprobs, logits};
    double loss = akl_objective(&c);
    ck_assert_int_eq(kd_model_attention(student, 0, &p, NULL, NULL, NULL), KD_OK);
    double want = 0.0;
    for (int i = 0; i < 2 * 2 * 25; i++)
        if (tprobs[i] > 0.0f) want += tprobs[i] * log((double)tprobs[i] / p[i]);
    want /= 2 * 2 * 5;
    ck_assert_msg(fabs(loss - want) < 1e-6 * (1.0 + want), "%g vs %g", loss, want);
    ck_assert_int_eq(kd_feature_loss_backward(kl, grad), KD_OK);
    ck_assert_int_eq(kd_model_attention_backward(student, 0, grad), KD_OK);
    ck_assert_int_eq(kd_model_backward(student, zeros), KD_OK);
    const kdi_param_list *pl = kdi_model_params(student);
    for (int32_t i = 0; i < pl->n; i++) {
        kdi_param *q = pl->items[i].p;
        if (strcmp(pl->items[i].name, "3.weight") == 0) continue; /* the head: no gradient */
        float *g = malloc(sizeof(float) * q->count);
        memcpy(g, q->grad, sizeof(float) * q->count);
        double err = kdt_gradcheck(akl_objective, &c, q->value, g, q->count, 3e-3, 100);
        ck_assert_msg(err < 2e-2, "attention KL: gradient of %s off by %g", pl->items[i].name, err);
        free(g);
    }
    /* Shapes must agree; values must be probabilities. */
    float loss_f;
    ck_assert_int_eq(kd_feature_loss_forward(kl, tprobs, 2, 5, 5, tprobs, 1, 10, 5, 2, &loss_f),
                     KD_ERR_SHAPE);
    float not_probs[2 * 2 * 25]; /* as large as the shapes say (logits was 90 floats: ASan) */
    for (int i = 0; i < 2 * 2 * 25; i++) not_probs[i] = -1.0f;
    ck_assert_int_eq(kd_feature_loss_forward(kl, not_probs, 2, 5, 5, tprobs, 2, 5, 5, 2, &loss_f),
                     KD_ERR_ARGUMENT);
    kd_feature_loss_destroy(kl);
    kd_model_destroy(teacher);
    kd_model_destroy(student);
}
END_TEST

/* Attention terms in the trainer (kd_trainer_add_attention_loss): the step's value is the
 * weighted KL of the maps (heads matched, or each side's mean), its gradient reaches the student's
 * parameters (a step of SGD with rate 1 moves them by minus the gradient), and steps lower it. */
typedef struct aterm_ctx {
    kd_model *student;
    kd_feature_loss *kl;
    const int32_t *ids;
    const float *teacher; /* [2, c, 5, 5] */
    int64_t c;            /* 2 matched, 1 mean */
    float weight;
} aterm_ctx;

static double aterm_objective(void *p)
{
    aterm_ctx *c = p;
    const float *probs;
    float logits[2 * 5 * 9], mean[2 * 25], loss;
    ck_assert_int_eq(kd_model_forward_tokens(c->student, c->ids, 2, logits), KD_OK);
    ck_assert_int_eq(kd_model_attention(c->student, 0, &probs, NULL, NULL, NULL), KD_OK);
    if (c->c == 1) {
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 25; i++)
                mean[b * 25 + i] = 0.5f * (probs[b * 50 + i] + probs[b * 50 + 25 + i]);
        probs = mean;
    }
    ck_assert_int_eq(
        kd_feature_loss_forward(c->kl, probs, c->c, 5, 5, c->teacher, c->c, 5, 5, 2, &loss), KD_OK);
    return (double)c->weight * loss;
}

static kd_trainer *aterm_trainer(kd_model *student, kd_model *teacher, kd_loss **loss,
                                 kd_optimizer **opt, kd_optimizer_kind kind, float lr)
{
    kd_trainer *t;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, loss), KD_OK);
    ck_assert_int_eq(kd_optimizer_create(kind, student, opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(*opt, KD_OPT_LEARNING_RATE, lr), KD_OK);
    ck_assert_int_eq(kd_trainer_create(student, *loss, *opt, &t), KD_OK);
    ck_assert_int_eq(kd_trainer_add_teacher(t, teacher, 1.0f), KD_OK);
    return t;
}

START_TEST(trainer_attention_term)
{
    const char *tspec = "tokens 9 5 | embed 12 | posembed | residual(layernorm | attention 4 "
                        "causal) | residual(layernorm | attention 2 causal) | lmhead 9 tied";
    const char *sspec = "tokens 9 5 | embed 6 | posembed | residual(layernorm | attention 2 "
                        "causal) | lmhead 9";
    int32_t ids[10] = {1, 4, 4, 8, 0, 2, 7, 3, 3, 5}, labels[10] = {4, 4, 8, 0, 2, 7, 3, 3, 5, 1};
    float x[10], logits[2 * 5 * 9], tmaps[2 * 2 * 25];
    for (int i = 0; i < 10; i++) x[i] = (float)ids[i];
    kd_model *teacher;
    ck_assert_int_eq(kd_model_create(tspec, 1, &teacher), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(teacher, ids, 2, logits), KD_OK);
    const float *tp;
    ck_assert_int_eq(kd_model_attention(teacher, 1, &tp, NULL, NULL, NULL), KD_OK);
    kd_feature_loss *kl;
    ck_assert_int_eq(kd_feature_loss_create(KD_FEATURE_ATTENTION_KL, &kl), KD_OK);
    for (int mode = 0; mode < 2; mode++) {
        int64_t c = mode == KD_ATTENTION_HEADS_MEAN ? 1 : 2;
        if (c == 1)
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < 25; i++)
                    tmaps[b * 25 + i] = 0.5f * (tp[b * 50 + i] + tp[b * 50 + 25 + i]);
        else
            memcpy(tmaps, tp, sizeof tmaps);
        kd_model *student;
        kd_loss *loss;
        kd_optimizer *opt;
        ck_assert_int_eq(kd_model_create(sspec, 2, &student), KD_OK);
        kd_trainer *t = aterm_trainer(student, teacher, &loss, &opt, KD_OPTIMIZER_SGD, 1.0f);
        ck_assert_int_eq(
            kd_trainer_add_attention_loss(t, kl, 0, 0, 1, (kd_attention_heads)mode, 2.0f), KD_OK);
        ck_assert_int_eq(kd_trainer_set_int(t, KD_TRAINER_HINT_ONLY, 1), KD_OK);
        aterm_ctx ctx = {student, kl, ids, tmaps, c, 2.0f};
        double want = aterm_objective(&ctx);
        /* The analytic gradient, from one SGD step with rate 1 (momentum and decay 0). */
        const kdi_param_list *pl = kdi_model_params(student);
        int64_t n = 0;
        for (int32_t i = 0; i < pl->n; i++) n += pl->items[i].p->count;
        float *before = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
        for (int32_t i = 0, o = 0; i < pl->n; o += (int)pl->items[i].p->count, i++)
            memcpy(before + o, pl->items[i].p->value, sizeof(float) * pl->items[i].p->count);
        float v, term;
        ck_assert_int_eq(kd_trainer_step(t, x, labels, NULL, 2, &v), KD_OK);
        ck_assert_int_eq(kd_trainer_feature_value(t, 0, &term), KD_OK);
        ck_assert_msg(fabs(term - want) < 1e-5 * (1.0 + want), "term %g, by hand %g", term, want);
        ck_assert_msg(fabs(v - want) < 1e-5 * (1.0 + want), "step %g, by hand %g", v, want);
        for (int32_t i = 0, o = 0; i < pl->n; o += (int)pl->items[i].p->count, i++) {
            kdi_param *q = pl->items[i].p;
            for (int64_t j = 0; j < q->count; j++) g[o + j] = before[o + j] - q->value[j];
            memcpy(q->value, before + o, sizeof(float) * q->count);
        }
        for (int32_t i = 0, o = 0; i < pl->n; o += (int)pl->items[i].p->count, i++) {
            kdi_param *q = pl->items[i].p;
            if (strcmp(pl->items[i].name, "3.weight") == 0) continue; /* the head: no gradient */
            double fd, an;
            kdt_directional(aterm_objective, &ctx, q->value, g + o, q->count, 7 + (uint64_t)i, &fd,
                            &an);
            ck_assert_msg(fabs(fd - an) <= 2e-2 * fabs(fd) + 1e-5,
                          "mode %d: gradient of %s: %g analytic, %g by differences", mode,
                          pl->items[i].name, an, fd);
        }
        free(before);
        free(g);
        kd_trainer_destroy(t);
        kd_optimizer_destroy(opt);
        kd_loss_destroy(loss);

        /* Distillation with the term (cross-entropy plus 10 x the map KL, Adam) lowers the map KL. */
        t = aterm_trainer(student, teacher, &loss, &opt, KD_OPTIMIZER_ADAM, 1e-2f);
        ck_assert_int_eq(kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f), KD_OK);
        ck_assert_int_eq(
            kd_trainer_add_attention_loss(t, kl, 0, 0, 1, (kd_attention_heads)mode, 10.0f), KD_OK);
        float first = 0.0f;
        for (int s = 0; s < 40; s++) {
            ck_assert_int_eq(kd_trainer_step(t, x, labels, NULL, 2, &v), KD_OK);
            ck_assert_int_eq(kd_trainer_feature_value(t, 0, &term), KD_OK);
            if (s == 0) first = term;
        }
        ck_assert_msg(term < 0.5f * first, "mode %d: attention KL %g after 40 steps, %g at first",
                      mode, term, first);
        kd_trainer_destroy(t);
        kd_optimizer_destroy(opt);
        kd_loss_destroy(loss);
        kd_model_destroy(student);
    }

    /* Refusals, each changing nothing. */
    kd_model *student;
    kd_loss *loss;
    kd_optimizer *opt;
    ck_assert_int_eq(kd_model_create(sspec, 2, &student), KD_OK);
    kd_trainer *t = aterm_trainer(student, teacher, &loss, &opt, KD_OPTIMIZER_SGD, 0.1f);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 1, 0, 0, 1, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 0, 2, 1, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 1, 0, 1, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 0, 0, 2, 1.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 0, 0, 1, 0.0f), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, NULL, 0, 0, 0, 1, 1.0f), KD_ERR_ARGUMENT);
    /* Teacher layer 0 has 4 heads, the student's 2: matched refuses, the mean accepts. */
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 0, 0, 0, 1.0f), KD_ERR_SHAPE);
    float value;
    ck_assert_int_eq(kd_trainer_feature_value(t, -1, &value), KD_ERR_STATE);
    ck_assert_int_eq(kd_trainer_add_attention_loss(t, kl, 0, 0, 0, 1, 1.0f), KD_OK);
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    kd_model_destroy(student);
    kd_feature_loss_destroy(kl);
    kd_model_destroy(teacher);
}
END_TEST

/* ---------------------------------------------------------------- reference values */

/* Per-token dense and layernorm equal the flat layers applied to every token as an example. */
START_TEST(per_token_matches_flat)
{
    const char *specs[][2] = {{"sequence 3 4 | dense 5", "input 4 | dense 5"},
                              {"sequence 3 4 | layernorm", "input 4 | layernorm"},
                              {"sequence 3 4 | gelu", "input 4 | gelu"}};
    float x[2 * 12], ys[2 * 15], yf[6 * 5];
    kdt_fill(x, 24, 9, -2.0f, 2.0f);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        kd_model *s, *f;
        ck_assert_int_eq(kd_model_create(specs[k][0], 11, &s), KD_OK);
        ck_assert_int_eq(kd_model_create(specs[k][1], 11, &f), KD_OK);
        const kdi_param_list *ps = kdi_model_params(s), *pf = kdi_model_params(f);
        ck_assert_int_eq(ps->n, pf->n);
        for (int32_t i = 0; i < ps->n; i++) {
            ck_assert_int_eq(ps->items[i].p->count, pf->items[i].p->count);
            kdt_fill(ps->items[i].p->value, ps->items[i].p->count, 20 + (uint64_t)i, -1, 1);
            memcpy(pf->items[i].p->value, ps->items[i].p->value,
                   sizeof(float) * ps->items[i].p->count);
        }
        int64_t out;
        ck_assert_int_eq(kd_model_output_size(f, &out), KD_OK);
        ck_assert_int_eq(kd_model_predict(s, x, 2, ys), KD_OK);
        ck_assert_int_eq(kd_model_predict(f, x, 6, yf), KD_OK);
        for (int64_t i = 0; i < 6 * out; i++)
            ck_assert_msg(fabsf(ys[i] - yf[i]) <= 1e-6f * (1.0f + fabsf(yf[i])), "%s: %g vs %g",
                          specs[k][0], (double)ys[i], (double)yf[i]);
        kd_model_destroy(s);
        kd_model_destroy(f);
    }
}
END_TEST

/* Attention against a direct transcription of eq. 1, with explicit loops; T = 37 spans the causal
 * products' row blocks of 16 and a partial one. */
START_TEST(attention_reference)
{
    enum { T = 37, D = 6, H = 3, HD = 2, B = 2 };
    for (int causal = 0; causal < 2; causal++) {
        kd_model *m;
        ck_assert_int_eq(kd_model_create(causal ? "sequence 37 6 | attention 3 causal"
                                                : "sequence 37 6 | attention 3",
                                         5, &m),
                         KD_OK);
        const kdi_param_list *pl = kdi_model_params(m);
        for (int32_t i = 0; i < pl->n; i++)
            kdt_fill(pl->items[i].p->value, pl->items[i].p->count, 40 + (uint64_t)i, -0.8f, 0.8f);
        const float *wi = pl->items[0].p->value, *bi = pl->items[1].p->value;
        const float *wo = pl->items[2].p->value, *bo = pl->items[3].p->value;
        float x[B * T * D], y[B * T * D];
        kdt_fill(x, B * T * D, 3, -1.0f, 1.0f);
        ck_assert_int_eq(kd_model_predict(m, x, B, y), KD_OK);
        const float *probs;
        int64_t pb, ph, pt;
        ck_assert_int_eq(kd_model_attention(m, 0, &probs, &pb, &ph, &pt), KD_OK);
        ck_assert(pb == B && ph == H && pt == T);
        for (int b = 0; b < B; b++) {
            double qkv[T][3 * D], o[T][D];
            for (int t = 0; t < T; t++)
                for (int j = 0; j < 3 * D; j++) {
                    qkv[t][j] = bi[j];
                    for (int i = 0; i < D; i++)
                        qkv[t][j] += (double)wi[j * D + i] * x[(b * T + t) * D + i];
                }
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++) {
                    double s[T], mx = -1e300, z = 0.0;
                    int last = causal ? t : T - 1;
                    for (int u = 0; u <= last; u++) {
                        s[u] = 0.0;
                        for (int e = 0; e < HD; e++)
                            s[u] += qkv[t][h * HD + e] * qkv[u][D + h * HD + e];
                        s[u] /= sqrt((double)HD);
                        mx = fmax(mx, s[u]);
                    }
                    for (int u = 0; u <= last; u++) z += exp(s[u] - mx);
                    for (int e = 0; e < HD; e++) o[t][h * HD + e] = 0.0;
                    for (int u = 0; u < T; u++) {
                        double p = u <= last ? exp(s[u] - mx) / z : 0.0;
                        float got = probs[((b * H + h) * T + t) * T + u];
                        ck_assert_msg(fabs(got - p) < 1e-6, "P[%d,%d,%d,%d] %g vs %g", b, h, t, u,
                                      (double)got, p);
                        for (int e = 0; e < HD; e++)
                            o[t][h * HD + e] += p * qkv[u][2 * D + h * HD + e];
                    }
                }
            for (int t = 0; t < T; t++)
                for (int j = 0; j < D; j++) {
                    double want = bo[j];
                    for (int i = 0; i < D; i++) want += (double)wo[j * D + i] * o[t][i];
                    float got = y[(b * T + t) * D + j];
                    ck_assert_msg(fabs(got - want) < 1e-5 * (1.0 + fabs(want)), "y %g vs %g",
                                  (double)got, want);
                }
        }
        kd_model_destroy(m);
    }
}
END_TEST

/* ---------------------------------------------------------------- causality */

static const char *const LM_SPEC =
    "tokens 13 6 | embed 8 | posembed | residual(layernorm | attention 2 causal) | "
    "residual(layernorm | dense 32 | gelu | dense 8) | layernorm | lmhead 13 tied";

/* Changing token j never changes the logits of positions before j, bit for bit; it does change
 * position j's. Without the mask, earlier positions do see it. */
START_TEST(causality)
{
    for (int causal = 1; causal >= 0; causal--) {
        kd_model *m;
        const char *spec = causal ? LM_SPEC
                                  : "tokens 13 6 | embed 8 | posembed | residual(layernorm | "
                                    "attention 2) | layernorm | lmhead 13 tied";
        ck_assert_int_eq(kd_model_create(spec, 8, &m), KD_OK);
        int32_t a[6] = {1, 7, 3, 12, 0, 5};
        float ya[6 * 13], yb[6 * 13];
        ck_assert_int_eq(kd_model_predict_tokens(m, a, 1, ya), KD_OK);
        for (int j = 0; j < 6; j++) {
            int32_t b[6];
            memcpy(b, a, sizeof b);
            b[j] = (b[j] + 4) % 13;
            ck_assert_int_eq(kd_model_predict_tokens(m, b, 1, yb), KD_OK);
            int earlier_same = memcmp(ya, yb, sizeof(float) * 13 * (size_t)j) == 0;
            if (causal) ck_assert_msg(earlier_same, "position < %d changed", j);
            if (!causal && j > 0) ck_assert_msg(!earlier_same, "no mask, yet nothing changed");
            ck_assert(memcmp(ya + 13 * j, yb + 13 * j, sizeof(float) * 13) != 0);
        }
        kd_model_destroy(m);
    }
}
END_TEST

/* ---------------------------------------------------------------- the public calls */

START_TEST(token_calls)
{
    kd_model *m, *f;
    ck_assert_int_eq(kd_model_create(LM_SPEC, 1, &m), KD_OK);
    ck_assert_str_eq(kd_model_spec(m), LM_SPEC);
    int64_t v, t, in, out;
    ck_assert_int_eq(kd_model_tokens(m, &v, &t), KD_OK);
    ck_assert(v == 13 && t == 6);
    ck_assert_int_eq(kd_model_input_size(m, &in), KD_OK);
    ck_assert_int_eq(kd_model_output_size(m, &out), KD_OK);
    ck_assert(in == 6 && out == 6 * 13);
    int32_t ids[12] = {0, 1, 2, 3, 4, 5, 12, 11, 10, 9, 8, 7};
    float x[12], y1[2 * 78], y2[2 * 78], y3[2 * 78];
    for (int i = 0; i < 12; i++) x[i] = (float)ids[i];
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 2, y1), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, 2, y2), KD_OK);
    ck_assert_int_eq(kd_model_forward_tokens(m, ids, 2, y3), KD_OK);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    ck_assert(memcmp(y1, y3, sizeof y1) == 0); /* no dropout: training is eval */
    /* Out of range ids: refused, nothing written, nothing run. */
    int32_t bad[12];
    memcpy(bad, ids, sizeof bad);
    bad[7] = 13;
    for (int i = 0; i < 2 * 78; i++) y2[i] = -7.0f;
    ck_assert_int_eq(kd_model_predict_tokens(m, bad, 2, y2), KD_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "ids[7] = 13"));
    bad[7] = -1;
    ck_assert_int_eq(kd_model_forward_tokens(m, bad, 2, y2), KD_ERR_ARGUMENT);
    ck_assert_float_eq(y2[0], -7.0f);
    ck_assert_int_eq(kd_model_backward(m, y3), KD_OK); /* the good forward still stands */
    x[3] = 2.5f;
    ck_assert_int_eq(kd_model_predict(m, x, 2, y2), KD_ERR_ARGUMENT);
    x[3] = 13.0f;
    ck_assert_int_eq(kd_model_predict(m, x, 2, y2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict_tokens(m, NULL, 2, y2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 0, y2), KD_ERR_ARGUMENT);
    int64_t correct;
    int32_t labels[2] = {0, 0};
    ck_assert_int_eq(kd_model_evaluate(m, x, labels, 2, 2, &correct, NULL), KD_ERR_UNSUPPORTED);
    /* A float model refuses ids. */
    ck_assert_int_eq(kd_model_create("input 6 | dense 2", 1, &f), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(f, ids, 1, y2), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_model_tokens(f, &v, &t), KD_OK);
    ck_assert(v == 0 && t == 0);
    int32_t count;
    ck_assert_int_eq(kd_model_attention_count(f, &count), KD_OK);
    ck_assert_int_eq(count, 0);
    kd_model_destroy(f);
    /* The attention tap: one layer, inside a residual block; rows are distributions. */
    ck_assert_int_eq(kd_model_attention_count(m, &count), KD_OK);
    ck_assert_int_eq(count, 1);
    const float *p;
    int64_t b, h, len;
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 2, y1), KD_OK);
    ck_assert_int_eq(kd_model_attention(m, 0, &p, &b, &h, &len), KD_OK);
    ck_assert(b == 2 && h == 2 && len == 6);
    for (int r = 0; r < 2 * 2 * 6; r++) {
        double s = 0.0;
        for (int j = 0; j < 6; j++) s += p[r * 6 + j];
        ck_assert(fabs(s - 1.0) < 1e-5);
        for (int j = r % 6 + 1; j < 6; j++) ck_assert(p[r * 6 + j] == 0.0f);
    }
    ck_assert_int_eq(kd_model_attention(m, 1, &p, &b, &h, &len), KD_ERR_ARGUMENT);
    kd_model_destroy(m);
}
END_TEST

START_TEST(spec_errors)
{
    const struct {
        const char *spec;
        kd_status st;
    } cases[] = {
        {"tokens 10 4 | dense 3", KD_ERR_FORMAT},
        {"tokens 10 4 | posembed", KD_ERR_FORMAT},
        {"tokens 0 4 | embed 3", KD_ERR_FORMAT},
        {"tokens 10 | embed 3", KD_ERR_FORMAT},
        {"input 8 | embed 3", KD_ERR_FORMAT},
        {"sequence 4 6 | conv 3 3", KD_ERR_SHAPE},
        {"sequence 4 6 | bn", KD_ERR_SHAPE},
        {"sequence 4 6 | attention 4", KD_ERR_SHAPE},
        {"sequence 4 6 | attention 2 sideways", KD_ERR_FORMAT},
        {"input 6 | attention 2", KD_ERR_SHAPE},
        {"input 6 | posembed", KD_ERR_SHAPE},
        {"sequence 4 6 | lmhead 9 tied", KD_ERR_FORMAT},
        {"tokens 10 4 | embed 6 | lmhead 9 tied", KD_ERR_SHAPE},
        {"tokens 10 4 | embed 6 | dense 5 | lmhead 10 tied", KD_ERR_SHAPE},
        {"sequence 4 6 | flatten | lmhead 9", KD_ERR_SHAPE},
        {"sequence 4 6 | residual(dense 6)(flatten | dense 24)", KD_ERR_SHAPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_model *m = NULL;
        kd_status st = kd_model_create(cases[i].spec, 1, &m);
        ck_assert_msg(st == cases[i].st, "'%s' gave %d (%s)", cases[i].spec, st, kd_last_error());
        ck_assert_ptr_null(m);
    }
    /* Canonical specs read back as themselves. */
    const char *good[] = {"sequence 4 6 | attention 2 causal dropout=0.1 | flatten | dense 3",
                          "tokens 10 4 | embed 6 | lmhead 10 tied",
                          "tokens 10 4 | embed 6 | lmhead 12"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kd_model *m;
        ck_assert_msg(kd_model_create(good[i], 1, &m) == KD_OK, "%s: %s", good[i], kd_last_error());
        ck_assert_str_eq(kd_model_spec(m), good[i]);
        kd_model_destroy(m);
    }
}
END_TEST

/* ---------------------------------------------------------------- files */

START_TEST(save_load_names)
{
    kd_model *m, *back;
    ck_assert_int_eq(kd_model_create(LM_SPEC, 3, &m), KD_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/lm.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(path, &f), KD_OK);
    const char *names[] = {"0.weight",
                           "1.weight",
                           "2.body.0.weight",
                           "2.body.0.bias",
                           "2.body.1.in_proj_weight",
                           "2.body.1.in_proj_bias",
                           "2.body.1.out_proj.weight",
                           "2.body.1.out_proj.bias",
                           "3.body.0.weight",
                           "3.body.1.weight",
                           "3.body.3.bias",
                           "4.weight",
                           "4.bias"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(kdi_st_find(&f, names[i]) != NULL, "no tensor %s", names[i]);
    ck_assert_int_eq((int)f.n, 16); /* the tied head has no tensor */
    const kdi_st_tensor *t = kdi_st_find(&f, "2.body.1.in_proj_weight");
    ck_assert(t->ndim == 2 && t->dims[0] == 24 && t->dims[1] == 8);
    kdi_st_free(&f);
    ck_assert_int_eq(kd_model_load(path, &back), KD_OK);
    ck_assert_str_eq(kd_model_spec(back), LM_SPEC);
    int32_t ids[6] = {4, 4, 2, 9, 12, 0};
    float y1[78], y2[78];
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 1, y1), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(back, ids, 1, y2), KD_OK);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    /* A clone ties its head to its own embedding. */
    kd_model *c;
    ck_assert_int_eq(kd_model_clone(m, &c), KD_OK);
    kdi_model_params(c)->items[0].p->value[4 * 8] += 1.0f; /* token 4's embedding */
    ck_assert_int_eq(kd_model_predict_tokens(c, ids, 1, y2), KD_OK);
    ck_assert(memcmp(y1, y2, sizeof y1) != 0);
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 1, y2), KD_OK);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    kd_model_destroy(c);
    kd_model_destroy(back);
    kd_model_destroy(m);
    unlink(path);
}
END_TEST

static double rel_error(const float *got, const float *want, int64_t n);

/* ---------------------------------------------------------------- decoding */

/* Position by position through the cache, the logits are the full forward's. */
/* PyTorch's state_dict() of a tied model names the shared weight twice (here "0.weight" and
 * "5.weight"); libkd writes it once, under the embedding's name, and reads a file with both when
 * they hold the same values. Different values are refused, the model left as it was. */
static void add_copy(const char *from, const char *to, const char *name, float delta)
{
    kd_tensors *t;
    ck_assert_int_eq(kd_tensors_load(from, &t), KD_OK);
    kd_dtype dt;
    int32_t nd;
    int64_t dims[KD_TENSORS_MAX_DIMS], nbytes;
    const void *data;
    ck_assert_int_eq(kd_tensors_info(t, "0.weight", &dt, &nd, dims), KD_OK);
    ck_assert_int_eq(kd_tensors_data(t, "0.weight", &data, &nbytes), KD_OK);
    float *copy = malloc((size_t)nbytes);
    memcpy(copy, data, (size_t)nbytes);
    copy[5] += delta;
    ck_assert_int_eq(kd_tensors_set(t, name, dt, nd, dims, copy), KD_OK);
    ck_assert_int_eq(kd_tensors_save(t, to), KD_OK);
    free(copy);
    kd_tensors_destroy(t);
}

START_TEST(tied_head_state_dict)
{
    kd_model *m, *back, *other;
    char path[512], both[512], bad[512], extra[512];
    snprintf(path, sizeof path, "%s/tied.safetensors", kdt_tmpdir());
    snprintf(both, sizeof both, "%s/tied_both.safetensors", kdt_tmpdir());
    snprintf(bad, sizeof bad, "%s/tied_bad.safetensors", kdt_tmpdir());
    snprintf(extra, sizeof extra, "%s/tied_extra.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_create(LM_SPEC, 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    add_copy(path, both, "5.weight", 0.0f);
    add_copy(path, bad, "5.weight", 1.0f);
    add_copy(path, extra, "6.weight", 0.0f);
    int32_t ids[6] = {4, 4, 2, 9, 12, 0};
    float want[78], got[78], before[78];
    ck_assert_int_eq(kd_model_predict_tokens(m, ids, 1, want), KD_OK);
    ck_assert_int_eq(kd_model_load(both, &back), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(back, ids, 1, got), KD_OK);
    ck_assert(memcmp(want, got, sizeof want) == 0);
    ck_assert_int_eq(kd_model_create(LM_SPEC, 9, &other), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(other, ids, 1, before), KD_OK);
    ck_assert_int_eq(kd_model_load_weights(other, bad), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "'5.weight' (layer 5, lmhead tied) differs"));
    ck_assert_int_eq(kd_model_load_weights(other, extra), KD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "holds 17 tensors, the model has 16"));
    ck_assert_int_eq(kd_model_predict_tokens(other, ids, 1, got), KD_OK);
    ck_assert(memcmp(before, got, sizeof got) == 0);
    ck_assert_int_eq(kd_model_load_weights(other, both), KD_OK);
    ck_assert_int_eq(kd_model_predict_tokens(other, ids, 1, got), KD_OK);
    ck_assert(memcmp(want, got, sizeof got) == 0);
    kd_model_destroy(other);
    kd_model_destroy(back);
    kd_model_destroy(m);
}
END_TEST

START_TEST(decode_matches_forward)
{
    const char *specs[] = {LM_SPEC,
                           "tokens 13 6 | embed 8 | dropout 0.2 | residual(layernorm | attention 4 "
                           "causal dropout=0.1) | residual(layernorm | dense 8 | relu)(dense 8) | "
                           "lmhead 13"};
    for (size_t k = 0; k < 2; k++) {
        kd_model *m;
        ck_assert_int_eq(kd_model_create(specs[k], 21, &m), KD_OK);
        int32_t ids[6] = {5, 0, 12, 7, 7, 3};
        float full[6 * 13], step[13];
        ck_assert_int_eq(kd_model_predict_tokens(m, ids, 1, full), KD_OK);
        for (int round = 0; round < 2; round++) /* the second round starts again at 0 */
            for (int pos = 0; pos < 6; pos++) {
                ck_assert_int_eq(kd_model_decode_step(m, ids[pos], pos, step), KD_OK);
                double err = rel_error(step, full + 13 * pos, 13);
                ck_assert_msg(err < 1e-5, "%s: position %d off by %g", specs[k], pos, err);
            }
        /* In order only; after a step, backward needs a new forward. */
        ck_assert_int_eq(kd_model_decode_step(m, 1, 0, step), KD_OK);
        ck_assert_int_eq(kd_model_decode_step(m, 1, 2, step), KD_ERR_STATE);
        ck_assert_int_eq(kd_model_decode_step(m, 13, 1, step), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_model_decode_step(m, 1, 6, step), KD_ERR_ARGUMENT);
        ck_assert_int_eq(kd_model_forward_tokens(m, ids, 1, full), KD_OK);
        ck_assert_int_eq(kd_model_decode_step(m, 1, 0, step), KD_OK);
        ck_assert_int_eq(kd_model_backward(m, full), KD_ERR_STATE);
        kd_model_destroy(m);
    }
    const char *cannot[] = {"tokens 13 6 | embed 8 | attention 2 | lmhead 13",
                            "tokens 13 6 | embed 2 | flatten | dense 13", "input 4 | dense 13",
                            "sequence 6 4 | attention 2 causal"};
    for (size_t k = 0; k < sizeof cannot / sizeof cannot[0]; k++) {
        kd_model *m;
        float step[13 * 6];
        ck_assert_int_eq(kd_model_create(cannot[k], 1, &m), KD_OK);
        ck_assert_int_eq(kd_model_decode_step(m, 1, 0, step), KD_ERR_UNSUPPORTED);
        kd_model_destroy(m);
    }
}
END_TEST

/* Greedy generation is the argmax of full forwards over the growing sequence (later positions
 * padded: causal, they change nothing before them); sampling repeats from its seed, and top_k 1
 * or a tiny top_p is greedy. */
START_TEST(generate)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(LM_SPEC, 5, &m), KD_OK);
    int32_t prompt[2] = {4, 9}, greedy[4], seq[6] = {4, 9, 0, 0, 0, 0};
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 0.0f, 0, 1.0f, 1, greedy), KD_OK);
    float z[6 * 13];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(kd_model_predict_tokens(m, seq, 1, z), KD_OK);
        const float *row = z + 13 * (1 + i);
        int best = 0;
        for (int j = 1; j < 13; j++)
            if (row[j] > row[best]) best = j;
        ck_assert_int_eq(greedy[i], best);
        if (i < 3) seq[2 + i] = best;
    }
    int32_t a[4], b[4], c[4];
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 1.5f, 0, 1.0f, 77, a), KD_OK);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 1.5f, 0, 1.0f, 77, b), KD_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 1.5f, 1, 1.0f, 78, c), KD_OK);
    ck_assert(memcmp(c, greedy, sizeof c) == 0);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 2.0f, 3, 1e-6f, 79, c), KD_OK);
    ck_assert(memcmp(c, greedy, sizeof c) == 0);
    /* Different seeds at a high temperature: some sequence differs among a few. */
    int differs = 0;
    for (uint64_t s = 0; s < 8 && !differs; s++) {
        ck_assert_int_eq(kd_model_generate(m, prompt, 2, 4, 5.0f, 0, 1.0f, 100 + s, c), KD_OK);
        differs = memcmp(c, a, sizeof c) != 0;
    }
    ck_assert(differs);
    /* Bad arguments: refused, out untouched. */
    int32_t keep[4] = {-5, -5, -5, -5}, bad[2] = {4, 13};
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 5, 1.0f, 0, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, prompt, 0, 1, 1.0f, 0, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, bad, 2, 1, 1.0f, 0, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 1, -1.0f, 0, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 1, 1.0f, -1, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 1, 1.0f, 0, 0.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 1, 1.0f, 0, 1.5f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_generate(m, NULL, 2, 1, 1.0f, 0, 1.0f, 1, keep), KD_ERR_ARGUMENT);
    ck_assert_int_eq(keep[0], -5);
    kd_model_destroy(m);
    ck_assert_int_eq(kd_model_create("tokens 13 6 | embed 8 | lmhead 7", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 1, 1.0f, 0, 1.0f, 1, keep),
                     KD_ERR_UNSUPPORTED);
    kd_model_destroy(m);
}
END_TEST

/* A weight that overflows the logits (token 4's embedding at 3e38, squared by the tied head):
 * decoding and generation fail with KD_ERR_NUMERIC instead of sampling from infinity (greedy took
 * token 0). The weight is set through a saved file and kd_model_load_weights. */
START_TEST(generate_refuses_logits_that_overflow)
{
    kd_model *m;
    kd_tensors *t = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/overflow.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_create("tokens 13 6 | embed 8 | lmhead 13 tied", 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_tensors_load(path, &t), KD_OK);
    const void *data = NULL;
    float w[13 * 8];
    int64_t dims[2] = {13, 8}, nbytes = 0;
    ck_assert_int_eq(kd_tensors_data(t, "0.weight", &data, &nbytes), KD_OK);
    ck_assert_int_eq((int)nbytes, (int)sizeof w);
    memcpy(w, data, sizeof w);
    for (int k = 0; k < 13; k++) w[k * 8] = k == 4 ? 3e38f : 0.0f; /* only token 4 overflows */
    ck_assert_int_eq(kd_tensors_set(t, "0.weight", KD_DTYPE_F32, 2, dims, w), KD_OK);
    ck_assert_int_eq(kd_tensors_save(t, path), KD_OK);
    ck_assert_int_eq(kd_model_load_weights(m, path), KD_OK);
    float z[13];
    ck_assert_int_eq(kd_model_decode_step(m, 1, 0, z), KD_OK); /* token 1 is finite */
    ck_assert_int_eq(kd_model_decode_step(m, 4, 1, z), KD_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(kd_last_error(), "position 1 (token 4) hold NaN or infinity"));
    int32_t prompt[2] = {1, 4}, keep[2] = {-5, -5};
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 2, 0.0f, 0, 1.0f, 1, keep), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 2, 1.0f, 0, 1.0f, 1, keep), KD_ERR_NUMERIC);
    ck_assert_int_eq(keep[0], -5);
    kd_tensors_destroy(t);
    kd_model_destroy(m);
}
END_TEST

/* End to end: a small causal model learns to continue a pattern with Adam and cross-entropy per
 * token (Hinton's loss at alpha 0), then continues it by greedy generation. Sequences count
 * up by a step of 1 or 3 modulo 11 from a random start; the step shows after two tokens. */
START_TEST(learns_a_pattern)
{
    enum { V = 11, T = 8, B = 16 };
    kd_model *m;
    ck_assert_int_eq(kd_model_create("tokens 11 8 | embed 24 | posembed | residual(layernorm | "
                                     "attention 2 causal) | residual(layernorm | dense 48 | gelu "
                                     "| dense 24) | layernorm | lmhead 11",
                                     3, &m),
                     KD_OK);
    kd_optimizer *opt;
    ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_ADAM, m, &opt), KD_OK);
    ck_assert_int_eq(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, 0.01f), KD_OK);
    kd_loss *ce;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &ce), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(ce, KD_LOSS_ALPHA, 0.0f), KD_OK);
    kdi_rng r;
    kdi_rng_seed(&r, 12);
    static float logits[B * T * V], grad[B * T * V];
    int32_t ids[B * T], next[B * T];
    float first = 0.0f, loss = 0.0f;
    for (int step = 0; step < 300; step++) {
        for (int b = 0; b < B; b++) {
            int32_t start = (int32_t)kdi_rng_below(&r, V), by = kdi_rng_below(&r, 2) ? 3 : 1;
            for (int t = 0; t < T; t++) {
                ids[b * T + t] = (start + by * t) % V;
                next[b * T + t] = (start + by * (t + 1)) % V;
            }
            next[b * T] = -1; /* the step is unknown after one token: no label */
        }
        ck_assert_int_eq(kd_model_forward_tokens(m, ids, B, logits), KD_OK);
        ck_assert_int_eq(kd_loss_forward(ce, logits, NULL, next, B * T, V, &loss), KD_OK);
        if (step == 0) first = loss;
        ck_assert_int_eq(kd_loss_backward(ce, grad), KD_OK);
        ck_assert_int_eq(kd_model_backward(m, grad), KD_OK);
        ck_assert_int_eq(kd_optimizer_step(opt), KD_OK);
    }
    ck_assert_msg(loss < 0.05f * first, "cross-entropy %g after 300 steps, %g at first",
                  (double)loss, (double)first);
    if (getenv("KD_TEST_VERBOSE") != NULL)
        printf("pattern: cross-entropy %.4f at first, %.4f after 300 steps\n", (double)first,
               (double)loss);
    int32_t prompt[2] = {9, 1}, out[6]; /* 9, 1 (mod 11): steps of 3 */
    ck_assert_int_eq(kd_model_generate(m, prompt, 2, 6, 0.0f, 0, 1.0f, 0, out), KD_OK);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(out[i], (1 + 3 * (i + 1)) % V);
    kd_loss_destroy(ce);
    kd_optimizer_destroy(opt);
    kd_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- the PyTorch fixture */

/* Largest |got - want| / max(|want|, floor) over n values, floor a tenth of the largest |want|:
 * relative where values are large, and not blown up by the tensor's near-zero entries. */
static double rel_error(const float *got, const float *want, int64_t n)
{
    double top = 0.0, worst = 0.0;
    for (int64_t i = 0; i < n; i++) top = fmax(top, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), 0.1 * top));
    return worst;
}

/* The fixture's tensor name, n floats, copied out (file data may be unaligned); caller frees. */
static float *fixture_floats(const kdi_st_file *f, const char *name, int64_t n)
{
    const kdi_st_tensor *t = kdi_st_find(f, name);
    ck_assert_msg(t != NULL && t->dtype == KDI_ST_F32 && t->nbytes == 4 * n, "fixture %s", name);
    float *copy = malloc((size_t)t->nbytes);
    memcpy(copy, t->data, (size_t)t->nbytes);
    return copy;
}

/* The error of got against the fixture's tensor name. */
static double fixture_error(const float *got, const kdi_st_file *f, const char *name, int64_t n)
{
    float *want = fixture_floats(f, name, n);
    double err = rel_error(got, want, n);
    if (getenv("KD_TEST_VERBOSE") != NULL) printf("%-32s %.3g\n", name, err);
    free(want);
    return err;
}

/* One pre-norm block and a tied head made by tests/fixtures/make_transformer_fixture.py in
 * PyTorch (float64 from float32 weights): logits, attention probabilities, the cross-entropy
 * over every position through kd_loss (Hinton's with alpha 0), and every gradient. */
START_TEST(pytorch_fixture)
{
    enum { V = 32, T = 8, B = 2, H = 2 };
    kdi_st_file f;
    ck_assert_int_eq(kdi_st_read(KDT_DATA "/transformer_block.safetensors", &f), KD_OK);
    kd_model *m;
    ck_assert_int_eq(kd_model_create(kdi_st_meta(&f, "kd.spec"), 0, &m), KD_OK);
    ck_assert_int_eq(kdi_model_check_file(m, &f, "fixture", 0), KD_OK);
    kdi_model_copy_file(m, &f);
    const kdi_st_tensor *tid = kdi_st_find(&f, "ids"), *ttg = kdi_st_find(&f, "targets");
    ck_assert(tid != NULL && tid->dtype == KDI_ST_I64 && ttg != NULL && ttg->dtype == KDI_ST_I64);
    int32_t ids[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) {
        int64_t v;
        memcpy(&v, (const char *)tid->data + 8 * i, 8);
        ids[i] = (int32_t)v;
        memcpy(&v, (const char *)ttg->data + 8 * i, 8);
        targets[i] = (int32_t)v;
    }
    float logits[B * T * V], grad[B * T * V], loss;
    ck_assert_int_eq(kd_model_forward_tokens(m, ids, B, logits), KD_OK);
    double err = fixture_error(logits, &f, "logits", B * T * V);
    ck_assert_msg(err < 1e-5, "logits off by %g", err);
    const float *probs;
    ck_assert_int_eq(kd_model_attention(m, 0, &probs, NULL, NULL, NULL), KD_OK);
    err = fixture_error(probs, &f, "attention", B * H * T * T);
    ck_assert_msg(err < 1e-5, "attention probabilities off by %g", err);
    kd_loss *ce;
    ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &ce), KD_OK);
    ck_assert_int_eq(kd_loss_set_float(ce, KD_LOSS_ALPHA, 0.0f), KD_OK);
    ck_assert_int_eq(kd_loss_forward(ce, logits, NULL, targets, B * T, V, &loss), KD_OK);
    err = fixture_error(&loss, &f, "loss", 1);
    ck_assert_msg(err < 1e-5, "loss off by %g", err);
    ck_assert_int_eq(kd_loss_backward(ce, grad), KD_OK);
    ck_assert_int_eq(kd_model_backward(m, grad), KD_OK);
    const kdi_param_list *pl = kdi_model_params(m);
    for (int32_t i = 0; i < pl->n; i++) {
        char name[128];
        snprintf(name, sizeof name, "grad.%s", pl->items[i].name);
        kdi_param *p = pl->items[i].p;
        err = fixture_error(p->grad, &f, name, p->count);
        ck_assert_msg(err < 1e-5, "%s off by %g", name, err);
    }
    kd_loss_destroy(ce);
    kd_model_destroy(m);
    kdi_st_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("transformer");
    TCase *tc = tcase_create("transformer");
    tcase_add_test(tc, grad_embeddings);
    tcase_add_test(tc, grad_per_token);
    tcase_add_test(tc, grad_attention);
    tcase_add_test(tc, grad_block);
    tcase_add_test(tc, grad_attention_tap);
    tcase_add_test(tc, attention_distillation);
    tcase_add_test(tc, trainer_attention_term);
    tcase_add_test(tc, per_token_matches_flat);
    tcase_add_test(tc, attention_reference);
    tcase_add_test(tc, causality);
    tcase_add_test(tc, token_calls);
    tcase_add_test(tc, spec_errors);
    tcase_add_test(tc, save_load_names);
    tcase_add_test(tc, tied_head_state_dict);
    tcase_add_test(tc, pytorch_fixture);
    tcase_add_test(tc, decode_matches_forward);
    tcase_add_test(tc, generate);
    tcase_add_test(tc, generate_refuses_logits_that_overflow);
    tcase_add_test(tc, learns_a_pattern);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
