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

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *t = tcase_create("threads");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, two_trainers_on_two_threads);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
