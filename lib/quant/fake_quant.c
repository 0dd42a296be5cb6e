/* kd_model_set_fake_quant: marks, from the int8 plan of the model, the layers whose weights are
 * rounded and the activations that are rounded in training (nn/fake_quant.h does the rounding).
 * The marks follow the int8 model exactly: the input (quantize), and every block's output (after
 * its relu, or its bn, or the dense/conv itself) except the last block's when it returns floats.
 * Batch norm stays unfolded in training; the conv's weights are rounded per output channel before
 * bn scales them, which gives the same int8 codes as rounding the folded weights, since folding
 * multiplies each output channel by one factor g / sqrt(var + eps) and the symmetric per-channel
 * step scales with it (a negative factor flips every code's sign, and rounding half to even is
 * symmetric). */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/fake_quant.h"
#include "quant/plan.h"

static kd_status enable(kd_model *m)
{
    int32_t n = m->seq.n, nb = 0;
    block *b = kdi_calloc((size_t)n + 1, sizeof *b);
    uint8_t *w = kdi_calloc((size_t)n + 1, 1), *pt = kdi_calloc((size_t)n + 1, 1);
    kd_status st = b != NULL && w != NULL && pt != NULL
                       ? KD_OK
                       : kdi_fail(KD_ERR_NOMEM, "cannot allocate the fake-quantisation plan");
    if (st == KD_OK) st = kdi_quant_plan(m, b, &nb);
    if (st == KD_OK) {
        pt[0] = 1;
        for (int32_t k = 0; k < nb; k++) {
            if (b[k].kind == B_DENSE || b[k].kind == B_CONV) {
                w[b[k].first] = 1;
                /* The last block returns floats unless it ends in relu (then codes, dequantize). */
                if (k < nb - 1 || b[k].relu) pt[b[k].last + 1] = 1;
            }
        }
        m->seq.fq = kdi_fq_create(n, w, pt);
        if (m->seq.fq == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate fake quantisation");
    }
    kdi_free(b);
    kdi_free(w);
    kdi_free(pt);
    return st;
}

kd_status kd_model_set_fake_quant(kd_model *m, int32_t on)
{
    KDI_CHECK_NULL(m);
    if (on != 0 && on != 1) return kdi_fail(KD_ERR_ARGUMENT, "on is %d; expected 0 or 1", (int)on);
    if (m->seq.vocab > 0)
        return kdi_fail(KD_ERR_UNSUPPORTED, "a token model has no int8 form here");
    for (int32_t i = 0; i < m->seq.n; i++)
        if (m->seq.layers[i].ops->codes != 0)
            return kdi_fail(KD_ERR_UNSUPPORTED, "the model is int8 already");
    if ((m->seq.fq != NULL) == (on != 0)) return KD_OK;
    /* A forward of the other kind cannot be backpropagated. */
    m->seq.trained = 0;
    if (!on) {
        kdi_fq_free(m->seq.fq);
        m->seq.fq = NULL;
        return KD_OK;
    }
    return enable(m);
}

kd_status kd_model_fake_quant(const kd_model *m, int32_t *on)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(on);
    *on = m->seq.fq != NULL;
    return KD_OK;
}
