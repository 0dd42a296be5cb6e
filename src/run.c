/* One training run: build the student, its loss, optimizer and trainer, then epochs of shuffled
 * batches with progress, test accuracy, log records and checkpoints.
 *
 * Each epoch draws its batch order from a new batcher seeded from (seed, epoch), so the order does
 * not depend on the epochs before it: a run resumed from a checkpoint sees exactly the batches the
 * uninterrupted run would have seen, and with the trainer's saved state ends bit for bit the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct workspace {
    float *x, *z;
    int32_t *labels;
} workspace;

typedef struct handles {
    kd_model *m;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *t;
    kd_feature_loss *feature; /* wins: --method hint|...|crd */
} handles;

static void free_handles(handles *h)
{
    kd_trainer_destroy(h->t);
    kd_feature_loss_destroy(h->feature);
    kd_optimizer_destroy(h->opt);
    kd_loss_destroy(h->loss);
    kd_model_destroy(h->m);
}

#define TRY(what, call)                                                                            \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) return fail_kd(what, st_);                                               \
    } while (0)

static int setup_optimizer(const run_config *c, handles *h, int64_t total_steps)
{
    TRY("optimizer", kd_optimizer_create((kd_optimizer_kind)c->optimizer, h->m, &h->opt));
    TRY("--lr", kd_optimizer_set_float(h->opt, KD_OPT_LEARNING_RATE, c->lr));
    TRY("--weight-decay", kd_optimizer_set_float(h->opt, KD_OPT_WEIGHT_DECAY, c->weight_decay));
    if (c->optimizer == KD_OPTIMIZER_SGD) {
        TRY("--momentum", kd_optimizer_set_float(h->opt, KD_OPT_MOMENTUM, c->momentum));
        TRY("--nesterov", kd_optimizer_set_int(h->opt, KD_OPT_NESTEROV, c->nesterov));
    }
    if (c->cosine) {
        TRY("--schedule", kd_optimizer_set_int(h->opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE));
        TRY("--schedule", kd_optimizer_set_int(h->opt, KD_OPT_TOTAL_STEPS, total_steps));
        TRY("--min-lr", kd_optimizer_set_float(h->opt, KD_OPT_MIN_LR, c->min_lr));
    }
    /* The warm-up starts near zero, as most recipes do, rather than at LinearLR's third. */
    TRY("--warmup-epochs", kd_optimizer_set_int(h->opt, KD_OPT_WARMUP_STEPS,
                                                total_steps / c->epochs * c->warmup_epochs));
    TRY("--warmup-epochs", kd_optimizer_set_float(h->opt, KD_OPT_WARMUP_START, 0.0f));
    TRY("--clip-norm", kd_optimizer_set_float(h->opt, KD_OPT_CLIP_NORM, c->clip_norm));
    return EXIT_OK;
}

static int check_sizes(const run_config *c, kd_model *m, const kd_dataset *train)
{
    int64_t in, classes, n, ch, hh, ww;
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &classes);
    kd_dataset_size(train, &n);
    kd_dataset_shape(train, &ch, &hh, &ww);
    if (in != ch * hh * ww) {
        fail_msg("the %s takes %lld inputs but the images are %lldx%lldx%lld = %lld values%s",
                 c->name, (long long)in, (long long)ch, (long long)hh, (long long)ww,
                 (long long)(ch * hh * ww),
                 ch == 3 && in == hh * ww ? " (gray images in a folder? --channels 1)" : "");
        return EXIT_USAGE;
    }
    const int32_t *labels = kd_dataset_labels(train);
    int32_t top = 0;
    for (int64_t i = 0; i < n; i++) top = labels[i] > top ? labels[i] : top;
    if (top >= classes) {
        fail_msg("the training labels go up to %d but the %s has %lld outputs", (int)top, c->name,
                 (long long)classes);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* --normalize: the training set's per-channel mean and std, stored in the model (so kd eval and
 * kd predict apply them). A model with flat inputs ("input N") of a multi-channel image takes one
 * pair for all values: the pooled mean and std of the channels (equal counts each). */
