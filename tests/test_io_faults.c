/* I/O failures, injected one by one: this test is linked with --wrap for the C library's file
 * calls the library makes (create, write, flush, fsync, close, rename; open and read for loads),
 * and for every kind and every N the call meeting its Nth such call failing must return KD_ERR_IO,
 * leave the old file byte-identical with no temporary file beside it, change nothing and leak
 * nothing. Each scenario prints its count of injected failures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"
#include "testutil.h"

enum op { OP_CREATE, OP_WRITE, OP_FLUSH, OP_FSYNC, OP_CLOSE, OP_RENAME, OP_OPEN, OP_READ, NOPS };
static const char *const op_names[NOPS] = {"create", "write",  "flush", "fsync",
                                           "close",  "rename", "open",  "read"};

static struct {
    int armed;
    enum op op;
    int64_t calls, fail_at, failed;
} io;

/* 1 when this call of op is the one to fail. */
static int io_fail(enum op op)
{
    if (!io.armed || op != io.op) return 0;
    if (++io.calls != io.fail_at) return 0;
    io.failed++;
    return 1;
}

int __real_mkstemp(char *t);
int __wrap_mkstemp(char *t)
{
    if (io_fail(OP_CREATE)) {
        errno = ENOSPC;
        return -1;
    }
    return __real_mkstemp(t);
}

size_t __real_fwrite(const void *p, size_t size, size_t n, FILE *f);
size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (io_fail(OP_WRITE)) {
        errno = ENOSPC;
        return n / 2; /* a short write: part of the data reached the file */
    }
    return __real_fwrite(p, size, n, f);
}

int __real_fflush(FILE *f);
int __wrap_fflush(FILE *f)
{
    if (io_fail(OP_FLUSH)) {
        errno = EIO;
        return EOF;
    }
    return __real_fflush(f);
}

