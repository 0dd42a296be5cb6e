/* Fault injection for the tests: an allocator (kd_set_allocator) that counts, tracks live blocks
 * and fails the Nth allocation, and the training rigs and state snapshots the fault tests share. */
#ifndef KD_FAULTS_H
#define KD_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "kd.h"

/* The counting allocator: every call counts; with fail_at > 0 the fail_at-th allocation (malloc,
 * calloc or realloc) from now fails. live is the number of blocks held. */
typedef struct kdt_alloc_stats {
    int64_t calls, live, bytes, peak_bytes;
    int64_t fail_at, failed;
} kdt_alloc_stats;

extern kdt_alloc_stats kdt_alloc;

/* Installs the counting allocator (process-wide) and resets its counts. */
void kdt_alloc_install(void);
/* Counts from zero, failing the fail_at-th allocation (0: none). peak_bytes restarts at bytes. */
void kdt_alloc_arm(int64_t fail_at);

/* A student with batch norm and dropout, a teacher, a Hinton loss, SGD with momentum, and a hint
 * term through a regressor: every kind of state a step touches. */
typedef struct kdt_rig {
    kd_model *student, *teacher;
    kd_loss *loss;
    kd_feature_loss *hint;
    kd_optimizer *opt;
    kd_trainer *t;
} kdt_rig;

#define KDT_RIG_BATCH 6
#define KDT_RIG_IN 8
#define KDT_RIG_CLASSES 4

/* Builds the rig (KD_OK, or the first failure with everything built so far freed). */
kd_status kdt_rig_make(kdt_rig *r);
void kdt_rig_free(kdt_rig *r);
/* One step on a fixed batch number k. */
kd_status kdt_rig_step(kdt_rig *r, uint64_t k);

/* The whole state a checkpoint holds (weights, buffers, optimizer state and step, random streams,
 * regressors), as bytes: kd_trainer_save into a scratch file, read back. Heap, free(). */
unsigned char *kdt_trainer_state(const kd_trainer *t, size_t *n);
/* The file's bytes (NULL when absent). Heap, free(). */
unsigned char *kdt_read_file(const char *path, size_t *n);
/* Names in dir that start with prefix ("model.safetensors.tmp"), counted. */
int kdt_count_prefixed(const char *dir, const char *prefix);

#endif
