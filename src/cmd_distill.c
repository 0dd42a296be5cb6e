/* kd distill: teachers -> student with Hinton's loss; with no --teacher, the whole demonstration
 * (teacher trained or reused from the cache, distilled student, the same student alone, and a
 * comparison table). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "parallel.h"

typedef struct state {
    const options *o;
    progress p;
    dataset_pair d;
    char cache[2048], out[4096], alone_out[4200];
    kd_model *teachers[MAX_TEACHERS];
    char teacher_paths[MAX_TEACHERS][4096];
    int nt, compare, own_teacher;
    int nlogits; /* teachers in --teacher-logits (no models then: nt is 0) */
    uint64_t data_hash, teacher_hash;
    history teacher_hist; /* n == 0 when unknown (a --teacher file) */
    float *logits;
    run_result distilled, alone;
    double start;
    double acc[2][100]; /* --seeds: the distilled [0] and alone [1] test accuracies, seed by seed */
    int nseeds;
    feature_term feature; /* wins: --method hint|...|crd, resolved against the models */
    const options *user;  /* the options as given (o may be --auto's winner) */
} state;

/* qat: the spec of --init's file, the student then. */
static char init_spec[4096];

static const char *student_spec(const options *o)
{
    if (o->init != NULL && init_spec[0] != '\0') return init_spec;
    return o->student_spec != NULL ? o->student_spec : DEFAULT_STUDENT_SPEC;
}

/* ---- qat (issue 14): --quantize int8 checks the student before any data is read */
static int check_quantize(const options *o)
{
    if (o->quantize == NULL) return EXIT_OK;
    if (par_world() > 1) {
        fail_msg("--quantize int8 runs in one process: the ranges fake quantisation tracks are "
                 "not shared between ranks");
        return EXIT_USAGE;
    }
    kd_model *m = NULL;
    int rc = EXIT_OK;
    if (o->init != NULL) {
        kd_status st = kd_model_load(o->init, &m);
        if (st != KD_OK) {
            char what[4200];
            snprintf(what, sizeof what, "cannot load --init %s", o->init);
            return fail_kd(what, st);
        }
        snprintf(init_spec, sizeof init_spec, "%s", kd_model_spec(m));
    } else {
        rc = create_model("student", student_spec(o), 1, &m);
    }
    if (rc == EXIT_OK && kd_model_set_fake_quant(m, 1) != KD_OK) {
        fail_msg("--quantize int8: the student %s has no int8 form: %s", student_spec(o),
                 kd_last_error());
        rc = EXIT_USAGE;
    }
    kd_model_destroy(m);
    return rc;
}

/* The int8 model of a student trained with fake quantisation, and its test accuracy. */
static int to_int8(const kd_model *m, const kd_dataset *test, kd_model **q, double *acc)
{
    kd_status st = kd_model_quantize_trained(m, q);
    if (st != KD_OK) return fail_kd("--quantize int8: converting the student", st);
    return test_accuracy(*q, test, acc);
}

static const char *teacher_spec(const options *o)
{
    return o->teacher_spec != NULL ? o->teacher_spec : DEFAULT_TEACHER_SPEC;
}

static int check_spec(const char *what, const char *spec)
{
    kd_model *m = NULL;
    int rc = create_model(what, spec, 1, &m);
    kd_model_destroy(m);
    return rc;
}

static void alone_path(const char *out, char *alone, size_t size)
{
    size_t n = strlen(out), ext = strlen(".safetensors");
    if (n > ext && strcmp(out + n - ext, ".safetensors") == 0)
        snprintf(alone, size, "%.*s-alone.safetensors", (int)(n - ext), out);
    else
        snprintf(alone, size, "%s-alone", out);
}

static int prepare(state *s)
{
    const options *o = s->o;
    int rc = check_quantize(o);
    if (rc != EXIT_OK) return rc;
    rc = check_spec("student", student_spec(o));
    s->own_teacher = distill_own_teacher(o);
    s->compare = distill_compares(o);
    if (rc == EXIT_OK && s->own_teacher) rc = check_spec("teacher", teacher_spec(o));
    if (rc != EXIT_OK) return rc;
    cache_dir(o, s->cache, sizeof s->cache);
    if ((s->own_teacher || o->out == NULL) && make_dirs(s->cache) != 0) {
        fail_msg("cannot create the cache directory %s: %s (pass --cache-dir DIR)", s->cache,
                 strerror(errno));
        return EXIT_RUNTIME;
    }
    if (o->out != NULL)
        snprintf(s->out, sizeof s->out, "%s", o->out);
    else
        snprintf(s->out, sizeof s->out, "%s/student.safetensors", s->cache);
    alone_path(s->out, s->alone_out, sizeof s->alone_out);
    rc = par_check_batch(o->batch, "example");
    /* the student alone's model too, when it is trained: OUT-alone.safetensors */
    return rc != EXIT_OK ? rc : check_outputs(o, s->out, s->compare ? s->alone_out : NULL);
}

