/* Language-model metrics from a mean cross-entropy in nats per token: perplexity = exp(ce), and
 * bits per byte = ce * tokens / (bytes * ln 2), which compares models across tokenizers. */
#include <math.h>
#include <stddef.h>

#include "core/error.h"

static kd_status check_ce(float ce)
{
    if (!isfinite(ce) || ce < 0.0f)
        return kdi_fail(KD_ERR_ARGUMENT, "ce %g must be a finite cross-entropy >= 0 (nats)",
                        (double)ce);
    return KD_OK;
}

kd_status kd_perplexity(float ce, float *perplexity)
{
    KDI_CHECK_NULL(perplexity);
    KDI_TRY(check_ce(ce));
    *perplexity = (float)exp((double)ce);
    return KD_OK;
}

kd_status kd_bits_per_byte(float ce, int64_t tokens, int64_t bytes, float *bpb)
{
    KDI_CHECK_NULL(bpb);
    KDI_TRY(check_ce(ce));
    if (tokens < 1 || bytes < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "tokens %lld and bytes %lld must be 1 or more",
                        (long long)tokens, (long long)bytes);
    *bpb = (float)((double)ce * (double)tokens / ((double)bytes * log(2.0)));
    return KD_OK;
}
