/* Models in safetensors files: PyTorch state-dict names and layouts, the spec in __metadata__. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/limits.h"
#include "io/safetensors.h"
#include "nn/model.h"

#define SPEC_KEY "kd.spec"

kd_status kd_model_save(const kd_model *m, const char *path)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(path);
    int32_t n = m->params.n;
    kdi_st_tensor *t = kdi_calloc((size_t)(n > 0 ? n : 1), sizeof *t);
    if (t == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate the tensor list");
    for (int32_t i = 0; i < n; i++) {
        const kdi_param *p = m->params.items[i].p;
        t[i].name = m->params.items[i].name;
        t[i].dtype = kdi_param_dtype(p);
        t[i].ndim = p->ndim;
        memcpy(t[i].dims, p->dims, sizeof p->dims);
        t[i].data = kdi_param_data(p);
        t[i].nbytes = kdi_param_bytes(p);
    }
    /* "format": "pt" is what PyTorch's safetensors loader expects to find. */
    const char *keys[6] = {SPEC_KEY, "kd.version", "format", "kd.quant"};
    const char *values[6] = {m->spec, kd_version(), "pt"};
    int32_t nmeta = 3;
    /* Int8 models (nn/layers/int8.c) say so, for readers other than libkd (ONNX export). */
    if (kdi_model_is_int8(m)) values[nmeta++] = "int8";
    char *mean, *std;
    kd_status st = kdi_norm_meta(m, keys, values, &nmeta, &mean, &std);
    if (st == KD_OK) st = kdi_st_write(path, t, n, keys, values, nmeta);
    kdi_free(mean);
    kdi_free(std);
    kdi_free(t);
    return st;
}

/* Checks that tensor t can fill parameter p. */
static kd_status check_tensor(const kdi_named_param *np, const kdi_st_tensor *t)
{
    const kdi_param *p = np->p;
    kdi_st_dtype want = kdi_param_dtype(p);
    static const char *const names[] = {"F32", "I64", "?", "I32", "I8", "U8"};
    if (t->dtype != want)
        return kdi_fail(KD_ERR_FORMAT, "tensor '%s' has the wrong dtype (want %s)", np->name,
                        names[want]);
    int same = t->ndim == p->ndim;
    for (int32_t d = 0; same && d < p->ndim; d++) same = t->dims[d] == p->dims[d];
    if (!same) {
        char want_s[80] = "", got_s[80] = "";
        for (int32_t d = 0; d < p->ndim; d++)
            snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), "%s%lld",
                     d ? ", " : "", (long long)p->dims[d]);
        for (int32_t d = 0; d < t->ndim && d < 8; d++)
            snprintf(got_s + strlen(got_s), sizeof got_s - strlen(got_s), "%s%lld", d ? ", " : "",
                     (long long)t->dims[d]);
        return kdi_fail(KD_ERR_SHAPE, "tensor '%s' has shape [%s], the model wants [%s]", np->name,
                        got_s, want_s);
    }
    if (want == KDI_ST_F32) {
        for (int64_t i = 0; i < p->count; i++) {
            float v;
            memcpy(&v, (const char *)t->data + 4 * i, 4);
            if (v - v != 0.0f)
                return kdi_fail(KD_ERR_NUMERIC, "tensor '%s' holds NaN or infinity", np->name);
            if (p->positive && !(v > 0.0f))
                return kdi_fail(KD_ERR_NUMERIC,
                                "tensor '%s' is a scale and holds %g at %lld; a scale must be > 0",
                                np->name, (double)v, (long long)i);
        }
    }
    if (want == KDI_ST_I8) {
        /* Symmetric int8 weights use -127..127: -128 has no positive twin. */
        const signed char *q = t->data;
        for (int64_t i = 0; i < p->count; i++)
            if (q[i] == -128)
                return kdi_fail(KD_ERR_FORMAT,
                                "tensor '%s' holds -128 at %lld; int8 weights are -127..127",
                                np->name, (long long)i);
    }
    return KD_OK;
}

/* The tensors of f that name a tied LM head of m's top-level chain ("5.weight" for layer 5,
 * "lmhead V tied"). PyTorch's state_dict() of a tied model lists the shared weight under both
 * names; libkd writes it once, under the embedding's name -- what safetensors.torch.save_model
 * keeps of a shared tensor (the first name in sort order, and "0.weight" comes first). A head's
 * tensor is accepted beside it when it holds the same values as the embedding it is tied to (the
 * nearest earlier embed, as nn/layers/lmhead.c ties). Returns how many f holds, or -1 (failed). */
