#include "faults.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

kdt_alloc_stats kdt_alloc;

/* Each block carries its size in a 16-byte header (keeps malloc's alignment). */
#define HDR 16

static int fail_now(void)
{
    kdt_alloc.calls++;
    if (kdt_alloc.fail_at > 0 && kdt_alloc.calls == kdt_alloc.fail_at) {
        kdt_alloc.failed++;
        return 1;
    }
    return 0;
}

static void *track(unsigned char *raw, size_t size)
{
    if (raw == NULL) return NULL;
    memcpy(raw, &size, sizeof size);
    kdt_alloc.bytes += (int64_t)size;
    if (kdt_alloc.bytes > kdt_alloc.peak_bytes) kdt_alloc.peak_bytes = kdt_alloc.bytes;
    return raw + HDR;
}

static void *t_malloc(void *user, size_t size)
{
    (void)user;
    if (fail_now()) return NULL;
    void *p = track(malloc(size + HDR), size);
    kdt_alloc.live += p != NULL;
    return p;
}

static void *t_calloc(void *user, size_t n, size_t size)
{
    (void)user;
    if (fail_now()) return NULL;
    if (size != 0 && n > (SIZE_MAX - HDR) / size) return NULL;
    void *p = track(calloc(1, n * size + HDR), n * size);
    kdt_alloc.live += p != NULL;
    return p;
}

static void t_free(void *user, void *p)
{
    (void)user;
    if (p == NULL) return;
    unsigned char *raw = (unsigned char *)p - HDR;
    size_t size;
    memcpy(&size, raw, sizeof size);
    kdt_alloc.bytes -= (int64_t)size;
    kdt_alloc.live--;
    free(raw);
}

static void *t_realloc(void *user, void *p, size_t size)
{
    (void)user;
    if (p == NULL) return t_malloc(user, size);
    if (fail_now()) return NULL;
    unsigned char *raw = (unsigned char *)p - HDR;
    size_t old;
    memcpy(&old, raw, sizeof old);
    unsigned char *grown = realloc(raw, size + HDR);
    if (grown == NULL) return NULL;
    kdt_alloc.bytes -= (int64_t)old;
    return track(grown, size);
}

void kdt_alloc_install(void)
{
    memset(&kdt_alloc, 0, sizeof kdt_alloc);
    ck_assert_int_eq(kd_set_allocator(t_malloc, t_calloc, t_realloc, t_free, NULL), KD_OK);
}

void kdt_alloc_arm(int64_t fail_at)
{
    kdt_alloc.calls = 0;
    kdt_alloc.failed = 0;
    kdt_alloc.fail_at = fail_at;
    kdt_alloc.peak_bytes = kdt_alloc.bytes;
}

#define STUDENT "input 8 | dense 16 | bn | relu | dropout 0.25 | dense 4"
#define TEACHER "input 8 | dense 12 | relu | dense 4"

kd_status kdt_rig_make(kdt_rig *r)
{
    memset(r, 0, sizeof *r);
    kd_status st = kd_model_create(STUDENT, 7, &r->student);
    if (st == KD_OK) st = kd_model_create(TEACHER, 8, &r->teacher);
    if (st == KD_OK) st = kd_loss_create(KD_LOSS_HINTON, &r->loss);
    if (st == KD_OK) st = kd_feature_loss_create(KD_FEATURE_HINT, &r->hint);
    if (st == KD_OK) st = kd_optimizer_create(KD_OPTIMIZER_SGD, r->student, &r->opt);
    if (st == KD_OK) st = kd_optimizer_set_float(r->opt, KD_OPT_MOMENTUM, 0.9f);
    if (st == KD_OK) st = kd_trainer_create(r->student, r->loss, r->opt, &r->t);
    if (st == KD_OK) st = kd_trainer_add_teacher(r->t, r->teacher, 1.0f);
    /* The hint: the student's batch norm output (16) through a "dense 12" regressor, against the
     * teacher's first layer (12). */
    if (st == KD_OK) st = kd_trainer_add_feature_loss(r->t, r->hint, 1, 0, 0, "dense 12", 0.5f);
    if (st != KD_OK) kdt_rig_free(r);
    return st;
}

void kdt_rig_free(kdt_rig *r)
{
    kd_trainer_destroy(r->t);
    kd_optimizer_destroy(r->opt);
    kd_feature_loss_destroy(r->hint);
    kd_loss_destroy(r->loss);
    kd_model_destroy(r->teacher);
    kd_model_destroy(r->student);
    memset(r, 0, sizeof *r);
}

kd_status kdt_rig_step(kdt_rig *r, uint64_t k)
{
    float x[KDT_RIG_BATCH * KDT_RIG_IN], loss;
    int32_t y[KDT_RIG_BATCH];
    kdt_fill(x, KDT_RIG_BATCH * KDT_RIG_IN, 100 + k, -1.0f, 1.0f);
    for (int i = 0; i < KDT_RIG_BATCH; i++) y[i] = (int32_t)((i + k) % KDT_RIG_CLASSES);
    return kd_trainer_step(r->t, x, y, NULL, KDT_RIG_BATCH, &loss);
}

unsigned char *kdt_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

unsigned char *kdt_trainer_state(const kd_trainer *t, size_t *n)
{
    char path[512];
    static _Atomic int serial;
    snprintf(path, sizeof path, "%s/state-snapshot.%d.safetensors", kdt_tmpdir(), serial++);
    /* Never a failing allocation here (and no write to the counters when none is armed, so
     * threads may snapshot at once). */
    int64_t fail_at = kdt_alloc.fail_at, calls = kdt_alloc.calls;
    if (fail_at != 0) kdt_alloc.fail_at = 0;
    ck_assert_msg(kd_trainer_save(t, path) == KD_OK, "%s", kd_last_error());
    if (fail_at != 0) {
        kdt_alloc.fail_at = fail_at;
        kdt_alloc.calls = calls;
    }
    unsigned char *b = kdt_read_file(path, n);
    remove(path);
    return b;
}

int kdt_count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}