int __real_fsync(int fd);
int __wrap_fsync(int fd)
{
    if (io_fail(OP_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

int __real_fclose(FILE *f);
int __wrap_fclose(FILE *f)
{
    int failing = io_fail(OP_CLOSE);
    int rc = __real_fclose(f); /* the stream is gone either way, as with a real failure */
    if (failing) {
        errno = EIO;
        return EOF;
    }
    return rc;
}

int __real_rename(const char *a, const char *b);
int __wrap_rename(const char *a, const char *b)
{
    if (io_fail(OP_RENAME)) {
        errno = EXDEV;
        return -1;
    }
    return __real_rename(a, b);
}

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode)
{
    if (io_fail(OP_OPEN)) {
        errno = EMFILE;
        return NULL;
    }
    return __real_fopen(path, mode);
}

size_t __real_fread(void *p, size_t size, size_t n, FILE *f);
size_t __wrap_fread(void *p, size_t size, size_t n, FILE *f)
{
    if (io_fail(OP_READ)) {
        errno = EIO;
        return 0;
    }
    return __real_fread(p, size, n, f);
}

static void arm(enum op op, int64_t n)
{
    io.armed = 1;
    io.op = op;
    io.calls = io.failed = 0;
    io.fail_at = n;
}

static void disarm(void) { io.armed = 0; }

static void same_bytes(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                       const char *what, enum op op, int64_t n)
{
    ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "%s changed after failing %s %lld", what,
                  op_names[op], (long long)n);
}

static void report(const char *scenario, const int64_t *per_op)
{
    printf("io faults: %-16s", scenario);
    int64_t total = 0;
    for (int op = 0; op < NOPS; op++)
        if (per_op[op] > 0) {
            printf(" %s %lld", op_names[op], (long long)per_op[op]);
            total += per_op[op];
        }
    printf(" (total %lld)\n", (long long)total);
    fflush(stdout);
}

/* A save of a trainer (trainer != 0) or a model over an existing file, failing each call in turn. */
static void save_scenario(int trainer)
{
    kdt_alloc_install();
    char path[512], prefix[64];
    snprintf(prefix, sizeof prefix, "%s", trainer ? "io.ckpt" : "io.safetensors");
    snprintf(path, sizeof path, "%s/%s", kdt_tmpdir(), prefix);
    kdt_rig r;
    ck_assert_int_eq(kdt_rig_make(&r), KD_OK);
    ck_assert_int_eq(kdt_rig_step(&r, 0), KD_OK);
    ck_assert_int_eq(trainer ? kd_trainer_save(r.t, path) : kd_model_save(r.student, path), KD_OK);
    ck_assert_int_eq(kdt_rig_step(&r, 1), KD_OK); /* a successful save would change the file */
    size_t nold, nnow, n0, n1;
    unsigned char *old = kdt_read_file(path, &nold);
    int64_t per_op[NOPS] = {0};
    for (int op = OP_CREATE; op <= OP_RENAME; op++) {
        for (int64_t n = 1;; n++) {
            ck_assert_int_lt(n, 1000);
            unsigned char *before = kdt_trainer_state(r.t, &n0);
            int64_t live = kdt_alloc.live;
            arm((enum op)op, n);
            kd_status st = trainer ? kd_trainer_save(r.t, path) : kd_model_save(r.student, path);
            int failed = io.failed > 0;
            disarm();
            /* The directory's fsync, after the rename, is not reported: the save is complete. */
            int dir_sync = failed && op == OP_FSYNC && st == KD_OK;
            if (!failed || dir_sync) {
                free(before);
                ck_assert_int_eq(st, KD_OK);
                /* The file is now the new one: put the old one back for the next kind. */
                FILE *f = fopen(path, "wb");
                ck_assert_uint_eq(fwrite(old, 1, nold, f), nold);
                fclose(f);
                break;
            }
            per_op[op]++;
            ck_assert_msg(st == KD_ERR_IO, "%s %lld: status %d", op_names[op], (long long)n, st);
            ck_assert(strstr(kd_last_error(), path) != NULL);
            ck_assert_int_eq(kdt_alloc.live, live);
            unsigned char *now = kdt_read_file(path, &nnow);
            same_bytes(old, nold, now, nnow, "the old file", (enum op)op, n);
            free(now);
            unsigned char *after = kdt_trainer_state(r.t, &n1);
            same_bytes(before, n0, after, n1, "the trainer", (enum op)op, n);
            free(before);
            free(after);
            char tmp_prefix[80];
            snprintf(tmp_prefix, sizeof tmp_prefix, "%s.tmp", prefix);
            ck_assert_int_eq(kdt_count_prefixed(kdt_tmpdir(), tmp_prefix), 0);
        }
    }
    free(old);
    kdt_rig_free(&r);
    ck_assert_int_eq(kdt_alloc.live, 0);
    for (int op = OP_CREATE; op <= OP_RENAME; op++)
        ck_assert_msg(per_op[op] > 0, "no %s was failed", op_names[op]);
    report(trainer ? "kd_trainer_save" : "kd_model_save", per_op);
    remove(path);
}

START_TEST(model_save_under_io_failures) { save_scenario(0); }
END_TEST

START_TEST(trainer_save_under_io_failures) { save_scenario(1); }
END_TEST

/* Loads: a failing open or read is KD_ERR_IO and changes nothing. */
START_TEST(loads_under_io_failures)
{
    kdt_alloc_install();
    char path[512];
    snprintf(path, sizeof path, "%s/io-load.ckpt", kdt_tmpdir());
    kdt_rig a, b;
    ck_assert_int_eq(kdt_rig_make(&a), KD_OK);
    ck_assert_int_eq(kdt_rig_make(&b), KD_OK);
    ck_assert_int_eq(kdt_rig_step(&a, 0), KD_OK);
    ck_assert_int_eq(kd_trainer_save(a.t, path), KD_OK);
    int64_t per_op[NOPS] = {0};
    for (int op = OP_OPEN; op <= OP_READ; op++) {
        for (int64_t n = 1;; n++) {
            ck_assert_int_lt(n, 1000);
            size_t n0, n1;
            unsigned char *before = kdt_trainer_state(b.t, &n0);
            int64_t live = kdt_alloc.live;
            arm((enum op)op, n);
            kd_status st = kd_trainer_load(b.t, path);
            int failed = io.failed > 0;
            disarm();
            if (!failed) {
                ck_assert_int_eq(st, KD_OK);
                free(before);
                break;
            }
            per_op[op]++;
            ck_assert_int_eq(st, KD_ERR_IO);
            ck_assert_int_eq(kdt_alloc.live, live);
            unsigned char *after = kdt_trainer_state(b.t, &n1);
            same_bytes(before, n0, after, n1, "the trainer", (enum op)op, n);
            free(before);
            free(after);
        }
    }
    kdt_rig_free(&a);
    kdt_rig_free(&b);
    ck_assert_int_eq(kdt_alloc.live, 0);
    report("kd_trainer_load", per_op);
    remove(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io_faults");
    TCase *t = tcase_create("io_faults");
    tcase_set_timeout(t, 240);
    tcase_add_test(t, model_save_under_io_failures);
    tcase_add_test(t, trainer_save_under_io_failures);
    tcase_add_test(t, loads_under_io_failures);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
