/* A program outside the libkd tree: built against an installed libkd through find_package(kd) or
 * pkg-config, it checks the version it was compiled with against the library it runs with, and
 * runs a small model. Exit status 0 when everything holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <kd.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "consumer: " __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                                       \
        return 1;                                                                                  \
    } while (0)

int main(void)
{
    if (strcmp(kd_version(), KD_VERSION_STRING) != 0)
        FAIL("built with libkd %s, runs with %s", KD_VERSION_STRING, kd_version());
    if (kd_version_number() != KD_VERSION_NUMBER)
        FAIL("kd_version_number() is %d, KD_VERSION_NUMBER %d", (int)kd_version_number(),
             KD_VERSION_NUMBER);

    kd_model *m = NULL;
    kd_status st = kd_model_create("input 6 | dense 8 | relu | dense 3", 7, &m);
    if (st != KD_OK) FAIL("kd_model_create: %s (%s)", kd_strerror(st), kd_last_error());

    float x[2 * 6], logits[2 * 3];
    for (int i = 0; i < 2 * 6; i++) x[i] = (float)i / 12.0f - 0.5f;
    st = kd_model_predict(m, x, 2, logits);
    if (st != KD_OK) FAIL("kd_model_predict: %s (%s)", kd_strerror(st), kd_last_error());
    for (int i = 0; i < 2 * 3; i++)
        if (!isfinite(logits[i])) FAIL("logit %d is not finite", i);

    /* The error path works across the library boundary too. */
    if (kd_model_predict(m, NULL, 2, logits) != KD_ERR_ARGUMENT || kd_last_error()[0] == '\0')
        FAIL("kd_model_predict(NULL input) did not fail with a sentence");

    kd_model_destroy(m);
    printf("consumer: libkd %s, kernels %s, logits %.4f %.4f %.4f\n", kd_version(),
           kd_kernels_name(), (double)logits[0], (double)logits[1], (double)logits[2]);
    return 0;
}
