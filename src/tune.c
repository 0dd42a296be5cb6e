/* kd distill --auto (issue 12): successive halving (Jamieson and Talwalkar 2016; Li et al.'s
 * Hyperband bracket) over the logit method, T, alpha and the learning rate, scored on the
 * validation split only, with the settings kd distill would use without --auto (the default)
 * always among the finalists.
 *
 * Recipe (what a host program can do with the public API alone): trial 0 is the default; draw the
 * other trials (the challengers, all different from each other and from the default) with a seeded
 * generator; train each challenger for the first rung's epochs (a fresh kd_trainer each time, same
 * seed and batch order for all, so only the settings differ); keep the best half by validation
 * accuracy (kd_model_evaluate on the held-out split, kd_dataset_split), double the epochs and train
 * the survivors again from scratch, while two or more are left and the epochs stay below the full
 * budget; then the best half of the last rung and the default train the full budget (--epochs),
 * and the best of that final rung on validation wins, the default on a tie. A short rung can
 * misjudge a setting that needs the whole schedule (the default of the main job lost to a
 * 2-epoch winner that was worse at 5 epochs), so the choice is made at the budget the final run
 * uses, and the winner is never worse than the default on validation at that budget. The cost is
 * known before the start: the sum over rungs of trials times epochs. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct trial {
    int method, standardize;
    float temperature, alpha, beta, gamma, lr;
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

static int same(const trial *a, const trial *b)
{
    return a->method == b->method && a->standardize == b->standardize &&
           a->temperature == b->temperature && a->alpha == b->alpha && a->beta == b->beta &&
           a->gamma == b->gamma && a->lr == b->lr;
}

/* Trial 0: the settings of o (what kd distill runs without --auto: DIST for the main job, else
 * Hinton's T 4, alpha 0.9); trials 1 .. n-1 drawn from the grid without repeats (the grid holds
 * 96 settings, --auto-trials at most 64). */
static void draw(trial *t, int n, const options *o)
{
    static const struct {
        int method, standardize;
    } methods[] = {{KD_LOSS_HINTON, 0}, {KD_LOSS_HINTON, 1}, {KD_LOSS_DKD, 0}, {KD_LOSS_DIST, 0}};
    static const float temps[] = {1.0f, 2.0f, 4.0f, 8.0f}, alphas[] = {0.5f, 0.7f, 0.9f},
                       lrs[] = {0.5f, 1.0f, 2.0f}; /* times --lr */
    uint64_t s = o->seed * 0x2545f4914f6cdd1dULL + 12;
    memset(t, 0, sizeof *t * (size_t)n);
    t[0] = (trial){
        o->method, o->standardize, o->temperature, o->alpha, o->beta, o->gamma, o->lr, 0.0, 1};
    for (int i = 1; i < n; i++) {
        for (int tries = 0; tries < 10000; tries++) {
            int m = (int)(next(&s) % 4);
            t[i].method = methods[m].method;
            t[i].standardize = methods[m].standardize;
            t[i].temperature = temps[next(&s) % 4];
            t[i].alpha = t[i].method == KD_LOSS_HINTON ? alphas[next(&s) % 3] : 1.0f;
            t[i].beta = t[i].method == KD_LOSS_DIST ? 2.0f : 8.0f;
            t[i].gamma = 2.0f;
            t[i].lr = o->lr * lrs[next(&s) % 3];
            t[i].alive = 1;
            int repeat = 0;
            for (int j = 0; j < i && !repeat; j++) repeat = same(&t[i], &t[j]);
            if (!repeat) break;
        }
    }
}

/* The rungs: the n - 1 challengers at 1, 2, 4, ... epochs, the better half going on, while two or
 * more are left and the epochs stay below max_epochs; then the final rung at max_epochs: the
 * challengers left and the default. Returns the number of rungs, the last being the final one. */