static int32_t tied_aliases(const kd_model *m, const kdi_st_file *f, const char *path)
{
    int32_t found = 0;
    for (int32_t i = 0; i < m->seq.n; i++) {
        const kdi_layer *l = &m->seq.layers[i];
        if (strcmp(l->ops->kind, "lmhead") != 0 || l->nparams != 0) continue;
        char head[32], embed[32];
        snprintf(head, sizeof head, "%d.weight", (int)i);
        const kdi_st_tensor *h = kdi_st_find(f, head), *e = NULL;
        if (h == NULL) continue;
        for (int32_t j = i - 1; j >= 0 && e == NULL; j--)
            if (strcmp(m->seq.layers[j].ops->kind, "embed") == 0) {
                snprintf(embed, sizeof embed, "%d.weight", (int)j);
                e = kdi_st_find(f, embed);
            }
        if (e == NULL) continue; /* reported as the embedding's missing tensor */
        int same = h->dtype == e->dtype && h->nbytes == e->nbytes && h->ndim == e->ndim;
        for (int32_t d = 0; same && d < h->ndim; d++) same = h->dims[d] == e->dims[d];
        if (!same || memcmp(h->data, e->data, (size_t)h->nbytes) != 0) {
            kdi_fail(KD_ERR_FORMAT,
                     "%s: tensor '%s' (layer %d, lmhead tied) differs from '%s', the embedding it "
                     "is tied to; a tied head has no weight of its own",
                     path, head, (int)i, embed);
            return -1;
        }
        found++;
    }
    return found;
}

kd_status kdi_model_check_file(const kd_model *m, const kdi_st_file *f, const char *path, int exact)
{
    for (int32_t i = 0; i < m->params.n; i++) {
        const kdi_st_tensor *t = kdi_st_find(f, m->params.items[i].name);
        if (t == NULL)
            return kdi_fail(KD_ERR_FORMAT, "%s has no tensor '%s'", path, m->params.items[i].name);
        KDI_TRY(check_tensor(&m->params.items[i], t));
    }
    int32_t aliases = exact ? tied_aliases(m, f, path) : 0;
    if (aliases < 0) return KD_ERR_FORMAT;
    if (exact && f->n != m->params.n + aliases)
        return kdi_fail(KD_ERR_FORMAT, "%s holds %d tensors, the model has %d", path, (int)f->n,
                        (int)m->params.n);
    return KD_OK;
}

void kdi_model_copy_file(kd_model *m, const kdi_st_file *f)
{
    for (int32_t i = 0; i < m->params.n; i++) {
        const kdi_st_tensor *t = kdi_st_find(f, m->params.items[i].name);
        kdi_param *p = m->params.items[i].p;
        memcpy(kdi_param_data(p), t->data, (size_t)t->nbytes);
    }
    kdi_model_params_changed(m);
}

/* Validates every tensor first, then copies: a failure changes nothing. A training checkpoint
 * (kd_trainer_save) holds the student's tensors under the model's names beside the trainer's own
 * (optimizer., rng., regressor., crd.), which are skipped. */
static kd_status fill(kd_model *m, const kdi_st_file *f, const char *path)
{
    int checkpoint = kdi_st_meta(f, KDI_CHECKPOINT_KEY) != NULL;
    KDI_TRY(kdi_model_check_file(m, f, path, !checkpoint));
    kdi_model_copy_file(m, f);
    return KD_OK;
}

kd_status kd_model_load_weights(kd_model *m, const char *path)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(path);
    kdi_st_file f;
    KDI_TRY(kdi_st_read(path, &f));
    kd_status st = fill(m, &f, path);
    kdi_st_free(&f);
    return st;
}

kd_status kd_model_load(const char *path, kd_model **out)
{
    KDI_CHECK_NULL(path);
    KDI_CHECK_NULL(out);
    kdi_st_file f;
    KDI_TRY(kdi_st_read(path, &f));
    const char *spec = kdi_st_meta(&f, SPEC_KEY);
    kd_model *m = NULL;
    kd_status st = KD_OK;
    /* A checkpoint of format 1 did not record the input normalisation: its student would
     * predict on inputs normalised differently from training. */
    if (kdi_st_meta(&f, KDI_CHECKPOINT_KEY) != NULL &&
        kdi_st_meta(&f, KDI_CHECKPOINT_FORMAT_KEY) == NULL)
        st =
            kdi_fail(KD_ERR_FORMAT,
                     "%s is a training checkpoint of an older libkd, which did not record the "
                     "input normalisation: resume the run from it (kd_trainer_load, kd's --resume) "
                     "and save the model",
                     path);
    else if (spec == NULL)
        st = kdi_fail(KD_ERR_FORMAT,
                      "%s has no '" SPEC_KEY "' metadata: create the model from its spec and call "
                      "kd_model_load_weights",
                      path);
    if (st == KD_OK) {
        /* Every value of the model comes from the file, at 4 bytes or more each: a spec asking for
         * more than the file's data can fill is refused before its layers allocate. */
        int64_t bytes = 0;
        for (int32_t i = 0; i < f.n; i++) bytes += f.tensors[i].nbytes;
        kdi_budget_cap(bytes / 4 > 0 ? bytes / 4 : 1);
        st = kd_model_create(spec, 0, &m);
        kdi_budget_cap(0);
        if (st == KD_ERR_FORMAT) {
            char why[400];
            snprintf(why, sizeof why, "%s", kd_last_error());
            st = kdi_fail(st, "%s: %s", path, why);
        }
    }
    if (st == KD_OK) st = fill(m, &f, path);
    if (st == KD_OK)
        st = kdi_norm_parse(m, kdi_st_meta(&f, KDI_NORM_MEAN_KEY),
                            kdi_st_meta(&f, KDI_NORM_STD_KEY), path);
    kdi_st_free(&f);
    if (st != KD_OK) {
        kd_model_destroy(m);
        return st;
    }
    *out = m;
    return KD_OK;
}
