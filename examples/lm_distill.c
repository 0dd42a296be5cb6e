/* lm_distill: a byte-level transformer language model distilled into one about a tenth of its
 * size, through the public API: kd_text_* for the corpus, token models ("tokens 256 T | ... |
 * lmhead 256"), kd_trainer_step on batch * T token rows, token-level losses, DistilBERT's cosine
 * loss on hidden states (a feature term with a per-token regressor), MiniLM's attention KL (an
 * attention term, kd_trainer_add_attention_loss), kd_model_generate.
 *
 *   lm_distill [FILE] [--steps N] [--teacher-steps N] [--batch B] [--eval-bytes N]
 *              [--width D] [--layers L] [--heads H] [--context T] [--teacher FILE] [--seed S]
 *              [--seeds N] [--only alone,forward-kl,reverse-kl,jsd,hidden,attention]
 *
 * FILE defaults to the fortunes (apt-get install fortunes), concatenated:
 *   find /usr/share/games/fortunes -type f ! -name '*.dat' | sort | xargs cat > fortunes.txt
 * The teacher is a GPT-2 style pre-norm transformer (default 4 blocks, width 128, 4 heads,
 * context 64 bytes: about 0.85 M parameters); the student has width 48 and 2 blocks of 2 heads
 * (about 0.08 M). For each of --seeds seeds (3), every student starts from the same
 * initialisation and sees the same batches:
 *   student alone (cross-entropy on the next bytes),
 *   distilled with forward KL, reverse KL and JSD (alpha 0.5 on the teacher term, T 1),
 *   forward KL plus the cosine between its block outputs (projected by "dense D" per token)
 *   and the teacher's (weight 1, as DistilBERT's alpha_cos),
 *   forward KL plus MiniLM's attention KL (weight 1) between each student attention layer and
 *   the teacher's at the same depth fraction (the last against the last), heads averaged.
 * The table gives held-out bits per byte (the last tenth of the text, the first --eval-bytes of
 * it) as mean +- sample standard deviation over the seeds, parameters, file size, training
 * tokens/s (teacher forward included) and batch-1 generation tokens/s, then a short sample of each
 * (temperature 0.8, top-p 0.9, seed 1). The teacher is trained once (--seed).
 *
 * Runtime (one core, OPENBLAS_NUM_THREADS=1, quiet machine; from the speeds of earlier runs): the
 * defaults (1200 teacher steps, 600 student steps, 3 seeds) about 12 minutes;
 * `--teacher-steps 3000 --steps 1500` about 30 minutes. --only NAMES (alone, forward-kl,
 * reverse-kl, jsd, hidden, attention) trains those students alone: with --teacher
 * lm_teacher.safetensors (what a run saves) and --seed S --seeds 1, a job split across processes
 * gives the numbers of the whole, each student depending only on its seed.
 *
 * `lm_distill fortunes.txt --teacher-steps 3000 --steps 1500` (batch 16 x 64 bytes), held-out
 * bits per byte on the first 64 KiB of the last tenth, mean +- std over student seeds 1-3:
 *   teacher (867,072 parameters, 3.5 MB)        2.557
 *   student alone (84,288, 340 KB)              3.140 +- 0.024   3.155 / 3.113 / 3.153
 *   forward KL                                  3.005 +- 0.023   3.030 / 2.984 / 3.001
 *   reverse KL                                  3.018 +- 0.008   3.011 / 3.015 / 3.027
 *   JSD (beta 0.5)                              3.095 +- 0.027   3.115 / 3.065 / 3.106
 *   forward KL + hidden cosine                  2.968 +- 0.039   2.923 / 2.994 / 2.986
 *   forward KL + attention KL                   2.995 +- 0.014   3.000 / 3.006 / 2.980
 * (seeds 1-2 of reverse KL, JSD and the hidden cosine from an earlier run of the same code, whose
 * student alone and forward KL this run reproduces). Every loss beats the student alone on every
 * seed; the hidden cosine helps most on average (0.17 bits per byte, 30% of the gap to the
 * teacher), JSD least (0.05). Speeds of that run (2 cores, load 10-24) mean nothing; on a quiet
 * core: teacher 6,808 tokens/s training, 2,736 generating; student alone 63,764 and 23,784;
 * distilled students 15,000-21,000 (the teacher's forward is in each step). Samples are
 * fortune-shaped, not English.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd.h"

#define V KD_TEXT_VOCAB

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, kd_strerror(st_),               \
                    kd_last_error());                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct config {
    const char *path, *teacher_file;
    int64_t steps, teacher_steps, batch, eval_bytes, context, width, layers, heads, seeds;
    uint64_t seed;
    const char *only; /* --only: the students to train (NULL: all) */
} config;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void lm_spec(int64_t T, int64_t d, int64_t layers, int64_t heads, char *out, size_t size)
{
    int n = snprintf(out, size, "tokens %d %lld | embed %lld | posembed", V, (long long)T,
                     (long long)d);
    for (int64_t l = 0; l < layers; l++)
        n += snprintf(out + n, size - (size_t)n,
                      " | residual(layernorm | attention %lld causal) | residual(layernorm | "
                      "dense %lld | gelu | dense %lld)",
                      (long long)heads, (long long)(4 * d), (long long)d);
    snprintf(out + n, size - (size_t)n, " | layernorm | lmhead %d", V);
}