static int plan(int n, int max_epochs, int epochs[17], int alive[17])
{
    int r = 0, k = n - 1;
    for (int e = 1; k >= 2 && e < max_epochs && r < 16; e *= 2, k = (k + 1) / 2) {
        epochs[r] = e;
        alive[r++] = k;
    }
    epochs[r] = max_epochs;
    alive[r++] = k + 1;
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

/* Trains trial t for the given epochs on train, scored on val; *seconds its wall time. */
static int run_trial(const options *o, const run_config *base, trial *t, int epochs,
                     const kd_dataset *train, const kd_dataset *val, progress *p, double *seconds)
{
    run_config c = *base;
    c.method = t->method;
    c.standardize = t->standardize;
    c.temperature = t->temperature;
    c.alpha = t->alpha;
    c.beta = t->beta;
    c.gamma = t->gamma;
    c.lr = t->lr;
    if (o->clip_auto) /* the default clipping goes with the trial's method, not the given one */
        c.clip_norm = default_clip_norm(t->method);
    c.epochs = epochs;
    /* the warm-up the final run would have with these epochs */
    c.warmup_epochs = o->warmup_auto ? (epochs / 2 < DEFAULT_DISTILL_WARMUP_EPOCHS
                                            ? epochs / 2
                                            : DEFAULT_DISTILL_WARMUP_EPOCHS)
                                     : (o->warmup_epochs < epochs ? o->warmup_epochs : epochs - 1);
    c.checkpoint = NULL;
    c.keep_best = 0;
    c.name = "trial";
    c.key = "trial";
    static run_result res;
    memset(&res, 0, sizeof res);
    double t0 = now_seconds();
    /* val twice: the per-epoch score and the final accuracy; the test set is not looked at */
    int rc = run_training(&c, train, val, val, p, &res);
    *seconds = now_seconds() - t0;
    if (rc == EXIT_COLLAPSE) {
        t->score = -1.0;
        rc = EXIT_OK;
    } else if (rc == EXIT_OK) {
        t->score = res.hist.n > 0 ? res.hist.rec[res.hist.n - 1].test_acc : 0.0;
    }
    kd_model_destroy(res.model);
    return rc;
}

int tune(const options *o, const run_config *base, const kd_dataset *train, const kd_dataset *val,
         const kd_dataset *test, progress *p, options *winner)
{
    (void)test; /* choices are made on val only */
    trial t[64];
    int n = o->auto_trials, epochs[17], alive[17];
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
    char line[400];
    int used = snprintf(line, sizeof line, "rungs");
    for (int r = 0; r < rungs; r++)
        used += snprintf(line + used, sizeof line - (size_t)used, "%s %d x %d epoch%s%s",
                         r ? "," : "", alive[r], epochs[r], epochs[r] > 1 ? "s" : "",
                         r == rungs - 1 ? " (the default and the best left)" : "");
    printf("kd distill --auto: %d trials by successive halving on the validation split (%s): %ld "
           "student epochs before the final run (--auto-budget %d)\n",
           n, line, cost, o->auto_budget);
    fflush(stdout);
    double spent = 0.0;
    long done = 0;
    for (int r = 0; r < rungs; r++) {
        int final = r == rungs - 1;
        t[0].alive = final; /* the default runs the final rung only */
        for (int i = 0; i < n; i++) {
            if (!t[i].alive) continue;
            double seconds = 0.0;
            int rc = run_trial(o, base, &t[i], epochs[r], train, val, p, &seconds);
            if (rc != EXIT_OK) return rc;
            spent += seconds;
            done += epochs[r];
            describe(&t[i], line, sizeof line);
            printf("  trial %2d  %2d epoch%s  %s  ", i, epochs[r], epochs[r] > 1 ? "s" : " ", line);
            if (t[i].score < 0)
                printf("collapsed");
            else
                printf("val %6.2f%%", t[i].score);
            if (i == 0) printf("  (the default)");
            printf("  %.1f s\n", seconds);
            if (done == epochs[r] && cost > done) /* after the first trial: the pace */
                printf("  about %.0f s for the search at this pace\n",
                       seconds * (double)cost / (double)done);
            fflush(stdout);
        }
        /* the best alive[r + 1] challengers go on to the next rung (alive[r + 1] - 1 to the final
         * one, which adds the default); the final rung's best wins */
        trial sorted[64];
        int k = 0;
        for (int i = 0; i < n; i++)
            if (t[i].alive) sorted[k++] = t[i];
        qsort(sorted, (size_t)k, sizeof *sorted, by_score);
        int keep = final ? 1 : r + 1 == rungs - 1 ? alive[r + 1] - 1 : alive[r + 1];
        if (keep > k) keep = k; /* some collapsed */
        if (keep == 0) continue;
        double cut = sorted[keep - 1].score;
        int kept = 0;
        for (int i = 0; i < n; i++) { /* ties go to the earlier trial, the default first */
            int go = t[i].alive && t[i].score >= cut && kept < keep && t[i].score >= 0;
            kept += go;
            t[i].alive = go;
        }
        if (kept == 0 && final) {
            fail_msg("--auto: every trial collapsed; try a smaller --lr");
            return EXIT_COLLAPSE;
        }
    }
    int best = 0;
    while (!t[best].alive) best++;
    describe(&t[best], line, sizeof line);
    printf("winner: trial %d%s, %s (val %.2f%% at %d epoch%s; search %.0f s)\n", best,
           best == 0 ? " (the default)" : "", line, t[best].score, epochs[rungs - 1],
           epochs[rungs - 1] > 1 ? "s" : "", spent);
    fflush(stdout);
    *winner = *o;
    winner->method = t[best].method;
    winner->standardize = t[best].standardize;
    winner->temperature = t[best].temperature;
    winner->alpha = t[best].alpha;
    winner->beta = t[best].beta;
    winner->gamma = t[best].gamma;
    winner->lr = t[best].lr;
    if (o->clip_auto) winner->clip_norm = default_clip_norm(winner->method);
    return EXIT_OK;
}
