/* The JSON header of a safetensors file, as kd info shows it. */
#ifndef KD_TOOL_STHEADER_H
#define KD_TOOL_STHEADER_H

#include <stdint.h>
#include <stdio.h>

#define ST_MAX_ITEMS 256
#define ST_MAX_RANK 8

typedef struct st_tensor {
    char name[128], dtype[16];
    int64_t shape[ST_MAX_RANK];
    int rank;
} st_tensor;

typedef struct st_pair {
    char key[128], value[1024];
} st_pair;

typedef struct st_header {
    st_tensor tensors[ST_MAX_ITEMS];
    st_pair meta[ST_MAX_ITEMS];
    int ntensors, total_tensors, nmeta;
} st_header;

/* 0 on success, -1 if the file cannot be read or its header is not what safetensors writes. */
int st_read_header(const char *path, st_header *h);

#endif
