/* Training checkpoints: the student's tensors, the optimizer's step and per-parameter state, and the
 * layers' random streams, in one safetensors file, so a resumed run continues bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "optim.h"
#include "rng.h"
#include "trainer.h"

#define KIND_KEY "kd.checkpoint"
#define STEP_NAME "optimizer.step"

/* Every tensor of a checkpoint, named: the model's, "optimizer.<param>.<state>", "optimizer.step",
 * "rng.<layer>". Names and data stay owned by m and o (names in *names, one block). */
typedef struct entries {
    kdi_st_tensor *t;
    char (*names)[128];
    int32_t n;
} entries;

static void entries_free(entries *e)
{
    free(e->t);
    free(e->names);
}

static kd_status entries_build(const kd_model *m, const kd_optimizer *o, const int64_t *step,
                               entries *e)
{
    const kdi_param_list *ps = kdi_model_params(m);
    int32_t cap = ps->n * (1 + KDI_OPT_MAX_STATE) + 1 + m->seq.n;
    e->t = calloc((size_t)cap, sizeof *e->t);
    e->names = calloc((size_t)cap, sizeof *e->names);
    e->n = 0;
    if (e->t == NULL || e->names == NULL) {
        entries_free(e);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate the checkpoint's tensor list");
    }
    for (int32_t i = 0; i < ps->n; i++) {
        const kdi_param *p = ps->items[i].p;
        kdi_st_tensor *t = &e->t[e->n];
        snprintf(e->names[e->n], sizeof e->names[0], "%s", ps->items[i].name);
        t->dtype = p->ivalue != NULL ? KDI_ST_I64 : KDI_ST_F32;
        t->ndim = p->ndim;
        memcpy(t->dims, p->dims, sizeof p->dims);
        t->data = p->ivalue != NULL ? (const void *)p->ivalue : (const void *)p->value;
        t->nbytes = p->count * (p->ivalue != NULL ? 8 : 4);
        e->n++;
        for (int32_t j = 0; j < o->ops->nstate; j++) {
            float *buf = o->state[i * o->ops->nstate + j];
            if (buf == NULL) continue;
            t = &e->t[e->n];
            snprintf(e->names[e->n], sizeof e->names[0], "optimizer.%s.%s", ps->items[i].name,
                     o->ops->state_names[j]);
            t->dtype = KDI_ST_F32;
            t->ndim = 1;
            t->dims[0] = p->count;
            t->data = buf;
            t->nbytes = p->count * 4;
            e->n++;
        }
    }
    e->t[e->n] =
        (kdi_st_tensor){.dtype = KDI_ST_I64, .ndim = 1, .dims = {1}, .data = step, .nbytes = 8};
    snprintf(e->names[e->n++], sizeof e->names[0], STEP_NAME);
    for (int32_t i = 0; i < m->seq.n; i++) {
        const kdi_rng *r = m->seq.layers[i].rng;
        if (r == NULL) continue;
        e->t[e->n] = (kdi_st_tensor){
            .dtype = KDI_ST_I64, .ndim = 1, .dims = {4}, .data = r->s, .nbytes = 32};
        snprintf(e->names[e->n++], sizeof e->names[0], "rng.%d", (int)i);
    }
    for (int32_t i = 0; i < e->n; i++) e->t[i].name = e->names[i];
    return KD_OK;
}

kd_status kdi_checkpoint_save(const kd_model *m, const kd_optimizer *o, const char *path)
{
    KDI_CHECK_NULL(path);
    entries e;
    int64_t step = o->step;
    KDI_TRY(entries_build(m, o, &step, &e));
    const char *keys[] = {"kd.spec", KIND_KEY, "kd.version"};
    const char *values[] = {m->spec, o->ops->name, kd_version()};
    kd_status st = kdi_st_write(path, e.t, e.n, keys, values, 3);
    entries_free(&e);
    return st;
}

/* Every tensor the checkpoint must hold for m and o, with the right dtype and size. */
static kd_status check_entries(const entries *want, const kdi_st_file *f, const char *path)
{
    for (int32_t i = 0; i < want->n; i++) {
        const kdi_st_tensor *t = kdi_st_find(f, want->t[i].name);
        if (t == NULL)
            return kdi_fail(KD_ERR_FORMAT, "%s has no tensor '%s'", path, want->t[i].name);
        if (t->dtype != want->t[i].dtype || t->nbytes != want->t[i].nbytes)
            return kdi_fail(KD_ERR_SHAPE, "%s: tensor '%s' has the wrong dtype or size", path,
                            want->t[i].name);
    }
    if (f->n != want->n)
        return kdi_fail(KD_ERR_FORMAT, "%s holds %d tensors, this trainer expects %d", path,
                        (int)f->n, (int)want->n);
    return KD_OK;
}

kd_status kdi_checkpoint_load(kd_model *m, kd_optimizer *o, const char *path)
{
    KDI_CHECK_NULL(path);
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
    if (st == KD_OK) st = entries_build(m, o, &step, &e);
    if (st == KD_OK) st = check_entries(&e, &f, path);
    if (st == KD_OK) {
        const kdi_st_tensor *s = kdi_st_find(&f, STEP_NAME);
        memcpy(&step, s->data, 8);
        if (step < 0) st = kdi_fail(KD_ERR_FORMAT, "%s: negative optimizer step", path);
    }
    if (st == KD_OK) {
        /* Everything checked: copy. The entries point at the live buffers, the step last. */
        for (int32_t i = 0; i < e.n; i++) {
            const kdi_st_tensor *t = kdi_st_find(&f, e.t[i].name);
            if (strcmp(e.t[i].name, STEP_NAME) != 0)
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
    return kdi_checkpoint_save(t->student, t->opt, path);
}

kd_status kd_trainer_load(kd_trainer *t, const char *path)
{
    KDI_CHECK_NULL(t);
    return kdi_checkpoint_load(t->student, t->opt, path);
}
