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
#include "parallel.h"

typedef struct workspace {
    float *x, *z;
    int32_t *labels;
    int drop;          /* the short last batch of each epoch is left out */
    int64_t steps;     /* batches an epoch */
    double first_loss; /* the first step's loss in this process: what "exploding" is measured by */
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

int64_t data_classes(const kd_dataset *train, const kd_dataset *test)
{
    int32_t named = 0;
    kd_dataset_class_count(train, &named);
    if (named > 0) return named;
    int32_t top = -1;
    const kd_dataset *sets[2] = {train, test};
    for (int k = 0; k < 2; k++) {
        int64_t n;
        const int32_t *labels = sets[k] != NULL ? kd_dataset_labels(sets[k]) : NULL;
        if (labels == NULL) continue;
        kd_dataset_size(sets[k], &n);
        for (int64_t i = 0; i < n; i++) top = labels[i] > top ? labels[i] : top;
    }
    return (int64_t)top + 1;
}

static int fits(const char *what, kd_model *m, const kd_dataset *train, const kd_dataset *test,
                int subset)
{
    int64_t in, outputs, ch, hh, ww;
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &outputs);
    kd_dataset_shape(train, &ch, &hh, &ww);
    int64_t vocab = 0, length = 0;
    kd_model_tokens(m, &vocab, &length);
    if (vocab > 0) {
        fail_msg("the %s is a language model (token ids in): give it text with --text FILE "
                 "(kd train, distill and eval; see kd help generate)",
                 what);
        return EXIT_USAGE;
    }
    if (in != ch * hh * ww) {
        fail_msg("the %s takes %lld inputs but the images are %lldx%lldx%lld = %lld values%s", what,
                 (long long)in, (long long)ch, (long long)hh, (long long)ww,
                 (long long)(ch * hh * ww),
                 ch == 3 && in == hh * ww ? " (gray images in a folder? --channels 1)" : "");
        return EXIT_USAGE;
    }
    int64_t classes = data_classes(train, test);
    int32_t named = 0;
    kd_dataset_class_count(train, &named);
    /* a test set of numbered labels may hold only some of the model's classes */
    if (subset && named == 0 && classes > 0 && outputs > classes) return EXIT_OK;
    if (classes > 0 && outputs != classes) {
        fail_msg("the %s has %lld outputs but the data has %lld classes (labels 0 to %lld): its "
                 "last layer must have %lld",
                 what, (long long)outputs, (long long)classes, (long long)(classes - 1),
                 (long long)classes);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int check_fits(const char *what, kd_model *m, const kd_dataset *train, const kd_dataset *test)
{
    return fits(what, m, train, test, 0);
}

int check_fits_eval(const char *what, kd_model *m, const kd_dataset *test)
{
    return fits(what, m, test, NULL, 1);
}

/* 1 when the model has a batch-norm layer (at any depth: the spec is searched for the word). */
static int has_batch_norm(const kd_model *m)
{
    const char *spec = kd_model_spec(m);
    for (const char *p = spec; (p = strstr(p, "bn")) != NULL; p += 2) {
        int before = p == spec || strchr(" |(", p[-1]) != NULL;
        int after = p[2] == '\0' || strchr(" |)", p[2]) != NULL;
        if (before && after) return 1;
    }
    return 0;
}

/* --augment: images only (a tabular example has no pixels to shift or flip). */
static int check_augment(const run_config *c, const kd_dataset *train)
{
    int64_t ch, hh, ww;
    kd_dataset_shape(train, &ch, &hh, &ww);
    if (c->naugment == 0 || (hh > 1 && ww > 1)) return EXIT_OK;
    fail_msg("--augment shifts, crops and flips images, but the examples are %lldx%lldx%lld "
             "values, not images",
             (long long)ch, (long long)hh, (long long)ww);
    return EXIT_USAGE;
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

/* --drop-last, and the default: a last batch of one example is dropped when the model has batch
 * norm, which cannot normalise a lone value per channel (PyTorch's "Expected more than 1 value per
 * channel"); said once, as the run starts. */
static int choose_drop(const run_config *c, kd_model *m, int64_t n, const progress *p, workspace *w)
{
    int64_t rest = n % c->batch;
    /* under mpirun a last batch smaller than the job leaves a process without a row */
    int few = rest != 0 && rest < par_world();
    w->drop = rest != 0 &&
              (c->drop_last == 1 || few || (c->drop_last < 0 && rest == 1 && has_batch_norm(m)));
    w->steps = w->drop ? n / c->batch : (n + c->batch - 1) / c->batch;
    if (w->steps == 0) {
        fail_msg("--drop-last with --batch %d leaves no batch of the %lld training examples",
                 c->batch, (long long)n);
        return EXIT_USAGE;
    }
    if (w->drop && few && c->drop_last != 1)
        note(p,
             "%s: the last batch of each epoch would have %lld examples for %d processes: it is "
             "left out (as --drop-last; another --batch keeps it)",
             c->name, (long long)rest, par_world());
    else if (w->drop && c->drop_last < 0)
        note(p,
             "%s: the last batch of each epoch would be a single example, which batch norm "
             "cannot normalise: it is left out (as --drop-last; another --batch keeps it)",
             c->name);
    return EXIT_OK;
}

static int setup(const run_config *c, const kd_dataset *train, const kd_dataset *test, handles *h,
                 const progress *p, workspace *w)
{
    int64_t n;
    kd_dataset_size(train, &n);
    int rc = EXIT_OK;
    if (c->init != NULL) { /* qat: fine-tune a trained float student */
        kd_status st = kd_model_load(c->init, &h->m);
        if (st != KD_OK) {
            char what[4200];
            snprintf(what, sizeof what, "cannot load --init %s", c->init);
            return fail_kd(what, st);
        }
    } else {
        rc = create_model(c->name, c->spec, c->seed, &h->m);
    }
    if (rc != EXIT_OK) return rc;
    if (c->fake_quant) TRY("--quantize int8", kd_model_set_fake_quant(h->m, 1));
    if ((rc = check_fits(c->name, h->m, train, test)) != EXIT_OK) return rc;
    if ((rc = check_augment(c, train)) != EXIT_OK) return rc;
    if (c->normalize && (rc = normalize_inputs(c, h->m, train)) != EXIT_OK) return rc;
    if ((rc = choose_drop(c, h->m, n, p, w)) != EXIT_OK) return rc;
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
    if ((rc = setup_optimizer(c, h, w->steps * c->epochs)) != EXIT_OK) return rc;
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
    return par_attach(h->t); /* under mpirun: one rank of a data-parallel job */
}

/* What identifies a run, so --resume refuses a checkpoint of another one. */
static uint64_t fingerprint(const run_config *c, const kd_dataset *train, int drop, int epochs)
{
    char buf[512], ranks[32] = "";
    int64_t n;
    kd_dataset_size(train, &n);
    if (par_world() > 1) /* a job of several ranks resumes with as many (and a lone run alone) */
        snprintf(ranks, sizeof ranks, " ranks %d", par_world());
    snprintf(buf, sizeof buf,
             "%d %d %.9g %llu %d %d %.9g %.9g %.9g %.9g %.9g %.9g %d %d %d %lld %llx %d %.9g"
             " %.9g %d%s%s%s",
             c->method, c->optimizer, (double)c->beta, (unsigned long long)c->seed, epochs,
             c->batch, (double)c->lr, (double)c->momentum, (double)c->weight_decay,
             (double)c->min_lr, (double)c->temperature, (double)c->alpha, c->nesterov, c->cosine,
             c->nteachers, (long long)n, (unsigned long long)c->teacher_hash, c->warmup_epochs,
             (double)c->clip_norm, (double)c->gamma, c->standardize,
             c->normalize ? " norm" : "", /* so older checkpoints still resume */
             drop ? " drop" : "", ranks);
    uint64_t h = hash_str(hash_str(HASH_SEED, c->spec), buf);
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

/* A run that collapsed or diverged: stopped with what happened and what to try, so that no table
 * ever reports it as a result of distillation. The checkpoint of the last good epoch, if any, is
 * kept (a bad epoch is never saved). */
static int collapsed(const run_config *c, int epoch, const char *verb, const char *what)
{
    char kept[4300] = "";
    if (c->checkpoint != NULL && epoch > 1)
        snprintf(kept, sizeof kept, " (the checkpoint %s of epoch %d is kept)", c->checkpoint,
                 epoch - 1);
    fail_msg("the %s run %s in epoch %d: %s. It was stopped; nothing is saved or compared%s. "
             "Try a smaller --lr (it is %g), a longer warm-up (--warmup-epochs, it is %d), "
             "--clip-norm 1%s",
             c->name, verb, epoch, what, kept, (double)c->lr, c->warmup_epochs,
             c->nteachers > 0 ? ", or a lower --alpha or --temperature" : "");
    return EXIT_COLLAPSE;
}

/* A step whose loss is not finite, or a thousand times what the run started at (and above 1000):
 * the run diverged; more steps only waste time (--lr 1000 reached 9.9e12 at chance). */
static int check_step_loss(const run_config *c, workspace *w, int epoch, int64_t step, float value)
{
    char what[256];
    if (!isfinite(value)) {
        snprintf(what, sizeof what, "step %lld gave a non-finite loss", (long long)step);
        return collapsed(c, epoch, "diverged", what);
    }
    if (w->first_loss == 0.0) w->first_loss = value > 1.0 ? value : 1.0;
    if (value <= 1000.0 * w->first_loss) return EXIT_OK;
    snprintf(what, sizeof what, "the loss exploded to %.4g at step %lld (it started at %.4g)",
             (double)value, (long long)step, w->first_loss);
    return collapsed(c, epoch, "diverged", what);
}

typedef struct sums {
    double loss, ce;
    int64_t hit, seen, steps;
    /* The last quarter of the epoch's batches: where the student ended up, for the collapse
     * check (the epoch's mean hides a student that learned, then collapsed). */
    int64_t tail_hit, tail_seen;
    double tail_loss;
    int64_t tail_steps;
    /* The first quarter's loss: a loss still falling is a run still learning (a warm-up on a
     * small set), not a collapse. */
    double head_loss;
    int64_t head_steps;
} sums;

/* --augment: each batch transformed in place, its draws seeded by (seed, epoch, step, kind), so
 * a resumed run sees the same images. */
static int augment(const run_config *c, const kd_dataset *train, float *x, int64_t rows, int epoch,
                   int64_t step)
{
    int64_t ch, hh, ww;
    kd_dataset_shape(train, &ch, &hh, &ww);
    for (int k = 0; k < c->naugment; k++) {
        uint64_t seed = epoch_seed(c->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(k + 1)), epoch) +
                        (uint64_t)step;
        kd_status st = kd_augment_images(x, rows, ch, hh, ww, (kd_augment_kind)c->augment_kind[k],
                                         c->augment_amount[k], seed);
        if (st != KD_OK) return fail_kd("--augment", st);
    }
    return EXIT_OK;
}

static int one_epoch(const run_config *c, const kd_dataset *train, handles *h, workspace *w,
                     int epoch, progress *p, sums *s)
{
    int64_t n, classes, rows;
    kd_dataset_size(train, &n);
    kd_model_output_size(h->m, &classes);
    /* Augmented examples are not those the teachers' logits were computed on: the teachers run
     * on each augmented batch instead (--teacher-logits and --augment are refused together). */
    const float *cached = c->naugment > 0 && c->teachers != NULL ? NULL : c->teacher_logits;
    kd_batcher *b;
    TRY("batcher", kd_batcher_create(train, c->batch, epoch_seed(c->seed, epoch), &b));
    int rc = EXIT_OK;
    for (;;) {
        kd_status st = kd_batcher_next(b, w->x, w->labels, &rows);
        if (st != KD_OK || rows == 0 || (w->drop && rows < c->batch)) {
            if (st != KD_OK) rc = fail_kd("batcher", st);
            break;
        }
        /* Under mpirun every rank needs a row: choose_drop left out a last batch smaller than the
         * job */
        if (rows < par_world()) break;
        if (c->naugment > 0 && (rc = augment(c, train, w->x, rows, epoch, s->steps)) != EXIT_OK)
            break;
        if (cached != NULL) gather(c, b, n, classes, w->z);
        float value;
        int64_t all = rows, lo, hi, width; /* under mpirun: this rank's slice of the batch */
        par_slice(all, &lo, &hi);
        kd_model_input_size(h->m, &width);
        const float *x = w->x + lo * width;
        const int32_t *labels = w->labels + lo;
        if (cached != NULL && all != hi - lo) /* [teachers, slice, classes] */
            for (int t = 0; t < c->nteachers; t++)
                memmove(w->z + t * (hi - lo) * classes, w->z + (t * all + lo) * classes,
                        sizeof(float) * (size_t)((hi - lo) * classes));
        rows = hi - lo;
        st = kd_trainer_step(h->t, x, labels, cached != NULL ? w->z : NULL, rows, &value);
        if (st == KD_ERR_NUMERIC) {
            char what[640];
            snprintf(what, sizeof what, "step %lld gave a non-finite value (%s)",
                     (long long)s->steps + 1, kd_last_error());
            rc = collapsed(c, epoch, "diverged", what);
            break;
        }
        if (st != KD_OK) {
            char what[128];
            snprintf(what, sizeof what, "%s, epoch %d, step %lld", c->name, epoch,
                     (long long)s->steps + 1);
            rc = fail_kd(what, st);
            break;
        }
        if ((rc = check_step_loss(c, w, epoch, s->steps + 1, value)) != EXIT_OK) break;
        s->loss += value;
        s->steps++;
        s->seen += rows;
        int64_t hit = s->hit;
        batch_metrics(h->m, labels, rows, &s->ce, &s->hit);
        if (4 * s->steps <= w->steps) {
            s->head_loss += value;
            s->head_steps++;
        }
        if (4 * s->steps > 3 * w->steps) {
            s->tail_hit += s->hit - hit;
            s->tail_seen += rows;
            s->tail_loss += value;
            s->tail_steps++;
        }
        progress_step(p, epoch, s->steps, s->loss / (double)s->steps,
                      100.0 * (double)s->hit / (double)s->seen);
    }
    kd_batcher_destroy(b);
    /* Every rank's counts, so every rank takes the same collapse decision (the loss is the job's
     * already). */
    double v[5] = {s->ce, (double)s->hit, (double)s->seen, (double)s->tail_hit,
                   (double)s->tail_seen};
    if (rc == EXIT_OK && par_world() > 1) {
        par_sum(v, 5);
        s->ce = v[0];
        s->hit = (int64_t)v[1];
        s->seen = (int64_t)v[2];
        s->tail_hit = (int64_t)v[3];
        s->tail_seen = (int64_t)v[4];
    }
    return rc;
}

int test_accuracy(kd_model *m, const kd_dataset *test, double *accuracy)
{
    int64_t n, correct;
    kd_dataset_size(test, &n);
    kd_status st = kd_model_evaluate(m, kd_dataset_images(test), kd_dataset_labels(test), n,
                                     EVAL_BATCH, &correct, NULL);
    if (st != KD_OK) return fail_kd("evaluation", st);
    *accuracy = 100.0 * (double)correct / (double)n;
    return EXIT_OK;
}

/* The fewest steps an epoch needs for a collapse verdict. */
#define COLLAPSE_MIN_STEPS 64

/* Training accuracy at chance over the last quarter of an epoch (within a fifth of 1 / classes)
 * with a flat loss (the last quarter's mean above 0.9 times the first quarter's) is a collapse:
 * every prediction one class, or noise. A run that learns anything at all is far above chance
 * after one epoch; one at chance whose loss still falls is still learning (a warm-up on a few
 * batches) and goes on. */
static int check_collapse(const run_config *c, kd_model *m, const epoch_rec *r, const sums *s,
                          const progress *p)
{
    int64_t classes;
    kd_model_output_size(m, &classes);
    double chance = 100.0 / (double)classes;
    if (!isfinite(r->loss)) return collapsed(c, r->epoch, "diverged", "the loss is not finite");
    /* An epoch of a few dozen steps has not had the time to learn (a small set, a large --batch,
     * a low --lr or the start of a warm-up: 16 steps at lr 0.001 leave a CNN at chance with its
     * loss down 0.3%), and its quarters are too short to call a loss flat: no verdict. */
    if (classes < 2 || s->tail_seen == 0 || s->steps < COLLAPSE_MIN_STEPS) return EXIT_OK;
    double acc = 100.0 * (double)s->tail_hit / (double)s->tail_seen;
    if (acc > 1.2 * chance) return EXIT_OK;
    double head = s->head_loss / (double)s->head_steps, tail = s->tail_loss / (double)s->tail_steps;
    if (tail < 0.9 * head) return EXIT_OK;
    char what[256];
    snprintf(what, sizeof what,
             "over the last quarter of the epoch the training accuracy was %.2f%%, chance for "
             "%lld classes, and the loss flat at %.4g (%.4g over the first quarter; %s accuracy "
             "%.2f%%)",
             acc, (long long)classes, tail, head,
             p != NULL && p->eval_name != NULL ? p->eval_name : "test", r->test_acc);
    return collapsed(c, r->epoch, "collapsed", what);
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
                       handles *h, workspace *w, uint64_t print, const char *run, progress *p,
                       run_result *out, kd_model **best)
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
        if ((rc = check_collapse(c, h->m, r, &s, p)) != EXIT_OK) return rc;
        if ((rc = keep_if_best(c, h->m, r, best, &best_acc, &out->kept_epoch)) != EXIT_OK)
            return rc;
        r->seconds = offset + now_seconds() - start;
        out->hist.n++;
        progress_epoch(p, r);
        if (c->checkpoint != NULL && par_rank() == 0 &&
            checkpoint_save(c->checkpoint, h->t, print, &out->hist, run) != 0)
            return EXIT_RUNTIME;
        if (c->stop_after == e && e < c->epochs) {
            out->stopped = 1;
            break;
        }
    }
    out->seconds = out->hist.n > 0 ? out->hist.rec[out->hist.n - 1].seconds : 0.0;
    return EXIT_OK;
}

/* What the fingerprint holds, as "--lr=0.05; --epochs=4; ...", kept in the checkpoint's sidecar so
 * that a refused --resume names the options that differ. */
static void describe_run(const run_config *c, const kd_dataset *train, int drop, char *out,
                         size_t size)
{
    static const char *const optimizers[] = {"sgd", "adam", "adamw"};
    static const char *const methods[] = {"kd", "mse", "dkd", "dist"};
    int64_t n;
    kd_dataset_size(train, &n);
    const char *spec_opt = strcmp(c->key, "model") == 0     ? "--model"
                           : strcmp(c->key, "teacher") == 0 ? "--teacher-spec"
                                                            : "--student";
    char method[32];
    if (c->method >= 0 && c->method < 4)
        snprintf(method, sizeof method, "%s%s", methods[c->method], c->standardize ? "-ls" : "");
    else
        snprintf(method, sizeof method, "%d", c->method);
    snprintf(out, size,
             "%s=%s; --method=%s; --optimizer=%s; --seed=%llu; --epochs=%d; --batch=%d; "
             "--lr=%g; --momentum=%g; --weight-decay=%g; --min-lr=%g; "
             "--temperature=%g; --alpha=%g; --beta=%g; --gamma=%g; --nesterov=%s; "
             "--schedule=%s; --warmup-epochs=%d; --clip-norm=%g; --normalize=%s; "
             "--drop-last=%s; the training set=%lld examples; the teachers=%d (%016llx); "
             "the number of MPI processes=%d",
             spec_opt, c->spec, method, optimizers[c->optimizer], (unsigned long long)c->seed,
             c->epochs, c->batch, (double)c->lr, (double)c->momentum, (double)c->weight_decay,
             (double)c->min_lr, (double)c->temperature, (double)c->alpha, (double)c->beta,
             (double)c->gamma, c->nesterov ? "yes" : "no", c->cosine ? "cosine" : "constant",
             c->warmup_epochs, (double)c->clip_norm, c->normalize ? "yes" : "no",
             drop ? "yes" : "no", (long long)n, c->nteachers, (unsigned long long)c->teacher_hash,
             par_world());
}

/* The value of key in a description, or NULL; *len gets its length. */
static const char *described(const char *d, const char *key, size_t *len)
{
    size_t k = strlen(key);
    for (const char *p = d; p != NULL && *p != '\0';) {
        const char *end = strstr(p, "; ");
        size_t item = end != NULL ? (size_t)(end - p) : strlen(p);
        if (item > k && strncmp(p, key, k) == 0 && p[k] == '=') {
            *len = item - k - 1;
            return p + k + 1;
        }
        p = end != NULL ? end + 2 : NULL;
    }
    return NULL;
}

/* The command whose run a description is: its model option names it; NULL if none does. */
static const char *command_of(const char *d)
{
    size_t len;
    if (described(d, "--model", &len) != NULL) return "kd train";
    if (described(d, "--student", &len) != NULL) return "kd distill";
    if (described(d, "--teacher-spec", &len) != NULL) return "kd distill's teacher training";
    return NULL;
}

/* "--lr is 0.1 but the checkpoint's run had 0.05, ..." for each item of now that differs from
 * then; returns how many differ, --epochs apart (*epochs_differ says if it does). */
static int differences(const char *then, const char *now, char *out, size_t size,
                       int *epochs_differ)
{
    int count = 0;
    size_t used = 0;
    *epochs_differ = 0;
    out[0] = '\0';
    for (const char *p = now; p != NULL && *p != '\0';) {
        const char *end = strstr(p, "; ");
        size_t item = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', item);
        if (eq != NULL) {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            size_t vlen = item - (size_t)(eq - p) - 1, tlen = 0;
            const char *was = described(then, key, &tlen);
            if (was == NULL || tlen != vlen || strncmp(was, eq + 1, vlen) != 0) {
                if (strcmp(key, "--epochs") == 0) {
                    *epochs_differ = 1;
                } else {
                    count++;
                    if (used < size)
                        used +=
                            (size_t)snprintf(out + used, size - used, "%s%s is %.*s but was %.*s",
                                             count > 1 ? "; " : "", key, (int)vlen, eq + 1,
                                             (int)tlen, was != NULL ? was : "?");
                }
            }
        }
        p = end != NULL ? end + 2 : NULL;
    }
    return count;
}

/* --resume: continues the checkpoint of the same run, or of the same run with another --epochs
 * (more epochs extend it: the schedule is stretched to the new end from the step it stopped at).
 * Any other difference is refused, naming the options. *print becomes the fingerprint the
 * continued run saves under. */
static int resume(const run_config *c, handles *h, const kd_dataset *train, int drop,
                  uint64_t *print, int64_t steps_per_epoch, const progress *p, run_result *out)
{
    char then[4096] = "", now[4096], diff[4096];
    uint64_t saved = 0;
    int got = checkpoint_peek(c->checkpoint, &saved, then, sizeof then);
    if (got < 0) return EXIT_RUNTIME;
    if (got == 0) {
        note(p, "%s: no checkpoint at %s yet; starting from the beginning", c->name, c->checkpoint);
        return EXIT_OK;
    }
    describe_run(c, train, drop, now, sizeof now);
    const char *was = command_of(then), *is = command_of(now);
    if (was != NULL && is != NULL && strcmp(was, is) != 0) {
        fail_msg("the checkpoint %s is of a %s run, not of %s: resume it with the command that "
                 "wrote it, or run without --resume (with --force to start again over it)",
                 c->checkpoint, was, is);
        return EXIT_USAGE;
    }
    int epochs_differ = 0, ndiff = differences(then, now, diff, sizeof diff, &epochs_differ);
    size_t len = 0;
    const char *e = described(then, "--epochs", &len);
    int before = e != NULL ? atoi(e) : c->epochs;
    if (saved != *print &&
        (ndiff > 0 || !epochs_differ || saved != fingerprint(c, train, drop, before))) {
        if (ndiff > 0 && e != NULL) /* an older sidecar does not list its options */
            fail_msg("the checkpoint %s is of another run: %s. Give the same options, or run "
                     "without --resume (with --force to start again over it)",
                     c->checkpoint, diff);
        else
            fail_msg("the checkpoint %s belongs to a run with other options or data; remove it, "
                     "or run without --resume",
                     c->checkpoint);
        return EXIT_USAGE;
    }
    got = checkpoint_load(c->checkpoint, h->t, h->opt, saved, steps_per_epoch, &out->hist);
    if (got < 0) return EXIT_RUNTIME;
    if (out->hist.n > c->epochs) {
        fail_msg("the checkpoint %s has done %d epochs already; --epochs %d would end before it",
                 c->checkpoint, out->hist.n, c->epochs);
        return EXIT_USAGE;
    }
    if (before != c->epochs)
        note(p,
             "%s: resuming from %s after epoch %d, extending the run from %d to %d epochs "
             "(the learning-rate schedule now ends at epoch %d)",
             c->name, c->checkpoint, out->hist.n, before, c->epochs, c->epochs);
    else
        note(p, "%s: resuming from %s after epoch %d of %d", c->name, c->checkpoint, out->hist.n,
             c->epochs);
    return EXIT_OK;
}

void run_options(const options *o, run_config *c)
{
    c->drop_last = o->drop_last;
    c->naugment = o->naugment;
    c->augment_kind = o->augment_kind;
    c->augment_amount = o->augment_amount;
}

/* --resume with more --epochs and the default warm-up: the warm-up the checkpoint's run had (the
 * default follows --epochs, 2 epochs at most half the run, so a run of 2 to 3 epochs would
 * otherwise differ from its own extension by its warm-up and be refused). */
static const run_config *resumed_warmup(const run_config *c, run_config *copy)
{
    char then[4096];
    size_t len = 0;
    if (!c->warmup_auto || !c->resume || c->checkpoint == NULL ||
        !checkpoint_options(c->checkpoint, then, sizeof then))
        return c;
    const char *w = described(then, "--warmup-epochs", &len);
    int was = w != NULL ? atoi(w) : c->warmup_epochs;
    if (w == NULL || was == c->warmup_epochs || was < 0 || was > c->epochs) return c;
    *copy = *c;
    copy->warmup_epochs = was;
    return copy;
}

int run_training(const run_config *c_given, const kd_dataset *train, const kd_dataset *eval,
                 const kd_dataset *test, progress *p, run_result *out)
{
    run_config copy;
    const run_config *c = resumed_warmup(c_given, &copy);
    memset(out, 0, sizeof *out);
    int64_t n, ch, hh, ww, classes;
    kd_dataset_size(train, &n);
    kd_dataset_shape(train, &ch, &hh, &ww);
    kd_model *best = NULL;
    handles h = {0};
    workspace w = {0};
    int rc = setup(c, train, test, &h, p, &w);
    int64_t steps_per_epoch = w.steps;
    uint64_t print = fingerprint(c, train, w.drop, c->epochs);
    if (rc == EXIT_OK && c->checkpoint != NULL && c->resume)
        rc = resume(c, &h, train, w.drop, &print, steps_per_epoch, p, out);
    if (c->checkpoint != NULL && c->resume) /* every rank, even one that failed */
        rc = par_agree_resume(rc, out->hist.n, print, c->checkpoint);
    char described_run[4096] = "";
    if (rc == EXIT_OK) describe_run(c, train, w.drop, described_run, sizeof described_run);
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
        rc = epochs_loop(c, train, eval, &h, &w, print, described_run, p, out, &best);
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
    out->dropped = w.drop ? (int)(n % c->batch) : 0;
    free_handles(&h);
    return rc;
}
