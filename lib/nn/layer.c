#include "nn/layer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/rng.h"

kd_status kdi_param_list_push(kdi_param_list *list, const char *prefix, kdi_param *p)
{
    if (list->n == list->cap) {
        int32_t cap = list->cap ? list->cap * 2 : 16;
        kdi_named_param *items = kdi_realloc(list->items, (size_t)cap * sizeof *items);
        if (items == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot grow the parameter list");
        list->items = items;
        list->cap = cap;
    }
    kdi_named_param *np = &list->items[list->n];
    int len = snprintf(np->name, sizeof np->name, "%s%s", prefix, p->name);
    if (len < 0 || (size_t)len >= sizeof np->name)
        return kdi_fail(KD_ERR_FORMAT, "parameter name '%s%s' is too long", prefix, p->name);
    np->p = p;
    list->n++;
    return KD_OK;
}

void kdi_param_list_free(kdi_param_list *list)
{
    kdi_free(list->items);
    memset(list, 0, sizeof *list);
}

kd_status kdi_layer_add_param(kdi_layer *l, const char *name, int trainable, int32_t ndim,
                              const int64_t *dims)
{
    if (l->nparams == KDI_MAX_PARAMS || ndim < 0 || ndim > KDI_MAX_DIMS)
        return kdi_fail(KD_ERR_ARGUMENT, "layer '%s': too many parameters", l->ops->kind);
    kdi_param *p = &l->params[l->nparams];
    memset(p, 0, sizeof *p);
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (!kdi_mul_ok(count, dims[i], &count) || count > INT32_MAX)
            return kdi_fail(KD_ERR_SHAPE, "layer '%s': parameter '%s' is too large", l->ops->kind,
                            name);
        p->dims[i] = dims[i];
    }
    char what[96];
    snprintf(what, sizeof what, "layer '%s': parameter '%s'", l->ops->kind, name);
    KDI_TRY(kdi_budget_take(count, what));
    p->name = name;
    p->ndim = ndim;
    p->count = count;
    p->value = kdi_alloc_floats(count);
    p->grad = trainable ? kdi_alloc_floats(count) : NULL;
    if (p->value == NULL || (trainable && p->grad == NULL)) {
        kdi_free_floats(p->value);
        kdi_free_floats(p->grad);
        return kdi_fail(KD_ERR_NOMEM, "cannot allocate parameter '%s'", name);
    }
    l->nparams++;
    return KD_OK;
}

kd_status kdi_layer_add_raw_param(kdi_layer *l, const char *name, kdi_st_dtype dtype, int32_t ndim,
                                  const int64_t *dims)
{
    if (l->nparams == KDI_MAX_PARAMS || ndim < 0 || ndim > KDI_MAX_DIMS)
        return kdi_fail(KD_ERR_ARGUMENT, "layer '%s': too many parameters", l->ops->kind);
    kdi_param *p = &l->params[l->nparams];
    memset(p, 0, sizeof *p);
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (!kdi_mul_ok(count, dims[i], &count) || count > INT32_MAX)
            return kdi_fail(KD_ERR_SHAPE, "layer '%s': parameter '%s' is too large", l->ops->kind,
                            name);
        p->dims[i] = dims[i];
    }
    char what[96];
    snprintf(what, sizeof what, "layer '%s': parameter '%s'", l->ops->kind, name);
    /* The budget counts values of 4 bytes (kd_model_load caps it at the file's bytes / 4), rounded
     * down so that one-byte zero points fit the file that holds them. */
    int64_t size = kdi_st_dtype_size(dtype);
    KDI_TRY(kdi_budget_take(count * size / 4, what));
    p->name = name;
    p->ndim = ndim;
    p->count = count;
    p->raw_type = dtype;
    p->raw = kdi_calloc((size_t)(count > 0 ? count : 1), (size_t)size);
    if (p->raw == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate parameter '%s'", name);
    l->nparams++;
    return KD_OK;
}

kd_status kdi_layer_set_spec(kdi_layer *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = len >= 0 ? kdi_malloc((size_t)len + 1) : NULL;
    if (s == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a layer spec");
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    kdi_free(l->spec);
    l->spec = s;
    return KD_OK;
}

void kdi_layer_free(kdi_layer *l)
{
    if (l->ops != NULL && l->ops->destroy != NULL) l->ops->destroy(l);
    for (int i = 0; i < l->nparams; i++) {
        kdi_free_floats(l->params[i].value);
        kdi_free_floats(l->params[i].grad);
        kdi_free(l->params[i].ivalue);
        kdi_free(l->params[i].raw);
    }
    kdi_free(l->spec);
    memset(l, 0, sizeof *l);
}

int64_t kdi_layer_param_count(kdi_layer *l)
{
    kdi_param_list list = {0};
    int64_t total = 0;
    kd_status st = l->ops->collect != NULL ? l->ops->collect(l, "", &list) : KD_OK;
    /* Int8 layers: their int8 weights and int32 biases, so the count matches the float model's. */
    if (l->ops->collect == NULL)
        for (int i = 0; i < l->nparams; i++)
            if (l->params[i].grad != NULL ||
                (l->params[i].raw != NULL && l->params[i].raw_type != KDI_ST_U8))
                total += l->params[i].count;
    for (int i = 0; st == KD_OK && i < list.n; i++)
        if (list.items[i].p->grad != NULL) total += list.items[i].p->count;
    kdi_param_list_free(&list);
    return total;
}

void kdi_init_uniform(float *w, int64_t n, int64_t fan_in, uint64_t seed)
{
    kdi_rng r;
    kdi_rng_seed(&r, seed);
    float bound = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
    for (int64_t i = 0; i < n; i++) w[i] = bound * (2.0f * kdi_rng_uniform(&r) - 1.0f);
}
