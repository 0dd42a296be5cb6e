/* Allocation failures, injected one by one through kd_set_allocator: for every N, the call that
 * meets its Nth allocation failing returns KD_ERR_NOMEM, leaks nothing (every block the library
 * holds after destroying its handles is freed), changes nothing (the trainer's whole state, as a
 * checkpoint's bytes, is the same) and leaves the old file byte-identical with no temporary file.
 * Also the budgets of kd_set_limit (a 64-byte file must not cost gigabytes) and the removal of
 * temporary files a killed save left. Each scenario prints its count of injected failures. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"
#include "testutil.h"

/* Bounds each loop: a scenario that still allocates after this many is a failure of its own. */
#define MAX_N 4000

static void same_bytes(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                       const char *what, int64_t n)
{
    ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "%s changed after failing allocation %lld",
                  what, (long long)n);
}

static void path_in_tmp(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", kdt_tmpdir(), name);
    remove(out);
}

static void report(const char *scenario, int64_t injected)
{
    printf("faults: %-28s %lld injected allocation failures\n", scenario, (long long)injected);
    fflush(stdout);
}

static void dummy_free(void *user, void *p)
{
    (void)user;
    free(p);
}

START_TEST(allocator_arguments)
{
    kdt_alloc_install();
    ck_assert_int_eq(kd_set_allocator(NULL, NULL, NULL, NULL, NULL), KD_OK);
    ck_assert_int_eq(kd_set_allocator(NULL, NULL, NULL, dummy_free, NULL), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "all four") != NULL);
    /* Everything the library allocates goes through the host's allocator, and comes back. */
    kdt_alloc_install();
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 3 | bn | dropout 0.5 | dense 2", 1, &m),
                     KD_OK);
    ck_assert_int_gt(kdt_alloc.calls, 5);
    ck_assert_int_gt(kdt_alloc.live, 0);
    kd_model_destroy(m);
    ck_assert_int_eq(kdt_alloc.live, 0);
    ck_assert_int_eq(kdt_alloc.bytes, 0);
}
END_TEST

/* Fault 1 (a double free in kd_trainer_load when its tensor list could not be allocated) and its
 * kind: every allocation of a load fails in turn. */
START_TEST(trainer_load_under_allocation_failures)
{
    kdt_alloc_install();
    char path[512];
    path_in_tmp(path, sizeof path, "load.ckpt");
    kdt_rig a;
    ck_assert_int_eq(kdt_rig_make(&a), KD_OK);
    for (uint64_t k = 0; k < 3; k++) ck_assert_int_eq(kdt_rig_step(&a, k), KD_OK);
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    int64_t live = kdt_alloc.live, injected = 0;
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        kdt_rig b;
        kdt_alloc_arm(0);
        ck_assert_int_eq(kdt_rig_make(&b), KD_OK);
        ck_assert_int_eq(kdt_rig_step(&b, 9), KD_OK);
        size_t n0, n1;
        unsigned char *before = kdt_trainer_state(b.t, &n0);
        kdt_alloc_arm(n);
        kd_status st = kd_trainer_load(b.t, path);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) {
            ck_assert_msg(st == KD_OK, "%s", kd_last_error());
            free(before);
            kdt_rig_free(&b);
            break;
        }
        injected++;
        ck_assert_msg(st == KD_ERR_NOMEM, "allocation %lld: status %d (%s)", (long long)n, st,
                      kd_last_error());
        unsigned char *after = kdt_trainer_state(b.t, &n1);
        same_bytes(before, n0, after, n1, "the trainer", n);
        free(before);
        free(after);
        kdt_rig_free(&b);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    kdt_rig_free(&a);
    ck_assert_int_eq(kdt_alloc.live, 0);
    ck_assert_int_gt(injected, 3);
    report("kd_trainer_load", injected);
    remove(path);
}
END_TEST

