/* Shared by the libFuzzer targets: inputs go to a scratch file because the readers take paths. */
#ifndef KD_FUZZ_COMMON_H
#define KD_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A per-process path under /dev/shm (or /tmp) named for what it holds. */
static inline const char *fuzz_scratch(const char *name, char *buf, size_t size)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(buf, size, "%s/%s.%d", dir, name, (int)getpid());
    return buf;
}

static inline void fuzz_put_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
