/* The omitted-class correction of Hinton, Vinyals and Dean (2015, section 3): a student distilled
 * on a transfer set without class k still learns much about k from the soft targets, but its bias
 * for k is too low; raising that one bias by a constant chosen on held-out data recovers most of
 * the class. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "nn/model.h"

kd_status kd_model_adjust_output_bias(kd_model *m, int32_t cls, float delta)
{
    KDI_CHECK_NULL(m);
    if (!isfinite(delta))
        return kdi_fail(KD_ERR_NUMERIC, "delta is %g; it must be finite", (double)delta);
    if (m->seq.n < 1) return kdi_fail(KD_ERR_UNSUPPORTED, "the model has no layer");
    kdi_layer *last = &m->seq.layers[m->seq.n - 1];
    if (strcmp(last->ops->kind, "dense") != 0 || last->nparams < 2 ||
        strcmp(last->params[1].name, "bias") != 0)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "the model's last layer is '%s'; the output bias is a dense layer's",
                        last->ops->kind);
    kdi_param *bias = &last->params[1];
    if (cls < 0 || cls >= bias->count)
        return kdi_fail(KD_ERR_ARGUMENT, "class %d is not in 0..%lld", (int)cls,
                        (long long)bias->count - 1);
    float v = bias->value[cls] + delta;
    if (!isfinite(v))
        return kdi_fail(KD_ERR_NUMERIC, "the bias of class %d would overflow", (int)cls);
    bias->value[cls] = v;
    return KD_OK;
}