START_TEST(trainer_save_under_allocation_failures)
{
    kdt_alloc_install();
    char path[512];
    path_in_tmp(path, sizeof path, "save.ckpt");
    kdt_rig a;
    ck_assert_int_eq(kdt_rig_make(&a), KD_OK);
    ck_assert_int_eq(kdt_rig_step(&a, 0), KD_OK);
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    ck_assert_int_eq(kdt_rig_step(&a, 1), KD_OK); /* a successful save would change the file */
    size_t nold, n0, n1, nnow;
    unsigned char *old = kdt_read_file(path, &nold);
    int64_t injected = 0;
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        unsigned char *before = kdt_trainer_state(a.t, &n0);
        int64_t live = kdt_alloc.live;
        kdt_alloc_arm(n);
        kd_status st = kd_trainer_save(a.t, path);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) {
            ck_assert_int_eq(st, KD_OK);
            free(before);
            break;
        }
        injected++;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_int_eq(kdt_alloc.live, live);
        unsigned char *after = kdt_trainer_state(a.t, &n1), *now = kdt_read_file(path, &nnow);
        same_bytes(before, n0, after, n1, "the trainer", n);
        same_bytes(old, nold, now, nnow, "the old checkpoint", n);
        ck_assert_int_eq(kdt_count_prefixed(kdt_tmpdir(), "save.ckpt.tmp"), 0);
        free(before);
        free(after);
        free(now);
    }
    free(old);
    kdt_rig_free(&a);
    ck_assert_int_eq(kdt_alloc.live, 0);
    ck_assert_int_gt(injected, 3);
    report("kd_trainer_save", injected);
    remove(path);
}
END_TEST

START_TEST(model_save_and_load_under_allocation_failures)
{
    kdt_alloc_install();
    char path[512];
    path_in_tmp(path, sizeof path, "model.safetensors");
    kd_model *m, *other;
    ck_assert_int_eq(kd_model_create("input 8 | dense 16 | bn | relu | dense 4", 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_create("input 8 | dense 16 | bn | relu | dense 4", 4, &other), KD_OK);
    ck_assert_int_eq(kd_model_save(other, path), KD_OK);
    size_t nold, nnow;
    unsigned char *old = kdt_read_file(path, &nold);
    int64_t saves = 0, loads = 0;
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        int64_t live = kdt_alloc.live;
        kdt_alloc_arm(n);
        kd_status st = kd_model_save(m, path);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) break;
        saves++;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_int_eq(kdt_alloc.live, live);
        unsigned char *now = kdt_read_file(path, &nnow);
        same_bytes(old, nold, now, nnow, "the old model file", n);
        free(now);
        ck_assert_int_eq(kdt_count_prefixed(kdt_tmpdir(), "model.safetensors.tmp"), 0);
    }
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        int64_t live = kdt_alloc.live;
        kd_model *loaded = NULL;
        kdt_alloc_arm(n);
        kd_status st = kd_model_load(path, &loaded);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) {
            ck_assert_int_eq(st, KD_OK);
            kd_model_destroy(loaded);
            break;
        }
        loads++;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_ptr_null(loaded);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    free(old);
    kd_model_destroy(m);
    kd_model_destroy(other);
    ck_assert_int_eq(kdt_alloc.live, 0);
    ck_assert_int_gt(saves, 2);
    ck_assert_int_gt(loads, 5);
    report("kd_model_save", saves);
    report("kd_model_load", loads);
    remove(path);
}
END_TEST

/* kd_model_quantize and the load of an int8 file: every failing allocation is NOMEM, leaks nothing,
 * gives no model. */
