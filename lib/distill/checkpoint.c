/* Training checkpoints: the student's tensors, the optimizer's step and per-parameter state, and the
 * layers' random streams, in one safetensors file, so a resumed run continues bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "distill/losses/losses.h"
#include "distill/trainer.h"
#include "io/atomic.h"
#include "optim/optim.h"

#define KIND_KEY KDI_CHECKPOINT_KEY
#define STEP_NAME "optimizer.step"

/* Every tensor of a checkpoint, named: the student's, "optimizer.<param>.<state>",
 * "optimizer.step", "rng.<layer>", and for each feature term k with a regressor the same under
 * "regressor.<k>." ("regressor.<k>.<param>", "optimizer.regressor.<k>.<param>.<state>",
 * "rng.regressor.<k>.<layer>"; its step is the student's), and for a CRD term k its memory of
 * teacher embeddings, "crd.<k>.memory" [K, d], and the slot it writes next, "crd.<k>.next" (both
 * optional on load: a checkpoint older than them keeps the seeded memory). Names and data stay
 * owned by the models, optimizers and losses (names in *names, one block). */
typedef struct entries {
    kdi_st_tensor *t;
    char (*names)[160];
    int32_t n;
    int32_t first_optional; /* entries from here on may be missing from a file */
} entries;

/* Frees and empties e, so freeing it twice is harmless: every error path may call it. */
static void entries_free(entries *e)
{
    kdi_free(e->t);
    kdi_free(e->names);
    *e = (entries){0};
}

static int32_t count_rngs(const kdi_seq *s)
{
    int32_t n = 0;
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        n += l->rng != NULL;
        const char *name;
        kdi_seq *c;
        for (int32_t k = 0; l->ops->child != NULL && (c = l->ops->child(l, k, &name)) != NULL; k++)
            n += count_rngs(c);
    }
    return n;
}

static int32_t entries_needed(const kd_model *m)
{
    return kdi_model_params(m)->n * (1 + KDI_OPT_MAX_STATE) + count_rngs(&m->seq);
}

/* The random streams of s and of the sequences inside its layers: "rng.<prefix><i>",
 * "rng.<prefix><i>.body.<j>", ... */
static void add_rngs(entries *e, const char *prefix, const kdi_seq *s)
{
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        if (l->rng != NULL) {
            e->t[e->n] = (kdi_st_tensor){
                .dtype = KDI_ST_I64, .ndim = 1, .dims = {4}, .data = l->rng->s, .nbytes = 32};
            snprintf(e->names[e->n++], sizeof e->names[0], "rng.%s%d", prefix, (int)i);
        }
        const char *name;
        kdi_seq *c;
        for (int32_t k = 0; l->ops->child != NULL && (c = l->ops->child(l, k, &name)) != NULL;
             k++) {
            char inner[128];
            snprintf(inner, sizeof inner, "%s%d.%s.", prefix, (int)i, name);
            add_rngs(e, inner, c);
        }
    }
}

/* Appends one model's tensors, its optimizer's state and its layers' random streams. */
static void entries_add(entries *e, const char *prefix, const kd_model *m, const kd_optimizer *o)
{
    const kdi_param_list *ps = kdi_model_params(m);
    for (int32_t i = 0; i < ps->n; i++) {
        const kdi_param *p = ps->items[i].p;
        kdi_st_tensor *t = &e->t[e->n];
        snprintf(e->names[e->n], sizeof e->names[0], "%s%s", prefix, ps->items[i].name);
        t->dtype = kdi_param_dtype(p);
        t->ndim = p->ndim;
        memcpy(t->dims, p->dims, sizeof p->dims);
        t->data = kdi_param_data(p);
        t->nbytes = kdi_param_bytes(p);
        e->n++;
        for (int32_t j = 0; j < o->ops->nstate; j++) {
            float *buf = o->state[i * o->ops->nstate + j];
            if (buf == NULL) continue;
            t = &e->t[e->n];
            snprintf(e->names[e->n], sizeof e->names[0], "optimizer.%s%s.%s", prefix,
                     ps->items[i].name, o->ops->state_names[j]);
            t->dtype = KDI_ST_F32;
            t->ndim = 1;
            t->dims[0] = p->count;
            t->data = buf;
            t->nbytes = p->count * 4;
            e->n++;
        }
    }
    add_rngs(e, prefix, &m->seq);
}