static int normalize_inputs(const run_config *c, kd_model *m, const kd_dataset *train)
{
    int64_t ch, hh, ww;
    kd_dataset_shape(train, &ch, &hh, &ww);
    float *mean = malloc(sizeof(float) * (size_t)ch), *sd = malloc(sizeof(float) * (size_t)ch);
    kd_status st =
        mean != NULL && sd != NULL ? kd_dataset_channel_stats(train, mean, sd) : KD_ERR_NOMEM;
    if (st == KD_OK) st = kd_model_set_normalization(m, mean, sd, ch);
    if (st == KD_ERR_ARGUMENT && ch > 1) {
        double mu = 0.0, sq = 0.0;
        for (int64_t i = 0; i < ch; i++) {
            mu += mean[i];
            sq += (double)sd[i] * sd[i] + (double)mean[i] * mean[i];
        }
        mu /= (double)ch;
        double var = sq / (double)ch - mu * mu;
        float m1 = (float)mu, s1 = var > 0 ? (float)sqrt(var) : 1.0f;
        st = kd_model_set_normalization(m, &m1, &s1, 1);
    }
    free(mean);
    free(sd);
    if (st == KD_OK) return EXIT_OK;
    char what[200];
    snprintf(what, sizeof what, "--normalize (the %s)", c->name);
    return fail_kd(what, st);
}

static int setup(const run_config *c, const kd_dataset *train, handles *h, int64_t total_steps)
{
    int rc = create_model(c->name, c->spec, c->seed, &h->m);
    if (rc != EXIT_OK) return rc;
    if ((rc = check_sizes(c, h->m, train)) != EXIT_OK) return rc;
    if (c->normalize && (rc = normalize_inputs(c, h->m, train)) != EXIT_OK) return rc;
    /* A run without teachers is Hinton's loss with alpha 0: plain cross-entropy. */
    int kind = c->nteachers > 0 ? c->method : KD_LOSS_HINTON;
    TRY("loss", kd_loss_create((kd_loss_kind)kind, &h->loss));
    TRY("--temperature", kd_loss_set_float(h->loss, KD_LOSS_TEMPERATURE, c->temperature));
    TRY("--alpha", kd_loss_set_float(h->loss, KD_LOSS_ALPHA, c->nteachers > 0 ? c->alpha : 0.0f));
    if (kind == KD_LOSS_DKD || kind == KD_LOSS_DIST)
        TRY("--beta", kd_loss_set_float(h->loss, KD_LOSS_BETA, c->beta));
    if (kind == KD_LOSS_DIST) TRY("--gamma", kd_loss_set_float(h->loss, KD_LOSS_GAMMA, c->gamma));
    if (c->nteachers > 0 && c->standardize)
        TRY("--method", kd_loss_set_float(h->loss, KD_LOSS_LOGIT_STANDARDIZE, 1.0f));
    if ((rc = setup_optimizer(c, h, total_steps)) != EXIT_OK) return rc;
    TRY("trainer", kd_trainer_create(h->m, h->loss, h->opt, &h->t));
    /* Logits computed elsewhere (--teacher-logits) come without models: the student stands in
     * for each teacher, so the trainer counts them and their weights; it never runs them, as
     * every step passes the cached logits. */
    for (int i = 0; i < c->nteachers; i++)
        TRY("teacher", kd_trainer_add_teacher(h->t, c->teachers != NULL ? c->teachers[i] : h->m,
                                              c->teacher_weights[i]));
    /* ---- wins (issue 12): the feature method's term, from the first teacher */
    const feature_term *f = c->feature;
    if (f != NULL && f->kind >= 0 && c->nteachers > 0 && c->teachers != NULL) {
        TRY("--method", kd_feature_loss_create((kd_feature_loss_kind)f->kind, &h->feature));
        if (f->kind == KD_FEATURE_CRD) /* the memory's seed follows the run's */
            TRY("--method crd", kd_feature_loss_set_float(h->feature, KD_FEATURE_CRD_SEED,
                                                          (float)(c->seed % 16777216u)));
        TRY("--method",
            kd_trainer_add_feature_loss(h->t, h->feature, f->student, 0, f->teacher,
                                        f->regressor[0] != '\0' ? f->regressor : NULL, f->weight));
    }
    return EXIT_OK;
}

