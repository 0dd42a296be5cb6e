#include "nn/model_state.h"

#include <string.h>

#include "core/rng.h"

/* Walks the random streams of s and of the sequences inside its layers, in a fixed order; with
 * dir > 0 copies them to *p, with dir < 0 from *p, with dir == 0 only counts; returns the bytes. */
static int64_t walk_rngs(const kdi_seq *s, unsigned char **p, int dir)
{
    int64_t bytes = 0;
    for (int32_t i = 0; i < s->n; i++) {
        kdi_layer *l = &s->layers[i];
        if (l->rng != NULL) {
            if (dir > 0) memcpy(*p, l->rng->s, sizeof l->rng->s);
            if (dir < 0) memcpy(l->rng->s, *p, sizeof l->rng->s);
            if (dir != 0) *p += sizeof l->rng->s;
            bytes += (int64_t)sizeof l->rng->s;
        }
        const char *name;
        kdi_seq *c;
        for (int32_t k = 0; l->ops->child != NULL && (c = l->ops->child(l, k, &name)) != NULL; k++)
            bytes += walk_rngs(c, p, dir);
    }
    return bytes;
}

/* The same for the buffers (parameters without a gradient). */
static int64_t walk_buffers(const kd_model *m, unsigned char **p, int dir)
{
    int64_t bytes = 0;
    for (int32_t i = 0; i < m->params.n; i++) {
        kdi_param *q = m->params.items[i].p;
        if (q->grad != NULL) continue;
        void *data = kdi_param_data(q);
        size_t n = (size_t)kdi_param_bytes(q);
        if (dir > 0) memcpy(*p, data, n);
        if (dir < 0) memcpy(data, *p, n);
        if (dir != 0) *p += n;
        bytes += (int64_t)n;
    }
    return bytes;
}

int64_t kdi_model_state_size(const kd_model *m)
{
    return walk_buffers(m, NULL, 0) + walk_rngs(&m->seq, NULL, 0);
}

void kdi_model_state_save(const kd_model *m, unsigned char *out)
{
    walk_buffers(m, &out, 1);
    walk_rngs(&m->seq, &out, 1);
}

void kdi_model_state_restore(kd_model *m, const unsigned char *in)
{
    unsigned char *p = (unsigned char *)in;
    walk_buffers(m, &p, -1);
    walk_rngs(&m->seq, &p, -1);
}