/* Mean cross-entropy (nats per byte) over consecutive windows of the validation part's first
 * eval_bytes bytes. */
static double validation_ce(kd_model *m, const kd_text *text, int64_t eval_bytes)
{
    int64_t T, n;
    CHECK(kd_model_tokens(m, NULL, &T));
    CHECK(kd_text_part_size(text, KD_TEXT_VALIDATION, &n));
    if (eval_bytes > 0 && eval_bytes < n) n = eval_bytes;
    int64_t windows = (n - 1) / T, batch = 32;
    int32_t *buf = malloc(sizeof *buf * (size_t)(T + 1)), *ids = malloc(sizeof *ids * batch * T),
            *y = malloc(sizeof *y * batch * T);
    float *z = malloc(sizeof *z * (size_t)(batch * T * V));
    kd_loss *ce;
    CHECK(kd_loss_create(KD_LOSS_HINTON, &ce));
    CHECK(kd_loss_set_float(ce, KD_LOSS_ALPHA, 0.0f));
    double sum = 0.0;
    for (int64_t w = 0; w < windows; w += batch) {
        int64_t b = windows - w < batch ? windows - w : batch;
        for (int64_t i = 0; i < b; i++) {
            CHECK(kd_text_tokens(text, KD_TEXT_VALIDATION, (w + i) * T, T + 1, buf));
            memcpy(ids + i * T, buf, sizeof *ids * (size_t)T);
            memcpy(y + i * T, buf + 1, sizeof *y * (size_t)T);
        }
        float v;
        CHECK(kd_model_predict_tokens(m, ids, b, z));
        CHECK(kd_loss_forward(ce, z, NULL, y, b * T, V, &v));
        sum += (double)v * (double)(b * T);
    }
    kd_loss_destroy(ce);
    free(buf);
    free(ids);
    free(y);
    free(z);
    return sum / (double)(windows * T);
}

typedef struct run {
    const char *name;
    kd_loss_kind kind; /* the logit loss */
    float alpha;       /* 0: cross-entropy alone */
    int hidden;        /* add the hidden-state cosine terms */
    int attention;     /* add MiniLM's attention KL terms */
} run;

