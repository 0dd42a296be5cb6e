/* Incremental decoding of token models, one position at a time with the attention layers' cached
 * keys and values, and sampling (temperature, top-k, nucleus top-p) from a seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/model.h"

kd_status kd_model_decode_step(kd_model *m, int32_t id, int64_t pos, float *logits)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(logits);
    if (m->seq.vocab <= 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "decoding needs a token model ('tokens V T | ...')");
    KDI_TRY(kdi_seq_can_step(&m->seq));
    if (id < 0 || id >= m->seq.vocab)
        return kdi_fail(KD_ERR_ARGUMENT, "id %d is not in 0..%lld", (int)id,
                        (long long)m->seq.vocab - 1);
    if (pos < 0 || pos >= m->seq.in.c)
        return kdi_fail(KD_ERR_ARGUMENT, "position %lld is not in 0..%lld", (long long)pos,
                        (long long)m->seq.in.c - 1);
    if (pos != 0 && pos != m->decoded)
        return kdi_fail(KD_ERR_STATE, "decoding steps come in order: position %lld or 0, not %lld",
                        (long long)m->decoded, (long long)pos);
    float x = (float)id;
    const float *y;
    m->decoded = 0; /* a failed step leaves the cache unusable until position 0 */
    KDI_TRY(kdi_seq_step(&m->seq, &x, pos, &y));
    int64_t out = kdi_seq_width(m->seq.out, 1);
    /* Sampling from NaN or infinity picks an arbitrary token (greedy: token 0) and looks like a
     * success; the caller learns the model overflowed instead. */
    if (!kdi_all_finite(y, out))
        return kdi_fail(KD_ERR_NUMERIC,
                        "the model's logits at position %lld (token %d) hold NaN or infinity: its "
                        "weights or activations overflow",
                        (long long)pos, (int)id);
    memcpy(logits, y, (size_t)out * sizeof *logits);
    m->decoded = pos + 1;
    return KD_OK;
}

typedef struct ranked {
    double p;
    int32_t id;
} ranked;

static int by_probability(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Draws an id from softmax(z / temperature) restricted to the top_k most probable ids (0: all)
 * and to the fewest most probable ids whose mass reaches top_p (Holtzman et al. 2020); greedy
 * (the first largest logit) at temperature 0. */
static int32_t sample(const float *z, ranked *r, int64_t v, float temperature, int32_t top_k,
                      float top_p, kdi_rng *rng)
{
    int64_t best = 0;
    for (int64_t i = 1; i < v; i++)
        if (z[i] > z[best]) best = i;
    if (temperature == 0.0f) return (int32_t)best;
    double total = 0.0;
    for (int64_t i = 0; i < v; i++) {
        r[i].p = exp(((double)z[i] - z[best]) / temperature);
        r[i].id = (int32_t)i;
        total += r[i].p;
    }
    qsort(r, (size_t)v, sizeof *r, by_probability);
    int64_t keep = top_k > 0 && top_k < v ? top_k : v;
    double mass = 0.0;
    for (int64_t i = 0; i < keep; i++) {
        mass += r[i].p;
        if (mass >= top_p * total) {
            keep = i + 1;
            break;
        }
    }
    mass = 0.0;
    for (int64_t i = 0; i < keep; i++) mass += r[i].p;
    double u = kdi_rng_uniform(rng) * mass;
    for (int64_t i = 0; i < keep; i++) {
        u -= r[i].p;
        if (u < 0.0) return r[i].id;
    }
    return r[keep - 1].id;
}

static kd_status check_generate(const kd_model *m, const int32_t *prompt, int64_t prompt_len,
                                int64_t count, float temperature, int32_t top_k, float top_p)
{
    KDI_CHECK_NULL(prompt);
    if (m->seq.vocab <= 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "generation needs a token model ('tokens V T | ...')");
    if (kdi_seq_width(m->seq.out, 1) != m->seq.vocab)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "generation samples from V = %lld logits a token; the model gives %lld",
                        (long long)m->seq.vocab, (long long)kdi_seq_width(m->seq.out, 1));
    if (prompt_len < 1 || count < 1 || count > m->seq.in.c || prompt_len > m->seq.in.c - count)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "prompt_len %lld and count %lld must be 1 or more, with a sum of at most "
                        "T = %lld",
                        (long long)prompt_len, (long long)count, (long long)m->seq.in.c);
    if (!(temperature >= 0.0f && temperature < INFINITY))
        return kdi_fail(KD_ERR_ARGUMENT, "temperature %g is not >= 0", (double)temperature);
    if (top_k < 0) return kdi_fail(KD_ERR_ARGUMENT, "top_k %d is not >= 0", (int)top_k);
    if (!(top_p > 0.0f && top_p <= 1.0f))
        return kdi_fail(KD_ERR_ARGUMENT, "top_p %g is not in (0, 1]", (double)top_p);
    for (int64_t i = 0; i < prompt_len; i++)
        if (prompt[i] < 0 || prompt[i] >= m->seq.vocab)
            return kdi_fail(KD_ERR_ARGUMENT, "prompt[%lld] = %d is not in 0..%lld", (long long)i,
                            (int)prompt[i], (long long)m->seq.vocab - 1);
    return kdi_seq_can_step(&m->seq);
}

kd_status kd_model_generate(kd_model *m, const int32_t *prompt, int64_t prompt_len, int64_t count,
                            float temperature, int32_t top_k, float top_p, uint64_t seed,
                            int32_t *out)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(out);
    KDI_TRY(check_generate(m, prompt, prompt_len, count, temperature, top_k, top_p));
    int64_t v = m->seq.vocab;
    float *z = kdi_malloc((size_t)v * sizeof *z);
    ranked *r = kdi_malloc((size_t)v * sizeof *r);
    int32_t *made = kdi_malloc((size_t)count * sizeof *made);
    kd_status st = z == NULL || r == NULL || made == NULL
                       ? kdi_fail(KD_ERR_NOMEM, "cannot allocate %lld logits", (long long)v)
                       : KD_OK;
    for (int64_t i = 0; st == KD_OK && i < prompt_len; i++)
        st = kd_model_decode_step(m, prompt[i], i, z);
    kdi_rng rng;
    kdi_rng_seed(&rng, seed);
    for (int64_t i = 0; st == KD_OK && i < count; i++) {
        made[i] = sample(z, r, v, temperature, top_k, top_p, &rng);
        if (i + 1 < count) st = kd_model_decode_step(m, made[i], prompt_len + i, z);
    }
    /* out is written only on success. */
    if (st == KD_OK) memcpy(out, made, (size_t)count * sizeof *out);
    kdi_free(z);
    kdi_free(r);
    kdi_free(made);
    return st;
}