static kd_status entries_build(const kd_trainer *tr, const int64_t *step, entries *e)
{
    int32_t cap = entries_needed(tr->student) + 1 + 2 * tr->nterms;
    kd_model *rm;
    kd_optimizer *ro;
    for (int32_t k = 0; k < tr->nterms; k++)
        if (kdi_trainer_regressor(tr, k, &rm, &ro)) cap += entries_needed(rm);
    e->t = kdi_calloc((size_t)cap, sizeof *e->t);
    e->names = kdi_calloc((size_t)cap, sizeof *e->names);
    e->n = 0;
    if (e->t == NULL || e->names == NULL) {
        entries_free(e); /* and emptied: the caller's entries_free finds nothing to free again */
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate the checkpoint's tensor list");
    }
    entries_add(e, "", tr->student, tr->opt);
    e->t[e->n] =
        (kdi_st_tensor){.dtype = KDI_ST_I64, .ndim = 1, .dims = {1}, .data = step, .nbytes = 8};
    snprintf(e->names[e->n++], sizeof e->names[0], STEP_NAME);
    for (int32_t k = 0; k < tr->nterms; k++) {
        if (!kdi_trainer_regressor(tr, k, &rm, &ro)) continue;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "regressor.%d.", (int)k);
        entries_add(e, prefix, rm, ro);
    }
    e->first_optional = e->n;
    for (int32_t k = 0; k < tr->nterms; k++) {
        kd_feature_loss *l;
        int64_t d;
        if (!kdi_trainer_crd(tr, k, &l, &d)) continue;
        /* Built now if no step has built it yet: the seeded memory the first step would make. */
        int64_t rows = (int64_t)l->opt[KD_FEATURE_CRD_NEGATIVES];
        kd_status st = kdi_crd_memory_ready(l, rows, d);
        if (st != KD_OK) {
            entries_free(e);
            return kdi_fail(st, "cannot allocate CRD's memory of %lld x %lld", (long long)rows,
                            (long long)d);
        }
        e->t[e->n] = (kdi_st_tensor){.dtype = KDI_ST_F32,
                                     .ndim = 2,
                                     .dims = {rows, d},
                                     .data = l->crd_memory.data,
                                     .nbytes = rows * d * 4};
        snprintf(e->names[e->n++], sizeof e->names[0], "crd.%d.memory", (int)k);
        e->t[e->n] = (kdi_st_tensor){
            .dtype = KDI_ST_I64, .ndim = 1, .dims = {1}, .data = &l->crd_next, .nbytes = 8};
        snprintf(e->names[e->n++], sizeof e->names[0], "crd.%d.next", (int)k);
    }
    for (int32_t i = 0; i < e->n; i++) e->t[i].name = e->names[i];
    return KD_OK;
}

static kd_status checkpoint_save(const kd_trainer *tr, const char *path)
{
    KDI_CHECK_NULL(path);
    entries e;
    int64_t step = tr->opt->step;
    KDI_TRY(entries_build(tr, &step, &e));
    /* Format 2 records the student's input normalisation, so that kd_model_load can read the
     * student from a checkpoint; format 1 (no key) did not. */
    const kd_model *m = tr->student;
    const char *keys[6] = {"kd.spec", KIND_KEY, "kd.version", KDI_CHECKPOINT_FORMAT_KEY};
    const char *values[6] = {m->spec, tr->opt->ops->name, kd_version(), "2"};
    int32_t nmeta = 4;
    char *mean, *std;
    kd_status st = kdi_norm_meta(m, keys, values, &nmeta, &mean, &std);
    if (st == KD_OK) st = kdi_st_write(path, e.t, e.n, keys, values, nmeta);
    kdi_free(mean);
    kdi_free(std);
    entries_free(&e);
    return st;
}

