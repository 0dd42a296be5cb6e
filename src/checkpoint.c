/* Checkpoints of the kd tool: kd_trainer_save's file (weights, optimizer state, random streams)
 * plus a small text sidecar FILE.run with the run's fingerprint and its per-epoch history, both
 * written atomically (temporary file + rename). Trained teachers in the cache keep the same sidecar,
 * so a reused teacher still has its training curves for the report. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define MAGIC "kd-run-history 1"

int history_save(const char *path, uint64_t fingerprint, const history *h, const char *note)
{
    size_t cap = 256 + (note != NULL ? strlen(note) : 0) + (size_t)h->n * 256, used = 0;
    char *buf = malloc(cap);
    if (buf == NULL) return -1;
    used += (size_t)snprintf(buf + used, cap - used, "%s\nfingerprint %016" PRIx64 "\nnote %s\n",
                             MAGIC, fingerprint, note != NULL ? note : "-");
    for (int i = 0; i < h->n; i++) {
        const epoch_rec *r = &h->rec[i];
        used += (size_t)snprintf(buf + used, cap - used,
                                 "epoch %d %.17g %.17g %.17g %.17g %.17g %.17g\n", r->epoch,
                                 r->loss, r->ce, r->train_acc, r->test_acc, r->lr, r->seconds);
    }
    int rc = write_atomic(path, buf, used);
    free(buf);
    return rc;
}

int history_read(const char *path, uint64_t *fingerprint, history *h, char *note, size_t size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[8192];
    uint64_t print = 0;
    int ok = fgets(line, sizeof line, f) != NULL && strncmp(line, MAGIC, strlen(MAGIC)) == 0 &&
             fscanf(f, " fingerprint %" SCNx64 " ", &print) == 1;
    ok = ok && fgets(line, sizeof line, f) != NULL && strncmp(line, "note ", 5) == 0;
    if (ok && note != NULL && size > 0) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(note, size, "%s", line + 5);
    }
    h->n = 0;
    while (ok && h->n < MAX_EPOCHS) {
        epoch_rec *r = &h->rec[h->n];
        int got = fscanf(f, " epoch %d %lf %lf %lf %lf %lf %lf", &r->epoch, &r->loss, &r->ce,
                         &r->train_acc, &r->test_acc, &r->lr, &r->seconds);
        if (got != 7) {
            ok = got == EOF;
            break;
        }
        ok = r->epoch == h->n + 1;
        h->n += ok;
    }
    fclose(f);
    *fingerprint = print;
    return ok ? 0 : -1;
}

int history_load(const char *path, uint64_t fingerprint, history *h)
{
    uint64_t print;
    return history_read(path, &print, h, NULL, 0) == 0 && print == fingerprint ? 0 : -1;
}

static void sidecar(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s.run", path);
}

int checkpoint_save(const char *path, kd_trainer *t, uint64_t fingerprint, const history *h,
                    const char *options)
{
    char side[4200];
    sidecar(path, side, sizeof side);
    /* The sidecar first: after a crash it is at most one epoch ahead, never behind. */
    if (history_save(side, fingerprint, h, options) != 0) {
        fail_msg("cannot write the checkpoint %s: %s", side, strerror(errno));
        return -1;
    }
    int first = access(path, F_OK) != 0;
    kd_status st = kd_trainer_save(t, path);
    if (st != KD_OK) {
        /* a first save that failed leaves no sidecar without its checkpoint */
        if (first) (void)remove(side);
        char what[4300];
        snprintf(what, sizeof what, "cannot write the checkpoint %s", path);
        fail_kd(what, st);
        return -1;
    }
    return 0;
}

/* checkpoint_peek without a message: 0 no checkpoint, 1 read, -1 its sidecar unreadable. */
static int peek(const char *path, uint64_t *fingerprint, char *options, size_t size)
{
    char side[4200];
    sidecar(path, side, sizeof side);
    remove_stale_temps(side); /* what a killed run's sidecar save left; the library cleans path's */
    if (access(path, F_OK) != 0) return 0;
    static history scratch; /* large; one per process */
    return history_read(side, fingerprint, &scratch, options, size) == 0 ? 1 : -1;
}

int checkpoint_peek(const char *path, uint64_t *fingerprint, char *options, size_t size)
{
    int got = peek(path, fingerprint, options, size);
    if (got < 0) {
        char side[4200];
        sidecar(path, side, sizeof side);
        fail_msg("the checkpoint %s has no readable %s (its run's options and history); remove "
                 "the checkpoint, or run without --resume",
                 path, side);
    }
    return got;
}

int checkpoint_options(const char *path, char *options, size_t size)
{
    uint64_t fingerprint;
    return peek(path, &fingerprint, options, size) == 1;
}

int checkpoint_load(const char *path, kd_trainer *t, kd_optimizer *o, uint64_t fingerprint,
                    int64_t steps_per_epoch, history *h)
{
    char side[4200];
    sidecar(path, side, sizeof side);
    remove_stale_temps(side); /* what a killed run's sidecar save left; the library cleans path's */
    if (access(path, F_OK) != 0) return 0;
    if (history_load(side, fingerprint, h) != 0) {
        fail_msg("the checkpoint %s belongs to a run with other options or data (or %s is "
                 "missing); remove it, or run without --resume",
                 path, side);
        return -1;
    }
    kd_status st = kd_trainer_load(t, path);
    if (st != KD_OK) {
        char what[4300];
        snprintf(what, sizeof what, "cannot resume from %s", path);
        fail_kd(what, st);
        return -1;
    }
    int64_t step = 0;
    kd_optimizer_get_int(o, KD_OPT_STEP, &step);
    if (step % steps_per_epoch != 0 || step / steps_per_epoch > h->n) {
        fail_msg("the checkpoint %s stopped at step %lld, not at the end of an epoch of %s", path,
                 (long long)step, side);
        return -1;
    }
    h->n =
        (int)(step / steps_per_epoch); /* drops an epoch the sidecar saw but the trainer did not */
    return 1;
}