/* What identifies a run, so --resume refuses a checkpoint of another one. */
static uint64_t fingerprint(const run_config *c, const kd_dataset *train)
{
    char buf[512];
    int64_t n;
    kd_dataset_size(train, &n);
    snprintf(buf, sizeof buf,
             "%d %d %.9g %llu %d %d %.9g %.9g %.9g %.9g %.9g %.9g %d %d %d %lld %llx %d %.9g"
             " %.9g %d%s",
             c->method, c->optimizer, (double)c->beta, (unsigned long long)c->seed, c->epochs,
             c->batch, (double)c->lr, (double)c->momentum, (double)c->weight_decay,
             (double)c->min_lr, (double)c->temperature, (double)c->alpha, c->nesterov, c->cosine,
             c->nteachers, (long long)n, (unsigned long long)c->teacher_hash, c->warmup_epochs,
             (double)c->clip_norm, (double)c->gamma, c->standardize,
             c->normalize ? " norm" : ""); /* so older checkpoints still resume */
    uint64_t h = hash_str(hash_str(0xcbf29ce484222325ULL, c->spec), buf);
    if (c->feature != NULL && c->feature->kind >= 0) { /* wins: only then, so old ones resume */
        snprintf(buf, sizeof buf, "feature %d %d %d %.9g %s", c->feature->kind,
                 (int)c->feature->student, (int)c->feature->teacher, (double)c->feature->weight,
                 c->feature->regressor);
        h = hash_str(h, buf);
    }
    return h;
}

/* Running top-1 and cross-entropy of the batch just trained, from the logits the student produced
 * in its forward pass (the last layer's feature tap), so they cost no extra forward. */
static void batch_metrics(kd_model *m, const int32_t *labels, int64_t rows, double *ce,
                          int64_t *hit)
{
    int32_t layers;
    const float *z;
    int64_t b, c, hh, w;
    if (kd_model_layer_count(m, &layers) != KD_OK ||
        kd_model_feature(m, layers - 1, &z, &b, &c, &hh, &w) != KD_OK || b != rows)
        return;
    int64_t k = c * hh * w;
    for (int64_t i = 0; i < rows; i++) {
        const float *row = z + i * k;
        int64_t best = 0;
        double top = row[0], sum = 0.0;
        for (int64_t j = 1; j < k; j++)
            if (row[j] > top) top = row[j], best = j;
        for (int64_t j = 0; j < k; j++) sum += exp((double)row[j] - top);
        *ce += log(sum) + top - (double)row[labels[i]];
        *hit += best == labels[i];
    }
}

static void gather(const run_config *c, const kd_batcher *b, int64_t n, int64_t classes, float *z)
{
    const int64_t *idx;
    int64_t rows;
    kd_batcher_indices(b, &idx, &rows);
    for (int t = 0; t < c->nteachers; t++)
        for (int64_t i = 0; i < rows; i++)
            memcpy(z + (t * rows + i) * classes, c->teacher_logits + (t * n + idx[i]) * classes,
                   sizeof(float) * (size_t)classes);
}

/* A run that collapsed: stopped with what happened and what to try, so that no table ever
 * reports it as a result of distillation. */
static int collapsed(const run_config *c, int epoch, const char *what)
{
    fail_msg("the %s run collapsed in epoch %d: %s. It was stopped; nothing is saved or compared. "
             "Try a smaller --lr (it is %g), a longer warm-up (--warmup-epochs, it is %d), "
             "--clip-norm 1%s",
             c->name, epoch, what, (double)c->lr, c->warmup_epochs,
             c->nteachers > 0 ? ", or a lower --alpha or --temperature" : "");
    return EXIT_COLLAPSE;
}

typedef struct sums {
    double loss, ce;
    int64_t hit, seen, steps;
    /* The last quarter of the epoch's batches: where the student ended up, for the collapse
     * check (the epoch's mean hides a student that learned, then collapsed). */
    int64_t tail_hit, tail_seen;
    double tail_loss;
    int64_t tail_steps;
} sums;