/* Trains m for steps (teacher NULL: alone); returns training tokens per second. */
static double train(kd_model *m, kd_model *teacher, const run *r, const kd_text *text,
                    const config *c, int64_t steps, float lr, uint64_t seed)
{
    int64_t T = c->context, B = c->batch;
    kd_loss *loss;
    kd_optimizer *opt;
    kd_trainer *tr;
    kd_feature_loss *cos = NULL, *akl = NULL;
    CHECK(kd_loss_create(r->kind, &loss));
    CHECK(kd_loss_set_float(loss, KD_LOSS_ALPHA, r->alpha));
    CHECK(kd_loss_set_float(loss, KD_LOSS_TEMPERATURE, 1.0f));
    CHECK(kd_loss_set_float(loss, KD_LOSS_MASK_UNLABELLED, 1.0f));
    CHECK(kd_optimizer_create(KD_OPTIMIZER_ADAMW, m, &opt));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_LEARNING_RATE, lr));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_TOTAL_STEPS, steps));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_MIN_LR, lr / 10.0f));
    CHECK(kd_optimizer_set_int(opt, KD_OPT_WARMUP_STEPS, steps / 10 < 100 ? steps / 10 : 100));
    CHECK(kd_optimizer_set_float(opt, KD_OPT_CLIP_NORM, 1.0f));
    CHECK(kd_trainer_create(m, loss, opt, &tr));
    if (teacher != NULL) CHECK(kd_trainer_add_teacher(tr, teacher, 1.0f));
    if (r->hidden) {
        /* Student block k's output (layers 2 + 2k + 1) against the teacher's block at the same
         * depth fraction, projected per token to the teacher's width. */
        char reg[32];
        int32_t sl, tl, nl;
        CHECK(kd_model_layer_count(m, &sl));
        CHECK(kd_model_layer_count(teacher, &tl));
        int64_t sb = (sl - 4) / 2, tb = (tl - 4) / 2;
        snprintf(reg, sizeof reg, "dense %lld", (long long)c->width);
        CHECK(kd_feature_loss_create(KD_FEATURE_COSINE, &cos));
        for (int64_t k = 1; k <= sb; k++) {
            nl = (int32_t)(2 + 2 * (k * tb / sb) - 1);
            CHECK(kd_trainer_add_feature_loss(tr, cos, (int32_t)(2 + 2 * k - 1), 0, nl, reg, 1.0f));
        }
    }
    if (r->attention) {
        /* MiniLM's attention KL: student attention layer k against the teacher's at the same depth
         * fraction (the last against the last), each side's heads averaged (2 heads against 4). */
        int32_t sa, ta;
        CHECK(kd_model_attention_count(m, &sa));
        CHECK(kd_model_attention_count(teacher, &ta));
        CHECK(kd_feature_loss_create(KD_FEATURE_ATTENTION_KL, &akl));
        for (int32_t k = 0; k < sa; k++)
            CHECK(kd_trainer_add_attention_loss(tr, akl, k, 0, (k + 1) * ta / sa - 1,
                                                KD_ATTENTION_HEADS_MEAN, 1.0f));
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)(B * T)), *y = malloc(sizeof *y * (size_t)(B * T));
    float *x = malloc(sizeof *x * (size_t)(B * T)), v = 0.0f;
    double start = now(), avg = 0.0;
    for (int64_t s = 0; s < steps; s++) {
        CHECK(kd_text_batch(text, KD_TEXT_TRAIN, B, T, seed * 7919u + (uint64_t)s, ids, y));
        for (int64_t i = 0; i < B * T; i++) x[i] = (float)ids[i];
        CHECK(kd_trainer_step(tr, x, y, NULL, B, &v));
        avg += v;
        if ((s + 1) % 100 == 0 || s + 1 == steps) {
            fprintf(stderr, "  %s: step %lld/%lld loss %.4f (%.0f s)\n", r->name,
                    (long long)(s + 1), (long long)steps, avg / ((s % 100) + 1), now() - start);
            avg = 0.0;
        }
    }
    double tps = (double)(steps * B * T) / (now() - start);
    free(ids);
    free(y);
    free(x);
    kd_trainer_destroy(tr);
    kd_feature_loss_destroy(cos);
    kd_feature_loss_destroy(akl);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    return tps;
}