/* The protocol every run shares (teacher, student alone, distilled). */
static void protocol(const options *o, run_config *c)
{
    memset(c, 0, sizeof *c);
    c->seed = o->seed;
    c->epochs = o->epochs;
    c->batch = o->batch;
    c->lr = o->lr;
    c->momentum = o->momentum;
    c->weight_decay = o->weight_decay;
    c->min_lr = o->min_lr;
    c->warmup_epochs = o->warmup_epochs;
    c->warmup_auto = o->warmup_auto;
    c->clip_norm = o->clip_norm;
    c->nesterov = o->nesterov;
    c->cosine = o->cosine;
    c->optimizer = o->optimizer;
    c->temperature = o->temperature;
    c->alpha = o->alpha;
    c->beta = o->beta;
    c->gamma = o->gamma;
    c->method = o->method;
    c->standardize = o->standardize;
    c->resume = o->resume;
    c->stop_after = o->stop_after;
    c->keep_best = o->keep_best;
    c->normalize = o->normalize;
    run_options(o, c);
}

static const char *checkpoint_of(const options *o, const char *suffix, char *buf, size_t size)
{
    if (o->checkpoint == NULL) return NULL;
    snprintf(buf, size, "%s%s", o->checkpoint, suffix);
    return buf;
}

/* Where per-epoch accuracy is measured: the validation split, or (--val 0) the test set. */
static const kd_dataset *eval_set(const state *s)
{
    return s->d.val != NULL ? s->d.val : s->d.test;
}

/* A teacher file: a libkd model (its spec in the metadata), or, with --teacher-spec, a plain
 * PyTorch state dict (safetensors.torch.save_file of model.state_dict()) read into that spec. */
static int load_teacher(const options *o, const char *path, kd_model **out)
{
    char what[4200];
    snprintf(what, sizeof what, "cannot load the teacher %s", path);
    kd_status st = kd_model_load(path, out);
    /* the hint only when the file is a safetensors file without libkd's spec, not a damaged one */
    if (o->teacher_spec == NULL && st == KD_ERR_FORMAT && strstr(kd_last_error(), "kd.spec")) {
        fail_msg("%s: %s (a plain state dict? give its architecture with --teacher-spec SPEC)",
                 what, kd_last_error());
        return EXIT_RUNTIME;
    }
    if (o->teacher_spec == NULL) return st == KD_OK ? EXIT_OK : fail_kd(what, st);
    kd_model *m = NULL;
    int rc = create_model("--teacher-spec", o->teacher_spec, o->seed, &m);
    if (rc != EXIT_OK) {
        kd_model_destroy(*out);
        *out = NULL;
        return rc;
    }
    if (st == KD_OK) { /* the file names its spec: --teacher-spec must agree */
        rc = strcmp(kd_model_spec(m), kd_model_spec(*out)) == 0 ? EXIT_OK : EXIT_USAGE;
        if (rc != EXIT_OK) {
            fail_msg("the teacher %s is \"%s\" but --teacher-spec says \"%s\"", path,
                     kd_model_spec(*out), kd_model_spec(m));
            kd_model_destroy(*out);
            *out = NULL;
        }
        kd_model_destroy(m);
        return rc;
    }
    st = kd_model_load_weights(m, path);
    if (st != KD_OK) {
        snprintf(what, sizeof what, "cannot load the teacher %s into --teacher-spec", path);
        kd_model_destroy(m);
        return fail_kd(what, st);
    }
    *out = m;
    return EXIT_OK;
}

static int load_teachers(state *s)
{
    for (int i = 0; i < s->o->nteachers; i++) {
        const char *path = s->o->teachers[i];
        int rc = load_teacher(s->o, path, &s->teachers[i]);
        if (rc != EXIT_OK) return rc;
        s->nt++;
        snprintf(s->teacher_paths[i], sizeof s->teacher_paths[i], "%s", path);
    }
    return EXIT_OK;
}

/* Trains the default teacher, or reuses the one a previous run left in the cache: the file name is
 * a hash of everything that decides its weights (spec, protocol, seed, data). */