static int one_epoch(const run_config *c, const kd_dataset *train, handles *h, workspace *w,
                     int epoch, progress *p, sums *s)
{
    int64_t n, classes, rows;
    kd_dataset_size(train, &n);
    kd_model_output_size(h->m, &classes);
    kd_batcher *b;
    TRY("batcher", kd_batcher_create(train, c->batch, epoch_seed(c->seed, epoch), &b));
    int rc = EXIT_OK;
    for (;;) {
        kd_status st = kd_batcher_next(b, w->x, w->labels, &rows);
        if (st != KD_OK || rows == 0) {
            if (st != KD_OK) rc = fail_kd("batcher", st);
            break;
        }
        if (c->teacher_logits != NULL) gather(c, b, n, classes, w->z);
        float value;
        st = kd_trainer_step(h->t, w->x, w->labels, c->teacher_logits ? w->z : NULL, rows, &value);
        if (st == KD_ERR_NUMERIC) {
            char what[640];
            snprintf(what, sizeof what, "step %lld gave a non-finite value (%s)",
                     (long long)s->steps + 1, kd_last_error());
            rc = collapsed(c, epoch, what);
            break;
        }
        if (st != KD_OK) {
            char what[128];
            snprintf(what, sizeof what, "%s, epoch %d, step %lld", c->name, epoch,
                     (long long)s->steps + 1);
            rc = fail_kd(what, st);
            break;
        }
        s->loss += value;
        s->steps++;
        s->seen += rows;
        int64_t hit = s->hit;
        batch_metrics(h->m, w->labels, rows, &s->ce, &s->hit);
        if (4 * s->steps > 3 * ((n + c->batch - 1) / c->batch)) {
            s->tail_hit += s->hit - hit;
            s->tail_seen += rows;
            s->tail_loss += value;
            s->tail_steps++;
        }
        progress_step(p, epoch, s->steps, s->loss / (double)s->steps,
                      100.0 * (double)s->hit / (double)s->seen);
    }
    kd_batcher_destroy(b);
    return rc;
}

int test_accuracy(kd_model *m, const kd_dataset *test, double *accuracy)
{
    int64_t n, correct;
    kd_dataset_size(test, &n);
    kd_status st = kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n, 1000,
                                     &correct, NULL);
    if (st != KD_OK) return fail_kd("evaluation", st);
    *accuracy = 100.0 * (double)correct / (double)n;
    return EXIT_OK;
}

/* Training accuracy at chance over the last quarter of an epoch (within a fifth of 1 / classes) is
 * a collapse: every prediction one class, or noise, and a flat loss. A run that learns anything
 * at all is far above it after one epoch. */
static int check_collapse(const run_config *c, kd_model *m, const epoch_rec *r, const sums *s)
{
    int64_t classes;
    kd_model_output_size(m, &classes);
    double chance = 100.0 / (double)classes;
    if (!isfinite(r->loss)) return collapsed(c, r->epoch, "the loss is not finite");
    if (classes < 2 || s->tail_seen == 0) return EXIT_OK;
    double acc = 100.0 * (double)s->tail_hit / (double)s->tail_seen;
    if (acc > 1.2 * chance) return EXIT_OK;
    char what[256];
    snprintf(what, sizeof what,
             "over the last quarter of the epoch the training accuracy was %.2f%%, chance for "
             "%lld classes, and the loss flat at %.4g (test accuracy %.2f%%)",
             acc, (long long)classes, s->tail_loss / (double)s->tail_steps, r->test_acc);
    return collapsed(c, r->epoch, what);
}

/* --keep best: a copy of the student after its best epoch on the evaluation set so far. */
static int keep_if_best(const run_config *c, kd_model *m, const epoch_rec *r, kd_model **best,
                        double *best_acc, int *best_epoch)
{
    if (!c->keep_best || (*best != NULL && r->test_acc <= *best_acc)) return EXIT_OK;
    kd_model *copy;
    kd_status st = kd_model_clone(m, &copy);
    if (st != KD_OK) return fail_kd("keeping the best epoch's model", st);
    kd_model_destroy(*best);
    *best = copy;
    *best_acc = r->test_acc;
    *best_epoch = r->epoch;
    return EXIT_OK;
}

