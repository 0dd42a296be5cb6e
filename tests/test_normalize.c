/* Input normalisation: applied by every float call and the teachers' soft targets, kept through
 * save, load and clone, refused when malformed; dataset channel statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define C 3
#define H 2
#define W 2
#define B 5
#define IN (C * H * W)
#define OUT 4

static const float MEAN[C] = {0.485f, 0.456f, 0.406f}, STD[C] = {0.229f, 0.224f, 0.225f};

static void normalise(const float *x, float *y)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < H * W; k++) {
                int i = (b * C + c) * H * W + k;
                y[i] = (x[i] - MEAN[c]) / STD[c];
            }
}

static kd_model *model(uint64_t seed)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 3x2x2 | conv 4 1 | relu | flatten | dense 4", seed, &m),
                     KD_OK);
    return m;
}

START_TEST(applied_everywhere)
{
    float x[B * IN], xn[B * IN], want[B * OUT], got[B * OUT];
    kdt_fill(x, B * IN, 7, 0.0f, 1.0f);
    normalise(x, xn);
    kd_model *plain = model(3), *m = model(3);
    ck_assert_int_eq(kd_model_set_normalization(m, MEAN, STD, C), KD_OK);
    ck_assert_int_eq(kd_model_predict(plain, xn, B, want), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, B, got), KD_OK);
    ck_assert_mem_eq(got, want, sizeof got);
    ck_assert_int_eq(kd_model_forward(m, x, B, got), KD_OK);
    ck_assert_mem_eq(got, want, sizeof got);
    /* x itself is left as it was. */
    float again[B * IN];
    kdt_fill(again, B * IN, 7, 0.0f, 1.0f);
    ck_assert_mem_eq(x, again, sizeof x);
    int32_t labels[B];
    for (int i = 0; i < B; i++) {
        int best = 0;
        for (int k = 1; k < OUT; k++)
            if (want[i * OUT + k] > want[i * OUT + best]) best = k;
        labels[i] = (i % 2) ? best : (best + 1) % OUT;
    }
    int64_t correct;
    ck_assert_int_eq(kd_model_evaluate(m, x, labels, B, 2, &correct, NULL), KD_OK);
    ck_assert_int_eq(correct, B / 2);
    /* The teachers' soft targets see normalised inputs too. */
    float p1[B * OUT], p2[B * OUT];
    ck_assert_int_eq(kd_teacher_soft_targets(&m, NULL, 1, x, B, 4.0f, p1), KD_OK);
    ck_assert_int_eq(kd_teacher_soft_targets(&plain, NULL, 1, xn, B, 4.0f, p2), KD_OK);
    ck_assert_mem_eq(p1, p2, sizeof p1);
    /* Removed: the model reads x as it is again. */
    ck_assert_int_eq(kd_model_set_normalization(m, NULL, NULL, 0), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, xn, B, got), KD_OK);
    ck_assert_mem_eq(got, want, sizeof got);
    kd_model_destroy(plain);
    kd_model_destroy(m);
}
END_TEST

/* A trainer step on raw x with a normalised student and teacher is the step on normalised x
 * without: the same loss, the same weights after. */
START_TEST(trainer_step)
{
    float x[B * IN], xn[B * IN], loss[2];
    int32_t labels[B] = {0, 1, 2, 3, 0};
    kdt_fill(x, B * IN, 11, 0.0f, 1.0f);
    normalise(x, xn);
    kd_model *students[2];
    for (int k = 0; k < 2; k++) {
        kd_model *s = model(6), *t = model(7);
        if (k == 0) {
            ck_assert_int_eq(kd_model_set_normalization(s, MEAN, STD, C), KD_OK);
            ck_assert_int_eq(kd_model_set_normalization(t, MEAN, STD, C), KD_OK);
        }
        kd_loss *l;
        kd_optimizer *o;
        kd_trainer *tr;
        ck_assert_int_eq(kd_loss_create(KD_LOSS_HINTON, &l), KD_OK);
        ck_assert_int_eq(kd_optimizer_create(KD_OPTIMIZER_SGD, s, &o), KD_OK);
        ck_assert_int_eq(kd_trainer_create(s, l, o, &tr), KD_OK);
        ck_assert_int_eq(kd_trainer_add_teacher(tr, t, 1.0f), KD_OK);
        for (int step = 0; step < 3; step++)
            ck_assert_int_eq(kd_trainer_step(tr, k == 0 ? x : xn, labels, NULL, B, &loss[k]),
                             KD_OK);
        kd_trainer_destroy(tr);
        kd_optimizer_destroy(o);
        kd_loss_destroy(l);
        kd_model_destroy(t);
        students[k] = s;
    }
    ck_assert_float_eq(loss[0], loss[1]);
    float a[B * OUT], b[B * OUT];
    ck_assert_int_eq(kd_model_predict(students[0], x, B, a), KD_OK);
    ck_assert_int_eq(kd_model_predict(students[1], xn, B, b), KD_OK);
    ck_assert_mem_eq(a, b, sizeof a);
    kd_model_destroy(students[0]);
    kd_model_destroy(students[1]);
}
END_TEST