static int own_teacher(state *s)
{
    const options *o = s->o;
    run_config c;
    protocol(o, &c);
    char spec[4096], key_text[256], ckpt[4200];
    expand_spec(teacher_spec(o), spec, sizeof spec);
    c.name = "teacher";
    c.key = "teacher";
    c.spec = spec;
    c.epochs = o->teacher_epochs;
    c.warmup_epochs = o->warmup_auto ? 0 : o->warmup_epochs; /* the students' default is theirs */
    c.warmup_auto = 0;
    c.keep_best = 0; /* its cache key does not say which epoch */
    c.naugment = 0;  /* nor how the batches were augmented: --augment is for the students */
    c.temperature = 1.0f;
    c.alpha = c.beta = c.gamma = 0.0f;
    c.method = KD_LOSS_HINTON;
    c.standardize = 0;
    if (o->clip_auto) c.clip_norm = 0.0f; /* DIST's default clipping is the students' */
    c.checkpoint = checkpoint_of(o, ".teacher", ckpt, sizeof ckpt);
    /* " norm" only with --normalize, so teachers cached before the option existed stay valid. */
    snprintf(key_text, sizeof key_text, "%d %llu %d %d %.9g %.9g %.9g %.9g %d %d %d %.9g%s%s",
             c.optimizer, (unsigned long long)c.seed, c.epochs, c.batch, (double)c.lr,
             (double)c.momentum, (double)c.weight_decay, (double)c.min_lr, c.nesterov, c.cosine,
             c.warmup_epochs, (double)c.clip_norm, c.normalize ? " norm" : "",
             c.drop_last == 1 ? " drop" : "");
    uint64_t key = hash_str(hash_str(s->data_hash, spec), key_text);
    char *path = s->teacher_paths[0], side[4200];
    snprintf(path, sizeof s->teacher_paths[0], "%s/teacher-%016llx.safetensors", s->cache,
             (unsigned long long)key);
    snprintf(side, sizeof side, "%s.run", path);
    if (kd_model_load(path, &s->teachers[0]) == KD_OK) {
        if (history_load(side, key, &s->teacher_hist) != 0) s->teacher_hist.n = 0;
        s->nt = 1;
        note(&s->p, "teacher: reusing %s (%s, %d epochs)", path, teacher_spec(o), c.epochs);
        return EXIT_OK;
    }
    note(&s->p, "teacher: training %s for %d epochs; it will be kept as %s", teacher_spec(o),
         c.epochs, path);
    static run_result r;
    int rc = run_training(&c, s->d.train, eval_set(s), s->d.test, &s->p, &r);
    if (rc != EXIT_OK || r.stopped) {
        kd_model_destroy(r.model);
        return rc != EXIT_OK ? rc : -1;
    }
    s->teachers[0] = r.model;
    s->nt = 1;
    s->teacher_hist = r.hist;
    kd_status st = par_rank() == 0 ? kd_model_save(r.model, path) : KD_OK;
    if (st != KD_OK) return fail_kd("cannot keep the teacher in the cache", st);
    if (par_rank() == 0 && history_save(side, key, &r.hist, spec) != 0)
        fail_msg("warning: cannot write %s: %s", side, strerror(errno));
    return EXIT_OK;
}

static int check_teachers(state *s)
{
    for (int i = 0; i < s->nt; i++) {
        char what[4200];
        snprintf(what, sizeof what, "teacher %s", s->teacher_paths[i]);
        int rc = check_fits(what, s->teachers[i], s->d.train, s->d.test);
        if (rc != EXIT_OK) return rc;
    }
    s->teacher_hash = HASH_SEED;
    for (int i = 0; i < s->nt; i++) {
        if (hash_file(s->teacher_paths[i], &s->teacher_hash) != 0) {
            fail_msg("cannot read %s: %s", s->teacher_paths[i], strerror(errno));
            return EXIT_RUNTIME;
        }
    }
    return EXIT_OK;
}

static int get_logits(state *s)
{
    const options *o = s->o;
    uint64_t print = hash_bytes(s->teacher_hash, &s->data_hash, sizeof s->data_hash);
    char path[4200];
    const char *cache = o->soft_cache;
    if (cache == NULL && s->own_teacher) {
        snprintf(path, sizeof path, "%s/logits-%016llx.safetensors", s->cache,
                 (unsigned long long)print);
        cache = path;
    }
    return teacher_logits(s->teachers, s->nt, s->d.train, cache, print, &s->p, &s->logits);
}

/* ---- wins (issue 12): a feature --method's layers and shapes, checked before any training */
static int plan_feature(state *s)
{
    s->feature.kind = -1;
    if (s->o->feature < 0) return EXIT_OK;
    kd_model *m = NULL;
    int rc = create_model("student", student_spec(s->o), 1, &m);
    if (rc == EXIT_OK) rc = feature_plan(s->o, m, s->teachers[0], &s->feature);
    kd_model_destroy(m);
    if (rc == EXIT_OK)
        note(&s->p, "feature term: %s, weight %g, %s", feature_title(s->feature.kind),
             (double)s->feature.weight, s->feature.shapes);
    return rc;
}