static int64_t file_bytes(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Batch-1 generation speed and a sample: the prompt, then up to T - len bytes. */
static double sample(kd_model *m, const config *c, char *out, size_t size)
{
    const char *prompt = "Q: ";
    int32_t p[8], gen[4096];
    int64_t plen = (int64_t)strlen(prompt), n = c->context - plen;
    for (int64_t i = 0; i < plen; i++) p[i] = (unsigned char)prompt[i];
    double start = now();
    CHECK(kd_model_generate(m, p, plen, n, 0.8f, 0, 0.9f, 1, gen));
    double tps = (double)n / (now() - start);
    size_t k = (size_t)snprintf(out, size, "%s", prompt);
    for (int64_t i = 0; i < n && k + 3 < size; i++) {
        if (gen[i] == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (gen[i] == '\t') {
            out[k++] = ' ';
        } else {
            out[k++] = (char)gen[i];
        }
    }
    out[k] = '\0';
    return tps;
}

/* What one trained model measured; the sample is kept for the first seed. */
typedef struct result {
    double bpb, train_tps, gen_tps;
    int64_t params, file;
    char sample[1024];
} result;

static void measure(kd_model *m, const kd_text *text, const config *c, double train_tps,
                    const char *path, result *out)
{
    float bpb;
    double ce = validation_ce(m, text, c->eval_bytes);
    CHECK(kd_bits_per_byte((float)ce, 1, 1, &bpb));
    CHECK(kd_model_param_count(m, &out->params));
    CHECK(kd_model_save(m, path));
    out->file = file_bytes(path);
    out->bpb = bpb;
    out->train_tps = train_tps;
    out->gen_tps = sample(m, c, out->sample, sizeof out->sample);
}

static void print_row(const char *name, const result *r, int n)
{
    double mean = 0.0, var = 0.0, tps = 0.0, gen = 0.0;
    for (int i = 0; i < n; i++) {
        mean += r[i].bpb / n;
        tps += r[i].train_tps / n;
        gen += r[i].gen_tps / n;
    }
    for (int i = 0; i < n; i++) var += (r[i].bpb - mean) * (r[i].bpb - mean);
    double sd = n > 1 ? sqrt(var / (n - 1)) : 0.0; /* sample standard deviation over the seeds */
    printf("%-30s %7.4f +- %6.4f %9lld %9lld %10.0f %9.0f\n", name, mean, sd,
           (long long)r[0].params, (long long)r[0].file, tps, gen);
}

static const char *const run_names[] = {"alone", "forward-kl", "reverse-kl",
                                        "jsd",   "hidden",     "attention"};
#define NRUNS ((int)(sizeof run_names / sizeof run_names[0]))

/* Whether student run i (in the order of main's table) is among --only's names. Runs are
 * independent (each starts from its seed's initialisation and batches), so a job split by --only
 * and --seed gives the numbers of the whole. */
static int wanted(const config *c, int i)
{
    const char *const *names = run_names;
    if (c->only == NULL) return 1;
    size_t n = strlen(names[i]);
    for (const char *p = c->only; (p = strstr(p, names[i])) != NULL; p += n)
        if ((p == c->only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [FILE] [--steps N] [--teacher-steps N] [--batch B] [--eval-bytes N]\n"
            "       [--width D] [--layers L] [--heads H] [--context T] [--teacher FILE] "
            "[--seed S] [--seeds N]\n"
            "       [--only alone,forward-kl,reverse-kl,jsd,hidden,attention]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    config c = {"fortunes.txt", NULL, 600, 1200, 16, 65536, 64, 128, 4, 4, 3, 1, NULL};
    for (int i = 1; i < argc; i++) {
        int64_t *num = NULL;
        if (strcmp(argv[i], "--steps") == 0)
            num = &c.steps;
        else if (strcmp(argv[i], "--teacher-steps") == 0)
            num = &c.teacher_steps;
        else if (strcmp(argv[i], "--batch") == 0)
            num = &c.batch;
        else if (strcmp(argv[i], "--eval-bytes") == 0)
            num = &c.eval_bytes;
        else if (strcmp(argv[i], "--context") == 0)
            num = &c.context;
        else if (strcmp(argv[i], "--width") == 0)
            num = &c.width;
        else if (strcmp(argv[i], "--layers") == 0)
            num = &c.layers;
        else if (strcmp(argv[i], "--heads") == 0)
            num = &c.heads;
        else if (strcmp(argv[i], "--seeds") == 0)
            num = &c.seeds;
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            c.seed = strtoull(argv[++i], 0, 10);
        else if (strcmp(argv[i], "--teacher") == 0 && i + 1 < argc)
            c.teacher_file = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            c.only = argv[++i];
        else if (argv[i][0] != '-')
            c.path = argv[i];
        else
            usage(argv[0]);
        if (num != NULL) {
            if (i + 1 >= argc || (*num = atoll(argv[++i])) < 1) usage(argv[0]);
        }
    }
    if (c.only != NULL) { /* every name one of the runs: a typo would train nothing */
        char copy[256];
        snprintf(copy, sizeof copy, "%s", c.only);
        for (char *save = NULL, *w = strtok_r(copy, ",", &save); w != NULL;
             w = strtok_r(NULL, ",", &save)) {
            int k = 0;
            while (k < NRUNS && strcmp(w, run_names[k]) != 0) k++;
            if (k == NRUNS) {
                fprintf(stderr, "%s: --only '%s' is not one of the runs\n", argv[0], w);
                usage(argv[0]);
            }
        }
    }
    kd_text *text;
    CHECK(kd_text_open(c.path, 0, &text));
    int64_t n, nval;
    CHECK(kd_text_size(text, &n));
    CHECK(kd_text_part_size(text, KD_TEXT_VALIDATION, &nval));
    char tspec[8192], sspec[4096];
    lm_spec(c.context, c.width, c.layers, c.heads, tspec, sizeof tspec);
    lm_spec(c.context, 48, 2, 2, sspec, sizeof sspec);
    printf("%s: %lld bytes, the last %lld held out (first %lld evaluated); context %lld, batch "
           "%lld; kernels %s\n",
           c.path, (long long)n, (long long)nval,
           (long long)(c.eval_bytes < nval ? c.eval_bytes : nval), (long long)c.context,
           (long long)c.batch, kd_kernels_name());
    if (c.teacher_file != NULL)
        printf("teacher: %s", c.teacher_file);
    else
        printf("teacher: %lld blocks, width %lld, %lld heads, %lld steps", (long long)c.layers,
               (long long)c.width, (long long)c.heads, (long long)c.teacher_steps);
    printf("; students: 2 blocks, width 48, 2 heads, %lld steps, %lld seeds; AdamW, cosine, "
           "clip 1\n",
           (long long)c.steps, (long long)c.seeds);

    kd_model *teacher;
    double tps = 0.0;
    if (c.teacher_file != NULL) {
        CHECK(kd_model_load(c.teacher_file, &teacher));
    } else {
        CHECK(kd_model_create(tspec, c.seed, &teacher));
        run r = {"teacher", KD_LOSS_HINTON, 0.0f, 0, 0};
        tps = train(teacher, NULL, &r, text, &c, c.teacher_steps, 1e-3f, c.seed);
    }
    result tres;
    measure(teacher, text, &c, tps, "lm_teacher.safetensors", &tres);

    enum { RUNS = 6 };
    const run runs[RUNS] = {{"student alone", KD_LOSS_HINTON, 0.0f, 0, 0},
                            {"forward KL", KD_LOSS_HINTON, 0.5f, 0, 0},
                            {"reverse KL", KD_LOSS_REVERSE_KL, 0.5f, 0, 0},
                            {"JSD (beta 0.5)", KD_LOSS_JSD, 0.5f, 0, 0},
                            {"forward KL + hidden cosine", KD_LOSS_HINTON, 0.5f, 1, 0},
                            {"forward KL + attention KL", KD_LOSS_HINTON, 0.5f, 0, 1}};
    result *res = calloc((size_t)(RUNS * c.seeds), sizeof *res);
    /* Seed k: every student starts from the same initialisation (c.seed + 1 + k) and sees the same
     * batches; only the loss differs within a seed. */
    for (int64_t k = 0; k < c.seeds; k++) {
        uint64_t seed = c.seed + (uint64_t)k;
        for (int i = 0; i < RUNS; i++) {
            if (!wanted(&c, i)) continue;
            kd_model *s;
            char path[64];
            result *r = &res[i * c.seeds + k];
            CHECK(kd_model_create(sspec, seed + 1, &s));
            tps = train(s, runs[i].alpha > 0.0f ? teacher : NULL, &runs[i], text, &c, c.steps,
                        3e-3f, seed);
            snprintf(path, sizeof path, "lm_student%d.safetensors", i);
            measure(s, text, &c, tps, path, r);
            printf("  seed %llu  %-28s %7.4f bits/B\n", (unsigned long long)seed, runs[i].name,
                   r->bpb);
            fflush(stdout);
            kd_model_destroy(s);
        }
    }

    printf("\nheld-out bits per byte, mean +- std over %lld seeds (the teacher: one run)\n",
           (long long)c.seeds);
    printf("%-30s %17s %9s %9s %10s %9s\n", "model", "bits/B", "params", "file B", "train tok/s",
           "gen tok/s");
    print_row("teacher", &tres, 1);
    for (int i = 0; i < RUNS; i++)
        if (wanted(&c, i)) print_row(runs[i].name, &res[i * c.seeds], (int)c.seeds);
    printf("\nsamples (temperature 0.8, top-p 0.9, seed 1; students of seed %llu):\n",
           (unsigned long long)c.seed);
    printf("%-30s %s\n", "teacher", tres.sample);
    for (int i = 0; i < RUNS; i++)
        if (wanted(&c, i)) printf("%-30s %s\n", runs[i].name, res[i * c.seeds].sample);
    free(res);
    kd_model_destroy(teacher);
    kd_text_destroy(text);
    return 0;
}