static int epochs_loop(const run_config *c, const kd_dataset *train, const kd_dataset *test,
                       handles *h, workspace *w, uint64_t print, progress *p, run_result *out,
                       kd_model **best)
{
    double best_acc = 0.0;
    double offset = out->hist.n > 0 ? out->hist.rec[out->hist.n - 1].seconds : 0.0;
    double start = now_seconds();
    for (int e = out->hist.n + 1; e <= c->epochs; e++) {
        sums s = {0};
        float lr = 0.0f;
        kd_optimizer_get_float(h->opt, KD_OPT_CURRENT_LR, &lr);
        int rc = one_epoch(c, train, h, w, e, p, &s);
        if (rc != EXIT_OK) return rc;
        epoch_rec *r = &out->hist.rec[out->hist.n];
        r->epoch = e;
        r->loss = s.loss / (double)s.steps;
        r->ce = s.ce / (double)s.seen;
        r->train_acc = 100.0 * (double)s.hit / (double)s.seen;
        r->lr = lr;
        if ((rc = test_accuracy(h->m, test, &r->test_acc)) != EXIT_OK) return rc;
        if ((rc = check_collapse(c, h->m, r, &s)) != EXIT_OK) return rc;
        if ((rc = keep_if_best(c, h->m, r, best, &best_acc, &out->kept_epoch)) != EXIT_OK)
            return rc;
        r->seconds = offset + now_seconds() - start;
        out->hist.n++;
        progress_epoch(p, r);
        if (c->checkpoint != NULL && checkpoint_save(c->checkpoint, h->t, print, &out->hist) != 0)
            return EXIT_RUNTIME;
        if (c->stop_after == e && e < c->epochs) {
            out->stopped = 1;
            break;
        }
    }
    out->seconds = out->hist.n > 0 ? out->hist.rec[out->hist.n - 1].seconds : 0.0;
    return EXIT_OK;
}

static int resume(const run_config *c, handles *h, uint64_t print, int64_t steps_per_epoch,
                  const progress *p, run_result *out)
{
    int got = checkpoint_load(c->checkpoint, h->t, h->opt, print, steps_per_epoch, &out->hist);
    if (got < 0) return EXIT_RUNTIME;
    if (got == 0)
        note(p, "%s: no checkpoint at %s yet; starting from the beginning", c->name, c->checkpoint);
    else
        note(p, "%s: resuming from %s after epoch %d of %d", c->name, c->checkpoint, out->hist.n,
             c->epochs);
    return EXIT_OK;
}

int run_training(const run_config *c, const kd_dataset *train, const kd_dataset *eval,
                 const kd_dataset *test, progress *p, run_result *out)
{
    memset(out, 0, sizeof *out);
    int64_t n, ch, hh, ww, classes;
    kd_dataset_size(train, &n);
    kd_dataset_shape(train, &ch, &hh, &ww);
    int64_t steps_per_epoch = (n + c->batch - 1) / c->batch;
    kd_model *best = NULL;
    handles h = {0};
    workspace w = {0};
    uint64_t print = fingerprint(c, train);
    int rc = setup(c, train, &h, steps_per_epoch * c->epochs);
    if (rc == EXIT_OK && c->checkpoint != NULL && c->resume)
        rc = resume(c, &h, print, steps_per_epoch, p, out);
    if (rc == EXIT_OK) {
        kd_model_output_size(h.m, &classes);
        int nt = c->nteachers > 0 ? c->nteachers : 1;
        w.x = malloc(sizeof(float) * (size_t)(c->batch * ch * hh * ww));
        w.z = malloc(sizeof(float) * (size_t)(nt * c->batch * classes));
        w.labels = malloc(sizeof(int32_t) * (size_t)c->batch);
        if (w.x == NULL || w.z == NULL || w.labels == NULL) {
            fail_msg("out of memory for batches of %d", c->batch);
            rc = EXIT_RUNTIME;
        }
    }
    if (rc == EXIT_OK) {
        progress_run(p, c->name, c->key, out->hist.n, c->epochs, steps_per_epoch);
        rc = epochs_loop(c, train, eval, &h, &w, print, p, out, &best);
    }
    free(w.x);
    free(w.z);
    free(w.labels);
    if (rc == EXIT_OK && best != NULL) {
        out->model = best; /* --keep best */
        best = NULL;
    } else if (rc == EXIT_OK) {
        out->model = h.m;
        out->kept_epoch = out->hist.n;
        h.m = NULL;
    }
    kd_model_destroy(best);
    if (rc == EXIT_OK && !out->stopped) rc = test_accuracy(out->model, test, &out->test_acc);
    free_handles(&h);
    return rc;
}