START_TEST(quantize_under_allocation_failures)
{
    kdt_alloc_install();
    char path[512];
    path_in_tmp(path, sizeof path, "q.safetensors");
    kd_model *f, *q = NULL;
    ck_assert_int_eq(kd_model_create("input 1x6x6 | conv 3 3 pad=1 | bn | relu | maxpool 2 | "
                                     "flatten | dense 4",
                                     3, &f),
                     KD_OK);
    float x[20 * 36];
    kdt_fill(x, 20 * 36, 5, 0, 1);
    int64_t quants = 0, loads = 0;
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        int64_t live = kdt_alloc.live;
        kdt_alloc_arm(n);
        kd_status st = kd_model_quantize(f, x, 20, KD_CALIBRATION_PERCENTILE, 99.0f, &q);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) {
            ck_assert_int_eq(st, KD_OK);
            break;
        }
        quants++;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_ptr_null(q);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    ck_assert_int_eq(kd_model_save(q, path), KD_OK);
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        int64_t live = kdt_alloc.live;
        kd_model *loaded = NULL;
        kdt_alloc_arm(n);
        kd_status st = kd_model_load(path, &loaded);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed) {
            ck_assert_int_eq(st, KD_OK);
            kd_model_destroy(loaded);
            break;
        }
        loads++;
        ck_assert_int_eq(st, KD_ERR_NOMEM);
        ck_assert_ptr_null(loaded);
        ck_assert_int_eq(kdt_alloc.live, live);
    }
    kd_model_destroy(q);
    kd_model_destroy(f);
    ck_assert_int_eq(kdt_alloc.live, 0);
    ck_assert_int_gt(quants, 5);
    report("kd_model_quantize", quants);
    report("kd_model_load (int8)", loads);
    remove(path);
}
END_TEST

/* A warmed-up step (one at this batch size already taken) and a step of a fresh trainer. */
static void step_scenario(int warm_steps, const char *name)
{
    kdt_alloc_install();
    int64_t injected = 0, absorbed = 0;
    for (int64_t n = 1;; n++) {
        ck_assert_int_lt(n, MAX_N);
        kdt_rig r;
        kdt_alloc_arm(0);
        ck_assert_int_eq(kdt_rig_make(&r), KD_OK);
        for (int k = 0; k < warm_steps; k++) ck_assert_int_eq(kdt_rig_step(&r, (uint64_t)k), KD_OK);
        size_t n0, n1;
        unsigned char *before = kdt_trainer_state(r.t, &n0);
        kdt_alloc_arm(n);
        kd_status st = kdt_rig_step(&r, 50);
        int failed = kdt_alloc.failed > 0;
        kdt_alloc_arm(0);
        if (!failed || st == KD_OK) {
            /* Done; or the failure hit an allocation made ahead for the next step (a loss's
             * second gradient buffer), which a step may do without. */
            ck_assert_msg(st == KD_OK, "%s", kd_last_error());
            free(before);
            kdt_rig_free(&r);
            if (!failed) break;
            absorbed++;
            continue;
        }
        injected++;
        ck_assert_msg(st == KD_ERR_NOMEM, "allocation %lld: status %d (%s)", (long long)n, st,
                      kd_last_error());
        unsigned char *after = kdt_trainer_state(r.t, &n1);
        same_bytes(before, n0, after, n1, "the trainer", n);
        free(before);
        free(after);
        /* And the trainer still works: the same step now succeeds. */
        ck_assert_int_eq(kdt_rig_step(&r, 50), KD_OK);
        kdt_rig_free(&r);
        ck_assert_int_eq(kdt_alloc.live, 0);
    }
    report(name, injected);
    if (absorbed > 0)
        printf("faults: %-28s %lld more absorbed (the step succeeded)\n", name,
               (long long)absorbed);
}

START_TEST(warm_step_under_allocation_failures) { step_scenario(2, "kd_trainer_step (warm)"); }
END_TEST

/* Fault 3: a fresh trainer's step allocates its workspaces (loss, feature terms) after the
 * student's forward has moved batch norm's statistics and the dropout stream. */
START_TEST(fresh_step_under_allocation_failures) { step_scenario(0, "kd_trainer_step (fresh)"); }
END_TEST

