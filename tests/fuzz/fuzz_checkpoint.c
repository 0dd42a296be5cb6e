/* libFuzzer target for kd_trainer_load: any file, loaded into one trainer (a student with batch
 * norm and dropout, a teacher, SGD with momentum, a hint term with a regressor). A failed load must
 * change nothing: the trainer's state, saved, is the same bytes as before. A successful load is
 * undone by loading the first state again. Built with -DKD_FUZZ=ON (tests/fuzz/README.md). */
#include <string.h>

#include "fuzz_common.h"
#include "kd.h"

static kd_trainer *trainer;
static unsigned char *state0;
static long state0_size;
static char base[128];

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

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    kd_model *student, *teacher;
    kd_loss *loss;
    kd_feature_loss *hint;
    kd_optimizer *opt;
    /* The handles live as long as the process: the trainer borrows them. */
    if (kd_model_create("input 8 | dense 16 | bn | relu | dropout 0.25 | dense 4", 7, &student) ||
        kd_model_create("input 8 | dense 12 | relu | dense 4", 8, &teacher) ||
        kd_loss_create(KD_LOSS_HINTON, &loss) || kd_feature_loss_create(KD_FEATURE_HINT, &hint) ||
        kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt) ||
        kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f) ||
        kd_trainer_create(student, loss, opt, &trainer) ||
        kd_trainer_add_teacher(trainer, teacher, 1.0f) ||
        kd_trainer_add_feature_loss(trainer, hint, 1, 0, 0, "dense 12", 0.5f))
        abort();
    fuzz_scratch("fuzz_ckpt_state0", base, sizeof base);
    if (kd_trainer_save(trainer, base) != KD_OK) abort();
    state0 = slurp(base, &state0_size);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[128], now[128];
    fuzz_put_file(fuzz_scratch("fuzz_ckpt_in", in, sizeof in), data, size);
    fuzz_scratch("fuzz_ckpt_now", now, sizeof now);
    if (kd_trainer_load(trainer, in) == KD_OK) {
        if (kd_trainer_load(trainer, base) != KD_OK) abort();
    } else {
        long n;
        if (kd_trainer_save(trainer, now) != KD_OK) abort();
        unsigned char *b = slurp(now, &n);
        if (n != state0_size || memcmp(b, state0, (size_t)n) != 0) abort();
        free(b);
        unlink(now);
    }
    unlink(in);
    return 0;
}
