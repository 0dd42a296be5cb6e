/* Distinct handles on distinct threads (kd.h's promise): two trainers, each with its own student,
 * teacher, loss, optimizer and feature term, step, save, load and fail at once on two threads, and
 * end exactly where the same work done on one thread ends. Run under ThreadSanitizer by
 * tests/ci/hardening.sh (-DKD_SANITIZE=thread). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "testutil.h"

#define STEPS 12

typedef struct job {
    int id;
    kd_status status;
    unsigned char *state;
    size_t size;
    char error_seen[128];
} job;

static void *work(void *arg)
{
    job *j = arg;
    kdt_rig r;
    char path[512];
    snprintf(path, sizeof path, "%s/thread%d.ckpt", kdt_tmpdir(), j->id);
    j->status = kdt_rig_make(&r);
    for (int s = 0; j->status == KD_OK && s < STEPS; s++) {
        j->status = kdt_rig_step(&r, (uint64_t)s);
        if (j->status == KD_OK && s == STEPS / 2) j->status = kd_trainer_save(r.t, path);
        if (j->status == KD_OK && s == STEPS / 2) j->status = kd_trainer_load(r.t, path);
        /* A failure on this thread names this thread's mistake, whatever the other one does. */
        if (j->status == KD_OK && kd_trainer_step(r.t, NULL, NULL, NULL, 1, NULL) == KD_OK)
            j->status = KD_ERR_STATE;
        snprintf(j->error_seen, sizeof j->error_seen, "%s", kd_last_error());
    }
    if (j->status == KD_OK) j->state = kdt_trainer_state(r.t, &j->size);
    kdt_rig_free(&r);
    remove(path);
    return NULL;
}

START_TEST(two_trainers_on_two_threads)
{
    job serial = {.id = 9}, jobs[2] = {{.id = 0}, {.id = 1}};
    work(&serial);
    ck_assert_int_eq(serial.status, KD_OK);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, work, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(jobs[i].status == KD_OK, "thread %d: %s", i, jobs[i].error_seen);
        ck_assert(strstr(jobs[i].error_seen, "NULL") != NULL);
        ck_assert(jobs[i].size == serial.size &&
                  memcmp(jobs[i].state, serial.state, serial.size) == 0);
        free(jobs[i].state);
    }
    free(serial.state);
}
END_TEST

/* Batch-1 predictions on 2 threads hand half of each dense layer's GEMV to libkd's helper thread:
 * two host threads predicting at once with their own models (one of them gets the helper, the
 * other runs alone) get one thread's values bitwise. */
enum { PREDICTS = 300 };
typedef struct {
    kd_model *m;
    float x[784], y[PREDICTS][10];
    kd_status status;
} predictor;

static void *predict_many(void *arg)
{
    predictor *p = arg;
    for (int i = 0; i < PREDICTS && p->status == KD_OK; i++) {
        p->x[i % 784] += 0.01f;
        p->status = kd_model_predict(p->m, p->x, 1, p->y[i]);
    }
    return NULL;
}

START_TEST(batch1_predictions_on_the_helper)
{
    static predictor one[2], two[2];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 2; r++) {
            predictor *p = r == 0 ? &one[i] : &two[i];
            ck_assert_int_eq(kd_model_create("input 784 | dense 256 | relu | dense 10",
                                             (uint64_t)(5 + i), &p->m),
                             KD_OK);
            kdt_fill(p->x, 784, (uint64_t)(7 + i), -1.0f, 1.0f);
            p->status = KD_OK;
        }
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    for (int i = 0; i < 2; i++) predict_many(&one[i]);
    ck_assert_int_eq(kd_set_threads(2), KD_OK);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, predict_many, &two[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(kd_set_threads(1), KD_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(one[i].status, KD_OK);
        ck_assert_int_eq(two[i].status, KD_OK);
        ck_assert(memcmp(one[i].y, two[i].y, sizeof one[i].y) == 0);
        kd_model_destroy(one[i].m);
        kd_model_destroy(two[i].m);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *t = tcase_create("threads");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, two_trainers_on_two_threads);
    tcase_add_test(t, batch1_predictions_on_the_helper);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
