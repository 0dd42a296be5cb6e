/* libFuzzer target for kd_model_load: any file. A model it accepts must save and load again to the
 * same spec and the same file bytes. The default budgets stay: the file itself must cap what its
 * spec may allocate (issue 16's fault 2: a 64-byte file asked for 2 GB), which -malloc_limit_mb
 * checks. Built with -DKD_FUZZ=ON (tests/fuzz/README.md). */
#include <string.h>

#include "fuzz_common.h"
#include "kd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static unsigned char *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) abort();
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*n + 1);
    if (b == NULL || fread(b, 1, (size_t)*n, f) != (size_t)*n) abort();
    fclose(f);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[128], out1[128], out2[128];
    fuzz_put_file(fuzz_scratch("fuzz_model_in", in, sizeof in), data, size);
    fuzz_scratch("fuzz_model_out1", out1, sizeof out1);
    fuzz_scratch("fuzz_model_out2", out2, sizeof out2);
    kd_model *m = NULL, *again = NULL;
    if (kd_model_load(in, &m) == KD_OK) {
        if (kd_model_save(m, out1) != KD_OK || kd_model_load(out1, &again) != KD_OK) abort();
        if (strcmp(kd_model_spec(m), kd_model_spec(again)) != 0) abort();
        if (kd_model_save(again, out2) != KD_OK) abort();
        long n1, n2;
        unsigned char *a = slurp(out1, &n1), *b = slurp(out2, &n2);
        if (n1 != n2 || memcmp(a, b, (size_t)n1) != 0) abort();
        free(a);
        free(b);
        kd_model_destroy(again);
        kd_model_destroy(m);
    } else if (m != NULL) {
        abort();
    }
    unlink(in);
    unlink(out1);
    unlink(out2);
    return 0;
}