/* Every tensor the checkpoint must hold for m and o, with the right dtype and size. */
static kd_status check_entries(const entries *want, const kdi_st_file *f, const char *path)
{
    int32_t found = 0;
    for (int32_t i = 0; i < want->n; i++) {
        const kdi_st_tensor *t = kdi_st_find(f, want->t[i].name);
        if (t == NULL && i >= want->first_optional) continue;
        if (t == NULL)
            return kdi_fail(KD_ERR_FORMAT, "%s has no tensor '%s'", path, want->t[i].name);
        found++;
        if (t->dtype != want->t[i].dtype || t->nbytes != want->t[i].nbytes)
            return kdi_fail(KD_ERR_SHAPE, "%s: tensor '%s' has the wrong dtype or size", path,
                            want->t[i].name);
    }
    if (f->n != found)
        return kdi_fail(KD_ERR_FORMAT, "%s holds %d tensors, this trainer expects %d", path,
                        (int)f->n, (int)found);
    return KD_OK;
}

/* Validates the whole file against the trainer before changing anything. */
static kd_status checkpoint_load(kd_trainer *tr, const char *path)
{
    kd_model *m = tr->student;
    kd_optimizer *o = tr->opt;
    KDI_CHECK_NULL(path);
    kdi_clean_stale_temps(path); /* a resume after a kill: what the killed save left */
    kdi_st_file f;
    KDI_TRY(kdi_st_read(path, &f));
    entries e = {0};
    int64_t step = 0;
    kd_status st = KD_OK;
    const char *spec = kdi_st_meta(&f, "kd.spec"), *kind = kdi_st_meta(&f, KIND_KEY);
    if (spec == NULL || kind == NULL)
        st =
            kdi_fail(KD_ERR_FORMAT, "%s is not a libkd checkpoint (no kd.spec/" KIND_KEY ")", path);
    else if (strcmp(spec, m->spec) != 0)
        st = kdi_fail(KD_ERR_SHAPE, "%s was saved for '%s', the student is '%s'", path, spec,
                      m->spec);
    else if (strcmp(kind, o->ops->name) != 0)
        st = kdi_fail(KD_ERR_STATE, "%s holds %s state, the optimizer is %s", path, kind,
                      o->ops->name);
    if (st == KD_OK) st = kdi_model_check_file(m, &f, path, 0);
    if (st == KD_OK) st = entries_build(tr, &step, &e);
    if (st == KD_OK) st = check_entries(&e, &f, path);
    if (st == KD_OK) {
        const kdi_st_tensor *s = kdi_st_find(&f, STEP_NAME);
        memcpy(&step, s->data, 8);
        if (step < 0) st = kdi_fail(KD_ERR_FORMAT, "%s: negative optimizer step", path);
    }
    for (int32_t i = e.first_optional; st == KD_OK && i + 1 < e.n; i += 2) {
        /* crd.<k>.memory [K, d] then crd.<k>.next, which must name one of the K rows */
        const kdi_st_tensor *t = kdi_st_find(&f, e.t[i + 1].name);
        int64_t next = 0;
        if (t != NULL) memcpy(&next, t->data, 8);
        if (next < 0 || next >= e.t[i].dims[0])
            st = kdi_fail(KD_ERR_FORMAT, "%s: '%s' is %lld, not a row of 0..%lld", path,
                          e.t[i + 1].name, (long long)next, (long long)e.t[i].dims[0] - 1);
    }
    if (st == KD_OK) {
        /* Everything checked: copy. The entries point at the live buffers, the step last. */
        for (int32_t i = 0; i < e.n; i++) {
            const kdi_st_tensor *t = kdi_st_find(&f, e.t[i].name);
            if (t != NULL && strcmp(e.t[i].name, STEP_NAME) != 0)
                memcpy((void *)e.t[i].data, t->data, (size_t)t->nbytes);
        }
        o->step = step;
    }
    entries_free(&e);
    kdi_st_free(&f);
    return st;
}

kd_status kd_trainer_save(const kd_trainer *t, const char *path)
{
    KDI_CHECK_NULL(t);
    return checkpoint_save(t, path);
}

kd_status kd_trainer_load(kd_trainer *t, const char *path)
{
    KDI_CHECK_NULL(t);
    return checkpoint_load(t, path);
}
