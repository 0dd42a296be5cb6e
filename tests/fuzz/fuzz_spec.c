/* libFuzzer target for the spec language: kd_model_create on any text. A spec it accepts must
 * give a canonical spec that builds the same model again (same spec, same parameter count). The
 * model budget is lowered to 2^20 values so -malloc_limit_mb catches any allocation that escapes
 * it (the kind of issue 16's fault 2). Built with -DKD_FUZZ=ON (tests/fuzz/README.md). */
#include <string.h>

#include "fuzz_common.h"
#include "kd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (kd_set_limit(KD_LIMIT_MODEL_VALUES, 1 << 20) != KD_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    if (spec == NULL) abort();
    memcpy(spec, data, size);
    spec[size] = '\0';
    kd_model *m = NULL, *again = NULL;
    if (kd_model_create(spec, 1, &m) == KD_OK) {
        int64_t n1, n2;
        if (kd_model_create(kd_model_spec(m), 1, &again) != KD_OK) abort();
        if (strcmp(kd_model_spec(m), kd_model_spec(again)) != 0) abort();
        if (kd_model_param_count(m, &n1) != KD_OK || kd_model_param_count(again, &n2) != KD_OK ||
            n1 != n2)
            abort();
        kd_model_destroy(again);
        kd_model_destroy(m);
    } else if (m != NULL || kd_last_error()[0] == '\0') {
        abort(); /* a failure leaves *out alone and says why */
    }
    free(spec);
    return 0;
}
