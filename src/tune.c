/* kd distill --auto (issue 12): successive halving (Jamieson and Talwalkar 2016; Li et al.'s
 * Hyperband bracket) over the logit method, T, alpha and the learning rate, scored on the
 * validation split only.
 *
 * Recipe (what a host program can do with the public API alone): draw the trials with a seeded
 * generator, the hand-picked default first; train each for the first rung's epochs (a fresh
 * kd_trainer each time, same seed and batch order for all, so only the settings differ); keep the
 * best half by validation accuracy (kd_model_evaluate on the held-out split, kd_dataset_split),
 * double the epochs and train the survivors again from scratch; stop when one is left or the rung
 * would pass the final budget. The cost is known before the start: the sum over rungs of trials
 * times epochs. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct trial {
    int method, standardize;
    float temperature, alpha, lr;
    double score; /* validation accuracy at the last rung it ran; -1 when collapsed */
    int alive;
} trial;

/* A tiny seeded generator (splitmix64), so the trials depend on --seed only. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void draw(trial *t, int n, const options *o)
{
    static const struct {
        int method, standardize;
    } methods[] = {{KD_LOSS_HINTON, 0}, {KD_LOSS_HINTON, 1}, {KD_LOSS_DKD, 0}, {KD_LOSS_DIST, 0}};
    static const float temps[] = {1.0f, 2.0f, 4.0f, 8.0f}, alphas[] = {0.5f, 0.7f, 0.9f},
                       lrs[] = {0.5f, 1.0f, 2.0f}; /* times --lr */
    uint64_t s = o->seed * 0x2545f4914f6cdd1dULL + 12;
    memset(t, 0, sizeof *t * (size_t)n);
    /* trial 0: the hand-picked default, so the winner is at least as good on validation */
    t[0] = (trial){KD_LOSS_HINTON, 0, 4.0f, 0.9f, o->lr, 0.0, 1};
    for (int i = 1; i < n; i++) {
        int m = (int)(next(&s) % 4);
        t[i].method = methods[m].method;
        t[i].standardize = methods[m].standardize;
        t[i].temperature = temps[next(&s) % 4];
        t[i].alpha = t[i].method == KD_LOSS_HINTON ? alphas[next(&s) % 3] : 1.0f;
        t[i].lr = o->lr * lrs[next(&s) % 3];
        t[i].alive = 1;
    }
}

/* The rungs' epochs: 1, 2, 4, ... while two or more trials remain and the epochs stay within
 * max_epochs; the best of the last rung wins. */
static int plan(int n, int max_epochs, int epochs[16], int alive[16])
{
    int r = 0;
    for (int e = 1, k = n; k >= 2 && e <= max_epochs && r < 16; e *= 2, k = (k + 1) / 2) {
        epochs[r] = e;
        alive[r++] = k;
    }
    return r;
}

static long cost_of(int rungs, const int *epochs, const int *alive)
{
    long c = 0;
    for (int r = 0; r < rungs; r++) c += (long)epochs[r] * alive[r];
    return c;
}

static void describe(const trial *t, char *out, size_t size)
{
    const char *name = t->method == KD_LOSS_DKD    ? "dkd"
                       : t->method == KD_LOSS_DIST ? "dist"
                       : t->standardize            ? "kd-ls"
                                                   : "kd";
    snprintf(out, size, "%-6s T %-3g alpha %-4g lr %-6g", name, (double)t->temperature,
             (double)t->alpha, (double)t->lr);
}

