/* The process-wide budgets of kd_set_limit, and the budget of the model being built on this
 * thread. */
#ifndef KDI_LIMITS_H
#define KDI_LIMITS_H

#include <stdint.h>

#include "kd.h"

int64_t kdi_limit(kd_limit key);

/* A model build (kdi_seq_build at depth 0) takes its values from a budget: KD_LIMIT_MODEL_VALUES,
 * or less when kdi_budget_cap set a cap for the next build on this thread (kd_model_load: what the
 * file can fill). Nested builds (residual bodies) share the outer one's. */
void kdi_budget_cap(int64_t values); /* 0: none */
void kdi_budget_enter(void);
void kdi_budget_leave(void);
/* Takes count values from the budget; KD_ERR_FORMAT naming what when it would be exceeded. */
kd_status kdi_budget_take(int64_t count, const char *what);

#endif
