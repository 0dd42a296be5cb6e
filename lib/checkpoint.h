/* Training checkpoints behind kd_trainer_save and kd_trainer_load. */
#ifndef KDI_CHECKPOINT_H
#define KDI_CHECKPOINT_H

#include "model.h"

kd_status kdi_checkpoint_save(const kd_model *m, const kd_optimizer *o, const char *path);
/* Validates the whole file against m and o before changing either. */
kd_status kdi_checkpoint_load(kd_model *m, kd_optimizer *o, const char *path);

#endif