static int by_score(const void *a, const void *b)
{
    const trial *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

int tune(const options *o, const run_config *base, const kd_dataset *train, const kd_dataset *val,
         const kd_dataset *test, progress *p, options *winner)
{
    trial t[64];
    int n = o->auto_trials, epochs[16], alive[16];
    int rungs = plan(n, o->epochs, epochs, alive);
    while (n > 2 && cost_of(rungs, epochs, alive) > o->auto_budget) /* the bound */
        rungs = plan(--n, o->epochs, epochs, alive);
    long cost = cost_of(rungs, epochs, alive);
    if (cost > o->auto_budget) {
        fail_msg("--auto: even 2 trials cost %ld student epochs, over --auto-budget %d", cost,
                 o->auto_budget);
        return EXIT_USAGE;
    }
    draw(t, n, o);
    char line[200];
    int used = snprintf(line, sizeof line, "rungs");
    for (int r = 0; r < rungs; r++)
        used += snprintf(line + used, sizeof line - (size_t)used, "%s %d x %d epoch%s",
                         r ? "," : "", alive[r], epochs[r], epochs[r] > 1 ? "s" : "");
    printf("kd distill --auto: %d trials by successive halving on the validation split (%s): %ld "
           "student epochs before the final run (--auto-budget %d)\n",
           n, line, cost, o->auto_budget);
    fflush(stdout);
    for (int r = 0; r < rungs; r++) {
        for (int i = 0; i < n; i++) {
            if (!t[i].alive) continue;
            run_config c = *base;
            c.method = t[i].method;
            c.standardize = t[i].standardize;
            c.temperature = t[i].temperature;
            c.alpha = t[i].alpha;
            c.beta = t[i].method == KD_LOSS_DIST ? 2.0f : 8.0f;
            c.gamma = 2.0f;
            c.lr = t[i].lr;
            c.epochs = epochs[r];
            c.warmup_epochs =
                o->warmup_auto ? (epochs[r] / 2 < DEFAULT_DISTILL_WARMUP_EPOCHS
                                      ? epochs[r] / 2
                                      : DEFAULT_DISTILL_WARMUP_EPOCHS)
                               : (o->warmup_epochs < epochs[r] ? o->warmup_epochs : epochs[r] - 1);
            c.checkpoint = NULL;
            c.keep_best = 0;
            c.name = "trial";
            c.key = "trial";
            static run_result res;
            memset(&res, 0, sizeof res);
            int rc = run_training(&c, train, val, test, p, &res);
            if (rc == EXIT_COLLAPSE) {
                t[i].score = -1.0;
            } else if (rc != EXIT_OK) {
                kd_model_destroy(res.model);
                return rc;
            } else {
                t[i].score = res.hist.n > 0 ? res.hist.rec[res.hist.n - 1].test_acc : 0.0;
            }
            kd_model_destroy(res.model);
            describe(&t[i], line, sizeof line);
            if (t[i].score < 0)
                printf("  trial %2d  %d epoch%s  %s  collapsed\n", i, epochs[r],
                       epochs[r] > 1 ? "s" : " ", line);
            else
                printf("  trial %2d  %d epoch%s  %s  val %6.2f%%\n", i, epochs[r],
                       epochs[r] > 1 ? "s" : " ", line, t[i].score);
            fflush(stdout);
        }
        /* the best alive[r + 1] go on */
        trial sorted[64];
        int k = 0;
        for (int i = 0; i < n; i++)
            if (t[i].alive) sorted[k++] = t[i];
        qsort(sorted, (size_t)k, sizeof *sorted, by_score);
        int keep = r + 1 < rungs ? alive[r + 1] : 1;
        double cut = sorted[keep - 1].score;
        int kept = 0;
        for (int i = 0; i < n; i++) { /* ties go to the earlier trial */
            int go = t[i].alive && t[i].score >= cut && kept < keep && t[i].score >= 0;
            kept += go;
            t[i].alive = go;
        }
        if (kept == 0) {
            fail_msg("--auto: every trial collapsed; try a smaller --lr");
            return EXIT_COLLAPSE;
        }
    }
    int best = 0;
    while (!t[best].alive) best++;
    describe(&t[best], line, sizeof line);
    printf("winner: trial %d, %s (val %.2f%% at %d epoch%s)\n", best, line, t[best].score,
           epochs[rungs - 1], epochs[rungs - 1] > 1 ? "s" : "");
    fflush(stdout);
    *winner = *o;
    winner->method = t[best].method;
    winner->standardize = t[best].standardize;
    winner->temperature = t[best].temperature;
    winner->alpha = t[best].alpha;
    winner->beta = t[best].method == KD_LOSS_DIST ? 2.0f : 8.0f;
    winner->gamma = 2.0f;
    winner->lr = t[best].lr;
    return EXIT_OK;
}