/* Fault 2: a 64-byte file whose spec asks for 2^28 weights. */
START_TEST(tiny_file_with_a_huge_spec_is_refused_cheaply)
{
    kdt_alloc_install();
    char path[512];
    path_in_tmp(path, sizeof path, "hostile.safetensors");
    static const char header[] = "{\"__metadata__\":{\"kd.spec\":\"input 16384 | dense 16384\"}}";
    ck_assert_uint_eq(sizeof header - 1, 56);
    FILE *f = fopen(path, "wb");
    unsigned char len[8] = {0x38, 0, 0, 0, 0, 0, 0, 0};
    fwrite(len, 1, 8, f);
    fwrite(header, 1, sizeof header - 1, f);
    fclose(f);
    kd_model *m = NULL;
    kdt_alloc_arm(0);
    ck_assert_int_eq(kd_model_load(path, &m), KD_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_msg(kdt_alloc.peak_bytes < (1 << 20), "peak %lld bytes",
                  (long long)kdt_alloc.peak_bytes);
    ck_assert(strstr(kd_last_error(), path) != NULL);
    ck_assert_int_eq(kdt_alloc.live, 0);
    remove(path);
}
END_TEST

START_TEST(spec_budget)
{
    kdt_alloc_install();
    int64_t def;
    ck_assert_int_eq(kd_get_limit(KD_LIMIT_MODEL_VALUES, &def), KD_OK);
    ck_assert_int_eq(def, 1LL << 28);
    ck_assert_int_eq(kd_set_limit(KD_LIMIT_MODEL_VALUES, 0), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_set_limit((kd_limit)7, 10), KD_ERR_ARGUMENT);
    kd_model *m = NULL;
    /* Over the default budget: refused before the first weight is allocated. */
    kdt_alloc_arm(0);
    ck_assert_int_eq(kd_model_create("input 78784 | dense 4784 | sigmoid", 1, &m), KD_ERR_FORMAT);
    ck_assert(strstr(kd_last_error(), "KD_LIMIT_MODEL_VALUES") != NULL);
    ck_assert_int_lt(kdt_alloc.peak_bytes, 1 << 20);
    /* A typo late in the spec is found before anything large is allocated. */
    kdt_alloc_arm(0);
    ck_assert_int_eq(kd_model_create("input 4000 | dense 4000 | dens | sigmoid", 1, &m),
                     KD_ERR_FORMAT);
    ck_assert(strstr(kd_last_error(), "dens") != NULL);
    ck_assert_int_lt(kdt_alloc.peak_bytes, 1 << 20);
    /* Found by fuzz_spec: batch norm allocated a per-channel workspace before its parameters
     * were checked against the budget. */
    kdt_alloc_arm(0);
    ck_assert_int_eq(kd_model_create("input 666666641 | bn | dense 2", 1, &m), KD_ERR_FORMAT);
    ck_assert_int_lt(kdt_alloc.peak_bytes, 1 << 20);
    /* The budget counts the whole model, nested bodies included. */
    ck_assert_int_eq(kd_set_limit(KD_LIMIT_MODEL_VALUES, 200), KD_OK);
    ck_assert_int_eq(kd_model_create("input 10 | dense 10 | dense 5", 1, &m), KD_OK); /* 165 */
    kd_model_destroy(m);
    ck_assert_int_eq(kd_model_create("input 10 | dense 10 | residual(dense 10) | dense 5", 1, &m),
                     KD_ERR_FORMAT);
    ck_assert_int_eq(kd_set_limit(KD_LIMIT_MODEL_VALUES, def), KD_OK);
    ck_assert_int_eq(kdt_alloc.live, 0);
}
END_TEST

START_TEST(file_budget)
{
    char path[512];
    path_in_tmp(path, sizeof path, "budget.safetensors");
    kd_model *m, *loaded = NULL;
    ck_assert_int_eq(kd_model_create("input 8 | dense 16 | dense 4", 3, &m), KD_OK);
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    int64_t def;
    ck_assert_int_eq(kd_get_limit(KD_LIMIT_FILE_BYTES, &def), KD_OK);
    ck_assert_int_eq(kd_set_limit(KD_LIMIT_FILE_BYTES, 100), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &loaded), KD_ERR_FORMAT);
    ck_assert(strstr(kd_last_error(), "KD_LIMIT_FILE_BYTES") != NULL);
    ck_assert_int_eq(kd_set_limit(KD_LIMIT_FILE_BYTES, def), KD_OK);
    ck_assert_int_eq(kd_model_load(path, &loaded), KD_OK);
    kd_model_destroy(loaded);
    kd_model_destroy(m);
    remove(path);
}
END_TEST