/* --teacher-logits FILE: [n, classes] or [teachers, n, classes] float logits of the training set,
 * from a .npy (read as examples by kd_dataset_load_npy: [n, k] is k x 1 x 1, [t, n, k] is
 * 1 x n x k) or a safetensors file's tensor "logits". */
static int logits_file(state *s)
{
    const char *path = s->o->teacher_logits;
    int64_t dims[KD_TENSORS_MAX_DIMS] = {0}, t = 0, n = 0, k = 0;
    const float *src = NULL;
    kd_dataset *d = NULL;
    kd_tensors *ts = NULL;
    kd_status st;
    if (ends_with(path, ".npy")) {
        st = kd_dataset_load_npy(path, NULL, &d);
        if (st == KD_OK) {
            int64_t a, c, h, w;
            kd_dataset_size(d, &a);
            kd_dataset_shape(d, &c, &h, &w);
            if (c == 1 && h > 1) /* [t, n, k] */
                t = a, n = h, k = w;
            else if (h == 1 && w == 1) /* [n, k] */
                t = 1, n = a, k = c;
            src = kd_dataset_images(d);
        }
    } else {
        st = kd_tensors_load(path, &ts);
        int32_t found = 0, ndim = 0;
        kd_dtype dt = KD_DTYPE_F32;
        if (st == KD_OK) st = kd_tensors_has(ts, "logits", &found);
        if (st == KD_OK && found) st = kd_tensors_info(ts, "logits", &dt, &ndim, dims);
        if (st == KD_OK && found && dt == KD_DTYPE_F32 && (ndim == 2 || ndim == 3)) {
            t = ndim == 3 ? dims[0] : 1;
            n = dims[ndim - 2];
            k = dims[ndim - 1];
            const void *p;
            st = kd_tensors_data(ts, "logits", &p, NULL);
            src = p;
        } else if (st == KD_OK) {
            kd_tensors_destroy(ts);
            fail_msg("--teacher-logits %s: no float32 tensor \"logits\" of 2 or 3 dimensions",
                     path);
            return EXIT_RUNTIME;
        }
    }
    int rc = EXIT_OK;
    if (st != KD_OK) {
        char what[4200];
        snprintf(what, sizeof what, "cannot read --teacher-logits %s", path);
        rc = fail_kd(what, st);
    }
    int64_t ntrain, classes = 0;
    kd_dataset_size(s->d.train, &ntrain);
    kd_model *m = NULL;
    if (rc == EXIT_OK && (rc = create_model("student", student_spec(s->o), 1, &m)) == EXIT_OK)
        kd_model_output_size(m, &classes);
    kd_model_destroy(m);
    if (rc == EXIT_OK && (t < 1 || t > MAX_TEACHERS || n != ntrain || k != classes)) {
        fail_msg("--teacher-logits %s holds %lld x %lld x %lld logits (teachers x examples x "
                 "classes); the training set has %lld examples and the student %lld classes (at "
                 "most %d teachers)",
                 path, (long long)t, (long long)n, (long long)k, (long long)ntrain,
                 (long long)classes, MAX_TEACHERS);
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK && (s->logits = malloc(sizeof(float) * (size_t)(t * n * k))) == NULL) {
        fail_msg("out of memory for the teachers' logits");
        rc = EXIT_RUNTIME;
    }
    if (rc == EXIT_OK) {
        memcpy(s->logits, src, sizeof(float) * (size_t)(t * n * k));
        s->nlogits = (int)t;
        s->teacher_hash = HASH_SEED;
        if (hash_file(path, &s->teacher_hash) != 0) s->teacher_hash = 0;
        note(&s->p, "teacher logits: %lld examples x %lld teacher%s from %s", (long long)n,
             (long long)t, t > 1 ? "s" : "", path);
    }
    kd_dataset_destroy(d);
    kd_tensors_destroy(ts);
    return rc;
}