START_TEST(saved_loaded_cloned)
{
    float x[B * IN], want[B * OUT], got[B * OUT];
    kdt_fill(x, B * IN, 9, 0.0f, 1.0f);
    kd_model *m = model(4), *back, *c;
    ck_assert_int_eq(kd_model_set_normalization(m, MEAN, STD, C), KD_OK);
    ck_assert_int_eq(kd_model_predict(m, x, B, want), KD_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/norm.safetensors", kdt_tmpdir());
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &back), KD_OK);
    float mean[C], std[C];
    int64_t n;
    ck_assert_int_eq(kd_model_get_normalization(back, NULL, NULL, &n), KD_OK);
    ck_assert_int_eq(n, C);
    ck_assert_int_eq(kd_model_get_normalization(back, mean, std, &n), KD_OK);
    ck_assert_mem_eq(mean, MEAN, sizeof mean); /* %.9g reads back every bit */
    ck_assert_mem_eq(std, STD, sizeof std);
    ck_assert_int_eq(kd_model_predict(back, x, B, got), KD_OK);
    ck_assert_mem_eq(got, want, sizeof got);
    ck_assert_int_eq(kd_model_clone(back, &c), KD_OK);
    ck_assert_int_eq(kd_model_predict(c, x, B, got), KD_OK);
    ck_assert_mem_eq(got, want, sizeof got);

    /* The metadata is plain text: a malformed value refuses the whole load. */
    static const char *const bad[][2] = {
        {"0.5,0.5", "0.2,0.2"}, {"0.5", "0"},  {"0.5,x,1", "1,1,1"},
        {"0.5", "0.2,0.2,0.2"}, {"", ""},      {"0.5,,1", "1,1,1"},
        {"nan", "1"},           {"0.5", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_tensors *t;
        ck_assert_int_eq(kd_tensors_load(path, &t), KD_OK);
        ck_assert_int_eq(kd_tensors_set_meta(t, "kd.normalize.mean", bad[i][0]), KD_OK);
        if (bad[i][1] != NULL)
            ck_assert_int_eq(kd_tensors_set_meta(t, "kd.normalize.std", bad[i][1]), KD_OK);
        char bpath[600];
        snprintf(bpath, sizeof bpath, "%s/bad.safetensors", kdt_tmpdir());
        if (bad[i][1] == NULL) {
            /* Only the mean: write a file without the std key. */
            kd_tensors *u;
            ck_assert_int_eq(kd_tensors_create(&u), KD_OK);
            int32_t count;
            ck_assert_int_eq(kd_tensors_count(t, &count), KD_OK);
            for (int32_t k = 0; k < count; k++) {
                const char *name;
                kd_dtype dt;
                int32_t nd;
                int64_t dims[KD_TENSORS_MAX_DIMS];
                const void *data;
                ck_assert_int_eq(kd_tensors_name(t, k, &name), KD_OK);
                ck_assert_int_eq(kd_tensors_info(t, name, &dt, &nd, dims), KD_OK);
                ck_assert_int_eq(kd_tensors_data(t, name, &data, NULL), KD_OK);
                ck_assert_int_eq(kd_tensors_set(u, name, dt, nd, dims, data), KD_OK);
            }
            const char *spec;
            ck_assert_int_eq(kd_tensors_get_meta(t, "kd.spec", &spec), KD_OK);
            ck_assert_int_eq(kd_tensors_set_meta(u, "kd.spec", spec), KD_OK);
            ck_assert_int_eq(kd_tensors_set_meta(u, "kd.normalize.mean", "0.5"), KD_OK);
            kd_tensors_destroy(t);
            t = u;
        }
        ck_assert_int_eq(kd_tensors_save(t, bpath), KD_OK);
        kd_tensors_destroy(t);
        kd_model *r = (kd_model *)0x1;
        ck_assert_msg(kd_model_load(bpath, &r) == KD_ERR_FORMAT, "case %zu: %s", i,
                      kd_last_error());
        ck_assert_ptr_eq(r, (kd_model *)0x1);
        ck_assert_ptr_nonnull(strstr(kd_last_error(), "bad.safetensors"));
    }
    kd_model_destroy(c);
    kd_model_destroy(back);
    kd_model_destroy(m);
}
END_TEST