/* Fault 4: what a killed save left (NAME.tmp.XXXXXX) goes at the next save or resume; files that
 * only look alike, newer ones, and links stay. */
static void make_file(const char *dir, const char *name, int age_seconds)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("partial", f);
    fclose(f);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec += -age_seconds;
    t[1] = t[0];
    ck_assert_int_eq(utimensat(AT_FDCWD, p, t, 0), 0);
}

static int exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return lstat(p, &sb) == 0;
}

START_TEST(stale_temporary_files_are_removed)
{
    char dir[512], path[600], link_path[700];
    snprintf(dir, sizeof dir, "%s/stale", kdt_tmpdir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/m.st", dir);
    make_file(dir, "m.st.tmp.Ab3xYz", 60);     /* stale: removed */
    make_file(dir, "m.st.tmp.Ab3xY", 60);      /* not mkstemp's pattern */
    make_file(dir, "m.st.tmp.Ab3xYz.x", 60);   /* not the pattern */
    make_file(dir, "other.st.tmp.Ab3xYz", 60); /* another target */
    make_file(dir, "m.st.tmp.Fr3shh", -3600);  /* newer than this process: maybe in flight */
    snprintf(link_path, sizeof link_path, "%s/m.st.tmp.L1nkkk", dir);
    ck_assert_int_eq(symlink("other.st.tmp.Ab3xYz", link_path), 0);
    kd_model *m;
    ck_assert_int_eq(kd_model_create("input 4 | dense 2", 1, &m), KD_OK);
    ck_assert_int_eq(kd_model_save(m, path), KD_OK);
    ck_assert(!exists(dir, "m.st.tmp.Ab3xYz"));
    ck_assert(exists(dir, "m.st.tmp.Ab3xY"));
    ck_assert(exists(dir, "m.st.tmp.Ab3xYz.x"));
    ck_assert(exists(dir, "other.st.tmp.Ab3xYz"));
    ck_assert(exists(dir, "m.st.tmp.Fr3shh"));
    ck_assert(exists(dir, "m.st.tmp.L1nkkk"));
    kd_model_destroy(m);

    /* A resume (kd_trainer_load) cleans its checkpoint's too. */
    kdt_rig r;
    ck_assert_int_eq(kdt_rig_make(&r), KD_OK);
    snprintf(path, sizeof path, "%s/c.ckpt", dir);
    ck_assert_int_eq(kd_trainer_save(r.t, path), KD_OK);
    make_file(dir, "c.ckpt.tmp.Q9q9q9", 60);
    ck_assert_int_eq(kd_trainer_load(r.t, path), KD_OK);
    ck_assert(!exists(dir, "c.ckpt.tmp.Q9q9q9"));
    kdt_rig_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *t = tcase_create("faults");
    tcase_set_timeout(t, 240);
    tcase_add_test(t, allocator_arguments);
    tcase_add_test(t, trainer_load_under_allocation_failures);
    tcase_add_test(t, trainer_save_under_allocation_failures);
    tcase_add_test(t, model_save_and_load_under_allocation_failures);
    tcase_add_test(t, quantize_under_allocation_failures);
    tcase_add_test(t, warm_step_under_allocation_failures);
    tcase_add_test(t, fresh_step_under_allocation_failures);
    tcase_add_test(t, tiny_file_with_a_huge_spec_is_refused_cheaply);
    tcase_add_test(t, spec_budget);
    tcase_add_test(t, file_budget);
    tcase_add_test(t, stale_temporary_files_are_removed);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
