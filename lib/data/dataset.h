/* The dataset behind kd_dataset, for the readers of lib/data that fill one. */
#ifndef KDI_DATASET_H
#define KDI_DATASET_H

#include <stdint.h>

#include "kd.h"

struct kd_dataset {
    int64_t n, c, h, w;
    float *images;   /* [n, c*h*w] */
    int32_t *labels; /* [n], or NULL */
    char **classes;  /* [nclasses] names of labels 0..nclasses-1 (CSV), or NULL */
    int32_t nclasses;
};

/* A dataset of n examples of c x h x w (n * c*h*w already checked to fit), images uninitialised,
 * labels allocated when labelled. */
kd_status kdi_dataset_new(int64_t n, int64_t c, int64_t h, int64_t w, int labelled,
                          kd_dataset **out);

#endif
