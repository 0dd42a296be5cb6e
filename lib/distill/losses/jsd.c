/* Generalised Jensen-Shannon divergence (GKD, Agarwal et al. 2024), as TRL's generalized_jsd_loss:
 *   JSD(b) = b KL(p || m) + (1 - b) KL(q || m),  m = b p + (1 - b) q,
 *   dJSD/dq_j = (1 - b) (log q_j - log m_j)  (the terms through m cancel: b p + (1 - b) q = m),
 * and at the end points TRL's limits: b = 0 the forward KL(p || q) (dD/dq_j = -p_j / q_j), b = 1
 * the reverse KL(q || p). */
#include <math.h>

#include "distill/losses/losses.h"

static double jsd_term(double p, double q, double lq, double b, double *g)
{
    if (b == 0.0) {
        *g = q > 0.0 ? -p / q : 0.0;
        return p > 0.0 ? p * (log(p) - lq) : 0.0;
    }
    if (b == 1.0) {
        double lp = kdi_log_floor(p);
        *g = lq - lp;
        return q * (lq - lp);
    }
    double lm = kdi_log_floor(b * p + (1.0 - b) * q);
    *g = (1.0 - b) * (lq - lm);
    return (p > 0.0 ? b * p * (log(p) - lm) : 0.0) + (1.0 - b) * q * (lq - lm);
}

const kdi_loss_ops kdi_jsd_ops = {.name = "jsd",
                                  .check = kdi_check_alpha_inputs,
                                  .forward = kdi_divergence_forward,
                                  .uses_soft = kdi_divergence_uses_soft,
                                  .defaults = kdi_divergence_defaults,
                                  .term = jsd_term};