/* The distilled run's config; spec must outlive c. */
static void distilled_config(state *s, uint64_t seed, char *spec, size_t size, run_config *c)
{
    const options *o = s->o;
    expand_spec(student_spec(o), spec, size);
    protocol(o, c);
    c->seed = seed;
    c->name = "distilled";
    c->key = "distilled";
    c->spec = spec;
    static const float ones[MAX_TEACHERS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    c->teachers = s->nt > 0 ? s->teachers : NULL;
    c->teacher_weights = o->nteachers > 0 ? o->teacher_weights : ones;
    c->nteachers = s->nt > 0 ? s->nt : s->nlogits;
    c->teacher_logits = s->logits;
    c->teacher_hash =
        hash_bytes(s->teacher_hash, c->teacher_weights, sizeof(float) * (size_t)c->nteachers);
    c->checkpoint = o->checkpoint;
}

/* ---- wins (issue 12): --auto picks the settings of the runs that follow */
static int auto_tune(state *s)
{
    static options tuned;
    char spec[4096];
    run_config c;
    distilled_config(s, s->o->seed, spec, sizeof spec, &c);
    double t0 = now_seconds();
    int rc = tune(s->o, &c, s->d.train, s->d.val, s->d.test, &s->p, &tuned);
    if (rc != EXIT_OK) return rc;
    note(&s->p, "search: %.0f s", now_seconds() - t0);
    s->o = &tuned;
    char method[128];
    describe_method(s->o, method, sizeof method);
    note(&s->p, "the final runs: %s, lr %g", method, (double)s->o->lr);
    return EXIT_OK;
}

static int train_students(state *s, uint64_t seed)
{
    const options *o = s->o;
    char spec[4096], ckpt[4200];
    expand_spec(student_spec(o), spec, sizeof spec);
    run_config c;
    protocol(o, &c);
    c.seed = seed;
    c.name = "distilled";
    c.key = "distilled";
    c.spec = spec;
    static const float ones[MAX_TEACHERS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    c.teachers = s->nt > 0 ? s->teachers : NULL;
    c.teacher_weights = o->nteachers > 0 ? o->teacher_weights : ones;
    c.nteachers = s->nt > 0 ? s->nt : s->nlogits;
    c.teacher_logits = s->logits;
    c.teacher_hash =
        hash_bytes(s->teacher_hash, c.teacher_weights, sizeof(float) * (size_t)c.nteachers);
    c.checkpoint = o->checkpoint;
    c.feature = s->feature.kind >= 0 ? &s->feature : NULL;
    c.init = o->init;
    c.fake_quant = o->quantize != NULL;
    int rc = run_training(&c, s->d.train, eval_set(s), s->d.test, &s->p, &s->distilled);
    if (rc != EXIT_OK || s->distilled.stopped || !s->compare) return rc;
    /* The same student, seed and batches without the teacher: the loss is the only difference
     * (and its learning rate the user's, when --auto chose another for distillation). */
    protocol(s->user, &c);
    c.seed = seed;
    c.name = "student alone";
    c.key = "alone";
    c.spec = spec;
    c.temperature = 1.0f;
    c.alpha = c.beta = c.gamma = 0.0f;
    c.method = KD_LOSS_HINTON;
    c.standardize = 0;
    c.checkpoint = checkpoint_of(o, ".alone", ckpt, sizeof ckpt);
    return run_training(&c, s->d.train, eval_set(s), s->d.test, &s->p, &s->alone);
}

/* Whether --auto's winner trains the distilled student with other options than the given ones
 * (the student alone keeps those); when the default won, only the loss differs. */
static int auto_changed(const state *s)
{
    const options *a = s->user, *b = s->o;
    return a != NULL && a != b &&
           (a->method != b->method || a->standardize != b->standardize ||
            a->temperature != b->temperature || a->alpha != b->alpha || a->beta != b->beta ||
            a->gamma != b->gamma || a->lr != b->lr || a->clip_norm != b->clip_norm);
}

static double last_acc(const run_result *r);

/* --seeds N: the students again with seeds seed + 1 .. seed + N - 1, their accuracies kept; the
 * models of the first seed are the ones saved and measured. */
static int more_seeds(state *s)
{
    kd_model *q = NULL;
    double fq_acc = s->distilled.test_acc;
    if (s->o->quantize != NULL) {
        int rc = to_int8(s->distilled.model, s->d.test, &q, &s->distilled.test_acc);
        kd_model_destroy(q);
        if (rc != EXIT_OK) return rc;
    }
    s->acc[0][0] = last_acc(&s->distilled);
    s->distilled.test_acc = fq_acc;
    if (s->compare) s->acc[1][0] = last_acc(&s->alone);
    s->nseeds = 1;
    run_result keep_d = s->distilled, keep_a = s->alone;
    int rc = EXIT_OK;
    for (int k = 1; k < s->o->seeds && rc == EXIT_OK; k++) {
        memset(&s->distilled, 0, sizeof s->distilled);
        memset(&s->alone, 0, sizeof s->alone);
        note(&s->p, "seed %llu (%d of %d)", (unsigned long long)(s->o->seed + (uint64_t)k), k + 1,
             s->o->seeds);
        rc = train_students(s, s->o->seed + (uint64_t)k);
        kd_model *q = NULL;
        if (rc == EXIT_OK && s->o->quantize != NULL)
            rc = to_int8(s->distilled.model, s->d.test, &q, &s->distilled.test_acc);
        kd_model_destroy(q);
        if (rc == EXIT_OK) {
            s->acc[0][k] = last_acc(&s->distilled);
            if (s->compare) s->acc[1][k] = last_acc(&s->alone);
            s->nseeds++;
        }
        kd_model_destroy(s->distilled.model);
        kd_model_destroy(s->alone.model);
    }
    s->distilled = keep_d;
    s->alone = keep_a;
    return rc;
}

static void mean_std(const double *x, int n, double *mean, double *sd)
{
    double m = 0.0, v = 0.0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(v / (n - 1)) : 0.0; /* the sample standard deviation */
}

static void print_seeds(const state *s)
{
    if (s->nseeds < 2) return;
    double m, sd;
    printf("\nOver %d seeds (%llu to %llu), test accuracy, mean +- sample standard deviation:\n",
           s->nseeds, (unsigned long long)s->o->seed,
           (unsigned long long)(s->o->seed + (uint64_t)s->nseeds - 1));
    mean_std(s->acc[0], s->nseeds, &m, &sd);
    printf("  %-18s %6.2f%% +- %.2f\n",
           s->o->quantize != NULL ? "int8 student (QAT)" : "distilled student", m, sd);
    if (!s->compare) return;
    mean_std(s->acc[1], s->nseeds, &m, &sd);
    printf("  student alone      %6.2f%% +- %.2f\n", m, sd);
    double gain[100];
    for (int i = 0; i < s->nseeds; i++) gain[i] = s->acc[0][i] - s->acc[1][i];
    mean_std(gain, s->nseeds, &m, &sd);
    printf("  gain               %+6.2f points +- %.2f\n", m, sd);
}

static int save(const char *path, kd_model *m)
{
    kd_status st = par_rank() == 0 ? kd_model_save(m, path) : KD_OK;
    if (st == KD_OK) return EXIT_OK;
    char what[4300];
    snprintf(what, sizeof what, "cannot save %s", path);
    return fail_kd(what, st);
}

static double last_acc(const run_result *r) { return r->test_acc; }

static int collect(state *s, model_stats *stats, int *n)
{
    int rc = EXIT_OK;
    *n = 0;
    for (int i = 0; i < s->nt && rc == EXIT_OK; i++) {
        double acc;
        char name[32];
        snprintf(name, sizeof name, s->nt > 1 ? "teacher %d" : "teacher", i + 1);
        rc = test_accuracy(s->teachers[i], s->d.test, &acc);
        if (rc == EXIT_OK)
            rc = fill_stats(&stats[(*n)++], name, s->teachers[i], s->teacher_paths[i], s->d.test,
                            acc);
    }
    if (rc == EXIT_OK && s->compare)
        rc = fill_stats(&stats[(*n)++], "student alone", s->alone.model, s->alone_out, s->d.test,
                        last_acc(&s->alone));
    if (rc == EXIT_OK)
        rc = fill_stats(&stats[(*n)++],
                        s->o->quantize != NULL ? "int8 student (QAT)" : "distilled student",
                        s->distilled.model, s->out, s->d.test, last_acc(&s->distilled));
    return rc;
}

static void summary(const state *s, const model_stats *st, int n, char *out, size_t size)
{
    const model_stats *t = &st[0], *k = &st[n - 1];
    size_t used;
    if (s->nt == 0) /* --teacher-logits: no teacher model to compare with */
        used = (size_t)snprintf(out, size,
                                "The student distilled from the logits of %s reaches %.2f%% "
                                "test accuracy",
                                s->o->teacher_logits, k->accuracy);
    else { /* a student slower than its teacher (a CNN from an MLP) says so */
        double speed = t->latency_us / k->latency_us;
        used = (size_t)snprintf(
            out, size,
            "The distilled student keeps %.1f%% of the teacher's accuracy with %.1f%% of its "
            "parameters and runs %.1fx %s",
            100.0 * k->accuracy / t->accuracy, 100.0 * (double)k->params / (double)t->params,
            speed >= 1.0 ? speed : 1.0 / speed, speed >= 1.0 ? "faster" : "slower");
    }
    if (s->compare && used < size && s->nseeds > 1) {
        double gain[100], m, sd;
        for (int i = 0; i < s->nseeds; i++) gain[i] = s->acc[0][i] - s->acc[1][i];
        mean_std(gain, s->nseeds, &m, &sd);
        used += (size_t)snprintf(out + used, size - used,
                                 "; over %d seeds distillation %s %.2f +- %.2f points over the "
                                 "student alone",
                                 s->nseeds, m >= 0 ? "gained" : "lost", fabs(m), sd);
    } else if (s->compare && used < size) {
        double gain = k->accuracy - st[n - 2].accuracy;
        used += (size_t)snprintf(out + used, size - used,
                                 "; distillation %s %.2f points over the student alone",
                                 gain >= 0 ? "gained" : "lost", gain >= 0 ? gain : -gain);
    }
    if (s->compare && auto_changed(s) && used < size) /* --auto: not the loss alone */
        used += (size_t)snprintf(out + used, size - used,
                                 " (the distilled student with --auto's choices, the student "
                                 "alone with the given ones)");
    if (used + 1 < size) snprintf(out + used, size - used, ".");
}

static int write_report(state *s, const model_stats *stats, int n, const char *headline)
{
    const options *o = s->o;
    char subtitle[1200], data[400], notes[900], proto[256], method[128];
    describe_data(o, &s->d, data, sizeof data);
    describe_protocol(o, proto, sizeof proto);
    describe_method(o, method, sizeof method);
    char teacher[64] = "";
    if (s->own_teacher) snprintf(teacher, sizeof teacher, ", teacher %d", o->teacher_epochs);
    /* --auto: o is the search's winner, which only the distilled run uses */
    int tuned = auto_changed(s);
    snprintf(subtitle, sizeof subtitle,
             "%s. %s: %s; students %d epochs%s. Distillation: %s. libkd %s, kernels %s.", data,
             tuned ? "The distilled run (--auto's choice)" : "Every run", proto, o->epochs, teacher,
             method, kd_version(), kd_kernels_name());
    snprintf(notes, sizeof notes,
             "%sTraining cross-entropy is measured against the labels on the batches as they were "
             "trained. Latency is the median time of one image at batch 1; speed-up is relative "
             "to the first teacher.",
             !s->compare ? ""
             : tuned     ? "The student alone and the distilled student start from the same "
                           "weights and see the same batches; the student alone keeps the given "
                           "options while the distilled student trains with those --auto chose, "
                           "so the gain mixes the loss and that choice. "
                         : "The student alone and the distilled student start from the same "
                           "weights and see the same batches; only the loss differs. ");
    report_series series[3];
    int ns = 0;
    if (s->teacher_hist.n > 0)
        series[ns++] = (report_series){"teacher", "#6b7280", &s->teacher_hist};
    if (s->compare) series[ns++] = (report_series){"student alone", "#d97706", &s->alone.hist};
    series[ns++] = (report_series){"distilled student", "#059669", &s->distilled.hist};
    char title[300];
    snprintf(title, sizeof title, "Distilling %s into %s", stats[0].shape, stats[n - 1].shape);
    if (s->d.val != NULL) {
        size_t used = strlen(notes);
        snprintf(notes + used, sizeof notes - used,
                 " Per-epoch accuracy is on the validation split, held out of the training set; "
                 "the students kept are from their %s.",
                 o->keep_best ? "best epoch on validation" : "last epoch");
    }
    report rep = {title, subtitle, headline, series, ns, stats, n, 0, notes, s->d.val != NULL};
    int rc = report_write(o->report_dir, &rep);
    if (rc == EXIT_OK) note(&s->p, "report: %s/index.html", o->report_dir);
    return rc;
}

static int finish(state *s)
{
    if (s->o->quantize != NULL) { /* qat: the int8 model is the student kept */
        kd_model *q = NULL;
        double fq_acc = s->distilled.test_acc;
        int rc = to_int8(s->distilled.model, s->d.test, &q, &s->distilled.test_acc);
        if (rc != EXIT_OK) {
            kd_model_destroy(q);
            return rc;
        }
        note(&s->p, "quantisation-aware: %.2f%% with fake quantisation, %.2f%% as int8", fq_acc,
             s->distilled.test_acc);
        kd_model_destroy(s->distilled.model);
        s->distilled.model = q;
    }
    int rc = save(s->out, s->distilled.model);
    if (rc == EXIT_OK && s->compare) rc = save(s->alone_out, s->alone.model);
    model_stats stats[MAX_TEACHERS + 2];
    int n = 0;
    if (rc == EXIT_OK) rc = collect(s, stats, &n);
    if (rc != EXIT_OK) return rc;
    int64_t ntest;
    kd_dataset_size(s->d.test, &ntest);
    printf("\nOn %lld test images (latency: one image at a time, median; kernels %s):\n\n",
           (long long)ntest, kd_kernels_name());
    print_comparison(stdout, stats, n, 0);
    if (s->nseeds > 1) printf("\n(the table: seed %llu)\n", (unsigned long long)s->o->seed);
    if (s->d.val != NULL)
        printf("\nStudents kept: %s (--keep %s). Per-epoch accuracy was measured on the "
               "validation split; the test set serves this table only.\n",
               s->o->keep_best ? "the best epoch on validation" : "the last epoch",
               s->o->keep_best ? "best" : "last");
    print_seeds(s);
    char headline[400];
    summary(s, stats, n, headline, sizeof headline);
    printf("\n%s\n", headline);
    printf("distilled student: %s%s%s\n", s->out, s->compare ? "; student alone: " : "",
           s->compare ? s->alone_out : "");
    char t[64];
    snprintf(t, sizeof t, "%.0f s", now_seconds() - s->start);
    note(&s->p, "wall time %s", t);
    return s->o->report_dir != NULL ? write_report(s, stats, n, headline) : EXIT_OK;
}

/* The student, and the teacher kd would train, fit the data: refused before any training. */
static int check_specs_fit(const state *s)
{
    int rc = EXIT_OK;
    for (int k = 0; k < 2 && rc == EXIT_OK; k++) {
        if (k == 1 && !s->own_teacher) break;
        kd_model *m = NULL;
        rc = create_model(k == 0 ? "student" : "teacher",
                          k == 0 ? student_spec(s->o) : teacher_spec(s->o), 1, &m);
        if (rc == EXIT_OK)
            rc = check_fits(k == 0 ? "student" : "teacher", m, s->d.train, s->d.test);
        kd_model_destroy(m);
    }
    return rc;
}

static int pipeline(state *s)
{
    const options *o = s->o;
    int rc = load_data(o, 1, 1, &s->d);
    if (rc != EXIT_OK) return rc;
    if (o->val_fraction > 0) { /* every choice on validation; the test set only reported */
        kd_dataset *val;       /* the rest stays in place: no second copy of the training set */
        kd_status st = kd_dataset_hold_out(s->d.train, o->val_fraction, o->seed, &val);
        if (st != KD_OK) return fail_kd("--val", st);
        s->d.val = val;
        s->p.eval_name = "val";
    }
    char data[400];
    describe_data(o, &s->d, data, sizeof data);
    note(&s->p, "data: %s", data);
    char proto[256];
    describe_protocol(o, proto, sizeof proto);
    char method[128];
    describe_method(o, method, sizeof method);
    note(&s->p, "libkd %s, kernels %s; %s; %s", kd_version(), kd_kernels_name(), proto, method);
    s->data_hash = dataset_hash(s->d.train);
    if ((rc = check_specs_fit(s)) != EXIT_OK) return rc;
    if (o->teacher_logits != NULL) {
        rc = logits_file(s);
    } else {
        rc = s->own_teacher ? own_teacher(s) : load_teachers(s);
        if (rc == EXIT_OK) rc = check_teachers(s);
        if (rc == EXIT_OK) rc = plan_feature(s);
        /* --augment: the teachers run on each augmented batch; cached logits would go unused */
        if (rc == EXIT_OK && o->naugment == 0) rc = get_logits(s);
    }
    if (rc == EXIT_OK && o->auto_tune) rc = auto_tune(s);
    if (rc == EXIT_OK) rc = train_students(s, o->seed);
    if (rc != EXIT_OK) return rc;
    if (s->distilled.stopped || (s->compare && s->alone.stopped)) return -1;
    if (o->seeds > 1 && (rc = more_seeds(s)) != EXIT_OK) return rc;
    return finish(s);
}

int cmd_distill(const options *o)
{
    static state s; /* large (histories); one per process */
    memset(&s, 0, sizeof s);
    s.o = o;
    s.user = o;
    s.start = now_seconds();
    int rc = prepare(&s);
    if (rc == EXIT_OK) rc = progress_open(&s.p, o);
    if (rc == EXIT_OK) {
        rc = pipeline(&s);
        if (rc == -1) {
            note(&s.p, "stopped after epoch %d as asked; continue with --resume", o->stop_after);
            rc = EXIT_OK;
        }
    }
    kd_model_destroy(s.distilled.model);
    kd_model_destroy(s.alone.model);
    for (int i = 0; i < s.nt; i++) kd_model_destroy(s.teachers[i]);
    free(s.logits);
    free_data(&s.d);
    int logged = progress_close(&s.p);
    return rc != EXIT_OK ? rc : logged;
}