START_TEST(refused)
{
    kd_model *m = model(5);
    float one = 1.0f, zero = 0.0f, nan = NAN;
    ck_assert_int_eq(kd_model_set_normalization(m, MEAN, STD, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_set_normalization(m, &one, &zero, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_set_normalization(m, &nan, &one, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_set_normalization(m, NULL, &one, 1), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_set_normalization(m, &one, &one, -1), KD_ERR_ARGUMENT);
    int64_t n;
    ck_assert_int_eq(kd_model_get_normalization(m, NULL, NULL, &n), KD_OK);
    ck_assert_int_eq(n, 0);
    /* One pair for every value is fine. */
    ck_assert_int_eq(kd_model_set_normalization(m, &one, &one, 1), KD_OK);
    ck_assert_int_eq(kd_model_set_normalization(m, MEAN, STD, 2), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_model_get_normalization(m, NULL, NULL, &n), KD_OK);
    ck_assert_int_eq(n, 1);
    kd_model_destroy(m);
    ck_assert_int_eq(kd_model_create("tokens 8 4 | embed 4 | lmhead 8", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_set_normalization(m, &one, &one, 1), KD_ERR_UNSUPPORTED);
    kd_model_destroy(m);
}
END_TEST

START_TEST(channel_stats)
{
    kd_dataset *d;
    ck_assert_int_eq(kd_dataset_load_npy(KDT_DATA "/numpy/x_f32.npy", NULL, &d), KD_OK);
    float mean[4], std[4];
    ck_assert_int_eq(kd_dataset_channel_stats(d, mean, std), KD_OK);
    /* Column j of (arange(24).reshape(6, 4) - 10) / 4: values (4i + j - 10) / 4, i = 0..5. */
    for (int j = 0; j < 4; j++) {
        ck_assert_float_eq_tol(mean[j], (10.0f + (float)j - 10.0f) / 4.0f, 1e-6f);
        ck_assert_float_eq_tol(std[j], (float)sqrt(35.0 / 12.0), 1e-6f); /* 4 * std(0..5) / 4 */
    }
    kd_dataset_destroy(d);
    /* A feature that never varies gets std 1. */
    char path[512];
    snprintf(path, sizeof path, "%s/constant.csv", kdt_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("a,b\n2,1\n2,3\n", f);
    fclose(f);
    ck_assert_int_eq(kd_dataset_load_csv(path, NULL, &d), KD_OK);
    ck_assert_int_eq(kd_dataset_channel_stats(d, mean, std), KD_OK);
    ck_assert(mean[0] == 2.0f && std[0] == 1.0f && mean[1] == 2.0f && std[1] == 1.0f);
    kd_dataset_destroy(d);
    /* Images: one mean and std a channel. */
    ck_assert_int_eq(kd_dataset_load_npy(KDT_DATA "/numpy/x_u8_nchw.npy", NULL, &d), KD_OK);
    ck_assert_int_eq(kd_dataset_channel_stats(d, mean, std), KD_OK);
    double sum[2] = {0}, sq[2] = {0};
    const float *x = kd_dataset_images(d);
    for (int i = 0; i < 6 * 18; i++) sum[(i / 9) % 2] += x[i];
    for (int i = 0; i < 6 * 18; i++) {
        double dv = x[i] - sum[(i / 9) % 2] / 54.0;
        sq[(i / 9) % 2] += dv * dv;
    }
    for (int c = 0; c < 2; c++) {
        ck_assert_float_eq_tol(mean[c], sum[c] / 54.0, 1e-6);
        ck_assert_float_eq_tol(std[c], sqrt(sq[c] / 54.0), 1e-6);
    }
    kd_dataset_destroy(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("normalize");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, applied_everywhere);
    tcase_add_test(tc, trainer_step);
    tcase_add_test(tc, saved_loaded_cloned);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, channel_stats);
    suite_add_tcase(s, tc);
    return kdt_run(s);
}
