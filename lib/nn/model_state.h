/* What a training forward changes in a model besides its activations: the buffers (batch norm's
 * running statistics and counters) and the layers' random streams (dropout). A caller that may
 * fail after a forward saves them first and puts them back on failure, so the failed call leaves
 * the model as it was. */
#ifndef KDI_MODEL_STATE_H
#define KDI_MODEL_STATE_H

#include <stdint.h>

#include "nn/model.h"

/* Bytes kdi_model_state_save writes for m. */
int64_t kdi_model_state_size(const kd_model *m);
/* Copies m's buffers and random streams into out (kdi_model_state_size bytes). */
void kdi_model_state_save(const kd_model *m, unsigned char *out);
/* Puts back what kdi_model_state_save wrote. */
void kdi_model_state_restore(kd_model *m, const unsigned char *in);

#endif
