/* Writes the committed seed corpora of the fuzz targets (tests/fuzz/corpus/TARGET/): models and a
 * checkpoint saved by the library, spec strings, small IDX files. Run by hand after a format change:
 *   BUILD/tests/fuzz/make_seeds tests/fuzz/corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"

static const char *dir;

static void path_of(char *out, size_t size, const char *target, const char *name)
{
    snprintf(out, size, "%s/%s/%s", dir, target, name);
}

static void put(const char *target, const char *name, const void *data, size_t n)
{
    char p[512];
    path_of(p, sizeof p, target, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: cannot write %s\n", p);
        exit(1);
    }
}

static void check(kd_status st)
{
    if (st != KD_OK) {
        fprintf(stderr, "make_seeds: %s: %s\n", kd_strerror(st), kd_last_error());
        exit(1);
    }
}

static const char *const specs[] = {
    "input 8 | dense 16 | relu | dense 4",
    "input 4 | dense 3 | bn | dropout 0.5 | dense 2",
    "input 1x6x6 | conv 2 3 pad=1 bias=0 | bn | relu | residual(conv 2 3 pad=1 | bn) | relu | "
    "maxpool 2 | flatten | dense 3",
    "input 2x8x8 | conv 4 3 stride=2 groups=2 | avgpool 2 stride=1 | gap | dense 2",
    "input 5 | dense 5 | leakyrelu 0.1 | gelu | tanh | sigmoid | layernorm eps=1e-5 | dense 2",
    "input 3 | residual(dense 3 | relu)(dense 3) | bn eps=0.001 momentum=0.2 | dense 2",
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR (with subdirectories per target)\n");
        return 2;
    }
    dir = argv[1];
    char name[64], p[512];
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        snprintf(name, sizeof name, "spec%zu.txt", i);
        put("spec", name, specs[i], strlen(specs[i]));
        kd_model *m;
        check(kd_model_create(specs[i], i, &m));
        snprintf(name, sizeof name, "model%zu.safetensors", i);
        path_of(p, sizeof p, "model_load", name);
        check(kd_model_save(m, p));
        path_of(p, sizeof p, "safetensors", name);
        check(kd_model_save(m, p));
        kd_model_destroy(m);
    }
    /* Int8 models (kd_model_quantize): an MLP and a small CNN, calibrated on a few inputs. */
    static const char *const qspecs[] = {
        "input 6 | dense 5 | relu | dense 3",
        "input 2x6x6 | conv 3 3 pad=1 | bn | relu | maxpool 2 | flatten | dense 2 | relu",
    };
    for (size_t i = 0; i < sizeof qspecs / sizeof qspecs[0]; i++) {
        kd_model *f, *q;
        float x[16 * 72];
        for (size_t j = 0; j < sizeof x / sizeof x[0]; j++) x[j] = (float)((j * 37) % 101) / 100.0f;
        check(kd_model_create(qspecs[i], i, &f));
        check(kd_model_quantize(f, x, 16, KD_CALIBRATION_MINMAX, 0, &q));
        snprintf(name, sizeof name, "int8_%zu.safetensors", i);
        path_of(p, sizeof p, "model_load", name);
        check(kd_model_save(q, p));
        path_of(p, sizeof p, "safetensors", name);
        check(kd_model_save(q, p));
        kd_model_destroy(q);
        kd_model_destroy(f);
    }
    /* The checkpoint of fuzz_checkpoint's trainer, after two steps. */
    kd_model *student, *teacher;
    kd_loss *loss;
    kd_feature_loss *hint;
    kd_optimizer *opt;
    kd_trainer *t;
    check(kd_model_create("input 8 | dense 16 | bn | relu | dropout 0.25 | dense 4", 7, &student));
    check(kd_model_create("input 8 | dense 12 | relu | dense 4", 8, &teacher));
    check(kd_loss_create(KD_LOSS_HINTON, &loss));
    check(kd_feature_loss_create(KD_FEATURE_HINT, &hint));
    check(kd_optimizer_create(KD_OPTIMIZER_SGD, student, &opt));
    check(kd_optimizer_set_float(opt, KD_OPT_MOMENTUM, 0.9f));
    check(kd_trainer_create(student, loss, opt, &t));
    check(kd_trainer_add_teacher(t, teacher, 1.0f));
    check(kd_trainer_add_feature_loss(t, hint, 1, 0, 0, "dense 12", 0.5f));
    float x[6 * 8], value;
    int32_t y[6];
    for (int i = 0; i < 6 * 8; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    for (int i = 0; i < 6; i++) y[i] = i % 4;
    for (int s = 0; s < 2; s++) check(kd_trainer_step(t, x, y, NULL, 6, &value));
    path_of(p, sizeof p, "checkpoint", "rig.ckpt");
    check(kd_trainer_save(t, p));
    kd_trainer_destroy(t);
    kd_optimizer_destroy(opt);
    kd_feature_loss_destroy(hint);
    kd_loss_destroy(loss);
    kd_model_destroy(teacher);
    kd_model_destroy(student);
    /* IDX: u8 images [3, 2, 2] and labels [3], plain. */
    const unsigned char images[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0,  0,
                                    0, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1};
    put("idx", "images.idx", images, sizeof images);
    put("idx", "labels.idx", labels, sizeof labels);
    return 0;
}
