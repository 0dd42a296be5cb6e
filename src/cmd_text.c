/* kd train | distill | eval --text FILE: byte-level language models on a UTF-8 text, through the
 * public API alone (kd_text_*, token models, kd_trainer_step with batch * T token rows). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel.h"
#include "text.h"

enum kind { FLAG, INT, FLOAT, STRING, METHOD, THREADS };
enum { TRAIN = 1, DISTILL = 2, EVAL = 4, GENERATE = 8 };

typedef struct text_def {
    const char *name;
    enum kind kind;
    size_t offset;
    unsigned commands;
    double lo, hi;
} text_def;

#define AT(field) offsetof(text_options, field)

static const text_def table[] = {
    {"--text", STRING, AT(text), TRAIN | DISTILL | EVAL, 0, 0},
    {"--threads", THREADS, 0, TRAIN | DISTILL | EVAL | GENERATE, 0, 0},
    {"--spec", STRING, AT(spec), TRAIN, 0, 0},
    {"--model", STRING, AT(spec), TRAIN, 0, 0},
    {"--teacher", STRING, AT(teacher_file), DISTILL, 0, 0},
    {"--teacher-spec", STRING, AT(teacher_spec), DISTILL, 0, 0},
    {"--student", STRING, AT(student_spec), DISTILL, 0, 0},
    {"--method", METHOD, 0, DISTILL, 0, 0},
    {"--loss", METHOD, 0, DISTILL, 0, 0},
    {"--steps", INT, AT(steps), TRAIN | DISTILL, 1, 1e9},
    {"--teacher-steps", INT, AT(teacher_steps), DISTILL, 1, 1e9},
    {"--batch", INT, AT(batch), TRAIN | DISTILL | EVAL, 1, 65536},
    {"--lr", FLOAT, AT(lr), TRAIN | DISTILL, 1e-9, 10},
    {"--temperature", FLOAT, AT(temperature), DISTILL | GENERATE, 0, 1e6},
    {"--alpha", FLOAT, AT(alpha), DISTILL, 0, 1},
    {"--checkpoint", STRING, AT(checkpoint), TRAIN | DISTILL, 0, 0},
    {"--resume", FLAG, AT(resume), TRAIN | DISTILL, 0, 0},
    {"--force", FLAG, AT(force), TRAIN | DISTILL, 0, 0},
    {"--stop-after-step", INT, AT(stop_after), TRAIN | DISTILL, 1, 1e9}, /* hidden, for tests */
    {"--jsd-beta", FLOAT, AT(jsd_beta), DISTILL, 0, 1},
    {"--skew", FLOAT, AT(skew), DISTILL, 0, 1},
    {"--validation", FLOAT, AT(validation), TRAIN | DISTILL | EVAL, 0, 0.99},
    {"--max-bytes", INT, AT(max_bytes), TRAIN | DISTILL | EVAL, 0, 1e12},
    {"--eval-bytes", INT, AT(eval_bytes), TRAIN | DISTILL | EVAL, 0, 1e12},
    {"--log-every", INT, AT(log_every), TRAIN | DISTILL, 1, 1e9},
    {"--seed", INT, AT(seed), TRAIN | DISTILL | GENERATE, 0, 1e18},
    {"--out", STRING, AT(out), TRAIN | DISTILL, 0, 0},
    {"--log", STRING, AT(log_path), TRAIN | DISTILL, 0, 0},
    {"--compare", FLAG, AT(compare), DISTILL, 0, 0},
    {"--json", FLAG, AT(json), EVAL, 0, 0},
    {"--quiet", FLAG, AT(quiet), TRAIN | DISTILL | EVAL, 0, 0},
    {"-q", FLAG, AT(quiet), TRAIN | DISTILL | EVAL, 0, 0},
    {"--prompt", STRING, AT(prompt), GENERATE, 0, 0},
    {"--tokens", INT, AT(tokens), GENERATE, 1, 1e9},
    {"--top-k", INT, AT(top_k), GENERATE, 0, 1 << 24},
    {"--top-p", FLOAT, AT(top_p), GENERATE, 1e-9, 1},
    {"--attention-kl", FLOAT, AT(attention_kl), DISTILL, 0, 1e6},
    {"--attention-layers", STRING, AT(attention_layers), DISTILL, 0, 0},
    {"--attention-heads", STRING, AT(attention_heads), DISTILL, 0, 0},
    {"--hidden-cosine", FLOAT, AT(hidden_cosine), DISTILL, 0, 1e6},
    {"--hidden-layers", STRING, AT(hidden_layers), DISTILL, 0, 0},
    {"--report", STRING, AT(report_dir), TRAIN | DISTILL, 0, 0},
    {"--eval-every", INT, AT(eval_every), TRAIN | DISTILL, 1, 1e9},
};

static const struct {
    const char *name;
    kd_loss_kind kind;
} methods[] = {
    {"forward-kl", KD_LOSS_HINTON},
    {"hinton", KD_LOSS_HINTON},
    {"reverse-kl", KD_LOSS_REVERSE_KL},
    {"jsd", KD_LOSS_JSD},
    {"skew-kl", KD_LOSS_SKEW_KL},
    {"skew-reverse-kl", KD_LOSS_SKEW_REVERSE_KL},
    {"tvd", KD_LOSS_TVD},
    {"logit-mse", KD_LOSS_LOGIT_MSE},
};

static unsigned command_bit(const char *name)
{
    if (strcmp(name, "train") == 0) return TRAIN;
    if (strcmp(name, "distill") == 0) return DISTILL;
    if (strcmp(name, "eval") == 0) return EVAL;
    return GENERATE;
}

static const char *method_name(int kind)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if ((int)methods[i].kind == kind) return methods[i].name;
    return "?";
}

int is_text_command(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--text") == 0 || strncmp(argv[i], "--text=", 7) == 0) return 1;
    }
    return 0;
}

static void defaults(text_options *o, const char *name)
{
    memset(o, 0, sizeof *o);
    o->cmd = name;
    o->steps = 2000;
    o->teacher_steps = 2000;
    o->batch = 16;
    o->lr = 3e-3f;
    o->temperature = strcmp(name, "generate") == 0 ? 0.8f : 1.0f;
    o->alpha = 0.5f;
    o->jsd_beta = o->skew = -1.0f;
    o->top_p = 1.0f;
    o->tokens = 200;
    o->validation = 0.1f;
    o->log_every = 100;
    o->seed = 1;
    o->method = KD_LOSS_HINTON;
}

static int set_value(text_options *o, const text_def *d, const char *v)
{
    char *base = (char *)o + d->offset;
    if (d->kind == STRING) {
        *(const char **)base = v;
        return EXIT_OK;
    }
    if (d->kind == THREADS) return threads_option(v); /* as the image commands' --threads */
    if (d->kind == METHOD) {
        for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
            if (strcmp(v, methods[i].name) == 0) {
                o->method = methods[i].kind;
                return EXIT_OK;
            }
        fail_msg("%s '%s' is not one of forward-kl, reverse-kl, jsd, skew-kl, skew-reverse-kl, "
                 "tvd, logit-mse",
                 d->name, v);
        return EXIT_USAGE;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(x) || x < d->lo || x > d->hi ||
        (d->kind == INT && x != floor(x))) {
        fail_msg("%s '%s' is not %s in [%g, %g]", d->name, v,
                 d->kind == INT ? "a whole number" : "a number", d->lo, d->hi);
        return EXIT_USAGE;
    }
    if (d->kind == FLOAT) {
        *(float *)base = (float)x;
        if (d->offset == AT(temperature)) o->temperature_set = 1;
        if (d->offset == AT(alpha)) o->alpha_set = 1;
    } else if (d->offset == AT(seed)) {
        o->seed = (uint64_t)x;
    } else if (d->offset == AT(top_k)) {
        o->top_k = (int32_t)x;
    } else {
        *(int64_t *)base = (int64_t)x;
    }
    return EXIT_OK;
}

static const text_def *find_def(const char *name)
{
    for (size_t k = 0; k < sizeof table / sizeof *table; k++)
        if (strcmp(table[k].name, name) == 0) return &table[k];
    return NULL;
}

/* Options that the rest of the command line makes meaningless are refused by name, as the image
 * commands do: they would be ignored. */
static int check_applies(const text_options *o, unsigned bit, const char *given)
{
    static const struct {
        const char *opt, *unless, *why;
    } pairs[] = {
        {"--attention-layers", "--attention-kl", "without --attention-kl"},
        {"--attention-heads", "--attention-kl", "without --attention-kl"},
        {"--hidden-layers", "--hidden-cosine", "without --hidden-cosine"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        const text_def *d = find_def(pairs[k].opt), *u = find_def(pairs[k].unless);
        if (given[d - table] && !given[u - table]) {
            fail_msg("%s does not apply %s; leave it out", pairs[k].opt, pairs[k].why);
            return EXIT_USAGE;
        }
    }
    const text_def *tf = find_def("--teacher");
    if (given[tf - table])
        for (const char *const *x =
                 (const char *const[]){"--teacher-spec", "--teacher-steps", NULL};
             *x != NULL; x++)
            if (given[find_def(*x) - table]) {
                fail_msg("%s does not apply with --teacher (the file is the trained teacher); "
                         "leave it out",
                         *x);
                return EXIT_USAGE;
            }
    if (given[find_def("--jsd-beta") - table] && o->method != KD_LOSS_JSD) {
        fail_msg("--jsd-beta does not apply unless --method jsd; leave it out");
        return EXIT_USAGE;
    }
    if (given[find_def("--skew") - table] && o->method != KD_LOSS_SKEW_KL &&
        o->method != KD_LOSS_SKEW_REVERSE_KL) {
        fail_msg("--skew does not apply unless --method skew-kl or skew-reverse-kl; leave it out");
        return EXIT_USAGE;
    }
    if (o->stop_after > 0 && (o->checkpoint == NULL || o->stop_after % o->log_every != 0)) {
        fail_msg("--stop-after-step needs --checkpoint and a multiple of --log-every (%lld)",
                 (long long)o->log_every);
        return EXIT_USAGE;
    }
    if (o->resume && o->checkpoint == NULL) {
        fail_msg("--resume needs --checkpoint FILE (the run to continue)");
        return EXIT_USAGE;
    }
    if (o->force && (o->checkpoint == NULL || o->resume)) {
        fail_msg("--force does not apply %s; leave it out",
                 o->resume ? "with --resume (which continues)"
                           : "without --checkpoint (it allows overwriting one)");
        return EXIT_USAGE;
    }
    if ((bit & DISTILL) && o->temperature_set && !(o->temperature > 0.0f)) {
        fail_msg("--temperature %g: distillation softens by a temperature > 0 (0 is greedy "
                 "decoding, for kd generate)",
                 (double)o->temperature);
        return EXIT_USAGE;
    }
    if ((bit & DISTILL) && o->temperature_set && o->method == KD_LOSS_LOGIT_MSE) {
        fail_msg("--temperature does not apply to --method logit-mse (it compares raw logits); "
                 "leave it out");
        return EXIT_USAGE;
    }
    if ((bit & (TRAIN | DISTILL)) && !(o->validation > 0.0f)) {
        fail_msg("--validation %g: train and distill hold out a share > 0 of the text for their "
                 "validation score",
                 (double)o->validation);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int text_parse(text_options *o, const char *name, int argc, char **argv, int first)
{
    defaults(o, name);
    unsigned bit = command_bit(name);
    char given[sizeof table / sizeof *table] = {0};
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            text_help(stdout, name);
            return -1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o->model != NULL && (bit & (EVAL | GENERATE))) {
                fail_msg("kd %s%s takes one model; '%s' is a second", name,
                         (bit & EVAL) ? " --text" : "", a);
                return EXIT_USAGE;
            }
            if (o->model != NULL || !(bit & (EVAL | GENERATE))) {
                fail_msg("unexpected argument '%s' (see 'kd help %s')", a, name);
                return EXIT_USAGE;
            }
            o->model = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const text_def *d = NULL;
        for (size_t k = 0; k < sizeof table / sizeof *table; k++)
            if (strlen(table[k].name) == len && strncmp(table[k].name, a, len) == 0) d = &table[k];
        if (d == NULL || !(d->commands & bit)) {
            fail_msg("unknown option '%.*s' for kd %s on text (see 'kd help %s')", (int)len, a,
                     name, name);
            return EXIT_USAGE;
        }
        /* a second value would replace the first without a word; the spellings of one option
         * (--spec and --model, --method and --loss, -q and --quiet) share the first's slot */
        size_t slot = 0;
        while (table[slot].kind != d->kind || table[slot].offset != d->offset) slot++;
        if (given[slot] && d->kind != FLAG) {
            char names[64] = "";
            for (size_t k = slot; k < sizeof table / sizeof *table; k++)
                if (table[k].kind == d->kind && table[k].offset == d->offset)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                             names[0] ? "/" : "", table[k].name);
            fail_msg("%s is given twice; give it once", names);
            return EXIT_USAGE;
        }
        given[slot] = 1;
        if (d->kind == FLAG) {
            if (eq != NULL) { /* --compare=no would have turned it on */
                fail_msg("%s takes no value ('%s')", d->name, a);
                return EXIT_USAGE;
            }
            *(int *)((char *)o + d->offset) = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (v == NULL) {
            fail_msg("%s needs a value", d->name);
            return EXIT_USAGE;
        }
        int rc = set_value(o, d, v);
        if (rc != EXIT_OK) return rc;
    }
    return check_applies(o, bit, given);
}

void text_lm_spec(int64_t context, int64_t width, int layers, int heads, char *out, size_t size)
{
    int n = snprintf(out, size, "tokens %d %lld | embed %lld | posembed", KD_TEXT_VOCAB,
                     (long long)context, (long long)width);
    for (int l = 0; l < layers && n > 0 && (size_t)n < size; l++)
        n += snprintf(out + n, size - (size_t)n,
                      " | residual(layernorm | attention %d causal) | residual(layernorm | "
                      "dense %lld | gelu | dense %lld)",
                      heads, (long long)(4 * width), (long long)width);
    if (n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, " | layernorm | lmhead %d", KD_TEXT_VOCAB);
}

/* The first attention layer of spec without the word causal (its text, up to its end), or NULL. */
static const char *noncausal_attention(const char *spec, char *layer, size_t size)
{
    for (const char *p = spec; (p = strstr(p, "attention")) != NULL; p += 9) {
        const char *b = p;
        while (b > spec && b[-1] == ' ') b--;
        if (b > spec && b[-1] != '|' && b[-1] != '(') continue;     /* a word inside a layer */
        if (p[9] != '\0' && strchr(" |()", p[9]) == NULL) continue; /* another kind's name */
        size_t n = strcspn(p, "|()");
        snprintf(layer, size, "%.*s", (int)n, p);
        while (n > 0 && layer[n - 1] == ' ') layer[--n] = '\0';
        const char *c = strstr(layer, " causal");
        if (c == NULL || (c[7] != '\0' && c[7] != ' ')) return layer;
    }
    return NULL;
}

/* Whether m is a byte-level language model: 256 token ids in, 256 logits a position out, its
 * attention causal. */
static int check_lm(const kd_model *m, const char *what, int code)
{
    int64_t vocab = 0, length = 0, out = 0;
    kd_model_tokens(m, &vocab, &length);
    kd_model_output_size(m, &out);
    if (vocab == 0) {
        fail_msg("%s is not a language model: it takes floats, not token ids ('tokens %d T | "
                 "...')",
                 what, KD_TEXT_VOCAB);
        return code;
    }
    if (vocab != KD_TEXT_VOCAB || out != length * KD_TEXT_VOCAB) {
        fail_msg("%s has a vocabulary of %lld tokens in and %lld logits a position out; "
                 "byte-level text has %d (one a byte)",
                 what, (long long)vocab, (long long)(out / length), KD_TEXT_VOCAB);
        return code;
    }
    /* Without the mask every position sees the bytes after it, the one it predicts among them:
     * a validation score near 0 bits a byte that means nothing (and it cannot generate). */
    char layer[128];
    if (noncausal_attention(kd_model_spec(m), layer, sizeof layer) != NULL) {
        fail_msg("%s has attention that is not causal ('%s'): each position would see the byte it "
                 "predicts; give 'attention H causal'",
                 what, layer);
        return code;
    }
    return EXIT_OK;
}

static int spec_model(const char *what, const char *spec, uint64_t seed, kd_model **out)
{
    int rc = create_model(what, spec, seed, out);
    if (rc != EXIT_OK) return rc;
    char name[64];
    snprintf(name, sizeof name, "the %s spec", what);
    if ((rc = check_lm(*out, name, EXIT_USAGE)) != EXIT_OK) {
        kd_model_destroy(*out);
        *out = NULL;
    }
    return rc;
}

int text_load_model(const char *path, kd_model **out)
{
    int rc = load_model(path, out);
    if (rc != EXIT_OK) return rc;
    rc = check_lm(*out, path, EXIT_USAGE); /* a model that does not fit: 2, as everywhere */
    if (rc != EXIT_OK) {
        kd_model_destroy(*out);
        *out = NULL;
    }
    return rc;
}

static int open_text(const text_options *o, kd_text **out)
{
    kd_status st = kd_text_open(o->text, o->max_bytes, out);
    int over = st == KD_ERR_FORMAT && strstr(kd_last_error(), "longer than the limit") != NULL;
    if (st == KD_OK) st = kd_text_split(*out, o->validation);
    if (st == KD_OK) return EXIT_OK;
    char what[4200];
    snprintf(what, sizeof what, "cannot use %s as text%s", o->text,
             over ? " (a larger --max-bytes reads it)" : "");
    kd_text_destroy(*out);
    *out = NULL;
    return fail_kd(what, st);
}

/* Whether both parts of the text hold a window of T + 1 bytes (T inputs and their next bytes), so
 * that no training starts that could not be evaluated: a model that does not fit the data, 2. */
static int check_windows(const text_options *o, const kd_text *text, int64_t T)
{
    static const kd_text_part parts[2] = {KD_TEXT_TRAIN, KD_TEXT_VALIDATION};
    static const char *const names[2] = {"training", "validation"};
    for (int i = 0; i < 2; i++) {
        int64_t n = 0;
        kd_text_part_size(text, parts[i], &n);
        if (i == 1 && o->eval_bytes > 0 && o->eval_bytes < T + 1) {
            fail_msg("the model's context of %lld bytes needs windows of %lld; --eval-bytes %lld "
                     "evaluates fewer",
                     (long long)T, (long long)(T + 1), (long long)o->eval_bytes);
            return EXIT_USAGE;
        }
        if (n >= T + 1) continue;
        fail_msg("the model's context of %lld bytes needs windows of %lld; the %s part of %s "
                 "holds %lld bytes (%s): make the context shorter (the T of 'tokens 256 T' in "
                 "the spec), the text longer%s",
                 (long long)T, (long long)(T + 1), names[i], o->text, (long long)n,
                 i == 0 ? "all but the last --validation fraction"
                        : "the last --validation fraction",
                 i == 0 ? "" : " or --validation larger");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- evaluation */

/* Mean cross-entropy (nats per byte) of m over the validation part (its first limit bytes when
 * limit > 0), in consecutive windows of T bytes, each predicting its next T bytes. who names m in
 * a failure ("the teacher", a file): it may be a teacher or an untrained model, not the student. */
static int validation_ce(kd_model *m, const char *who, const kd_text *text, int64_t batch,
                         int64_t limit, double *ce, int64_t *tokens)
{
    int64_t T = 0, n = 0;
    kd_model_tokens(m, NULL, &T);
    kd_text_part_size(text, KD_TEXT_VALIDATION, &n);
    if (limit > 0 && n > limit) n = limit;
    int64_t windows = n > 0 ? (n - 1) / T : 0;
    if (windows < 1) {
        fail_msg("the validation part holds %lld bytes; the model's context needs %lld (make "
                 "--validation larger or the text longer)",
                 (long long)n, (long long)(T + 1));
        return EXIT_USAGE; /* a model that does not fit the data: 2, as train and distill say it */
    }
    if (batch > windows) batch = windows;
    int32_t *buf = malloc(sizeof *buf * (size_t)(batch * (T + 1)));
    int32_t *ids = malloc(sizeof *ids * (size_t)(batch * T));
    int32_t *y = malloc(sizeof *y * (size_t)(batch * T));
    float *z = malloc(sizeof *z * (size_t)(batch * T * KD_TEXT_VOCAB));
    kd_loss *loss = NULL;
    kd_status st = buf && ids && y && z ? kd_loss_create(KD_LOSS_HINTON, &loss) : KD_ERR_NOMEM;
    if (st == KD_OK) st = kd_loss_set_float(loss, KD_LOSS_ALPHA, 0.0f);
    double sum = 0.0;
    for (int64_t w = 0; st == KD_OK && w < windows; w += batch) {
        int64_t b = windows - w < batch ? windows - w : batch;
        for (int64_t i = 0; st == KD_OK && i < b; i++) {
            st = kd_text_tokens(text, KD_TEXT_VALIDATION, (w + i) * T, T + 1, buf);
            memcpy(ids + i * T, buf, sizeof *ids * (size_t)T);
            memcpy(y + i * T, buf + 1, sizeof *y * (size_t)T);
        }
        float v = 0.0f;
        if (st == KD_OK) st = kd_model_predict_tokens(m, ids, b, z);
        if (st == KD_OK) st = kd_loss_forward(loss, z, NULL, y, b * T, KD_TEXT_VOCAB, &v);
        sum += (double)v * (double)(b * T);
    }
    kd_loss_destroy(loss);
    free(buf);
    free(ids);
    free(y);
    free(z);
    if (st != KD_OK) {
        char what[4200];
        snprintf(what, sizeof what, "cannot evaluate %s on the held-out text", who);
        return fail_kd(what, st);
    }
    *tokens = windows * T;
    *ce = sum / (double)*tokens;
    return EXIT_OK;
}

typedef struct lm_result {
    char name[64], shape[96];
    int64_t params, bytes;
    double ce, ppl, bpb, seconds, tokens_per_s, gen_tps;
    char sample[512];
    text_curve loss, heldout; /* the training objective and held-out bits per byte by step */
    int64_t resumed_at;       /* --resume: the step this process started from (0: the first) */
} lm_result;

/* "2 blocks, width 48, context 64": blocks counted by attention layers, the width from the first
 * layer (the embedding). */
static void lm_shape(const kd_model *m, char *out, size_t size)
{
    int64_t T = 0, first = 0;
    int32_t blocks = 0;
    kd_model_tokens(m, NULL, &T);
    kd_model_attention_count(m, &blocks);
    kd_model_layer_info(m, 0, NULL, NULL, &first);
    snprintf(out, size, "%d block%s, width %lld, context %lld", (int)blocks, blocks == 1 ? "" : "s",
             (long long)(T > 0 ? first / T : 0), (long long)T);
}

/* A sample (after a newline, up to a context of bytes at temperature 0.8, top-p 0.9) and the
 * batch-1 generation speed, timed over at least 0.2 s. A failure leaves both empty. */
static void lm_sample(kd_model *m, uint64_t seed, lm_result *r)
{
    int64_t T = 0;
    kd_model_tokens(m, NULL, &T);
    int64_t n = T - 1 < (int64_t)sizeof r->sample - 1 ? T - 1 : (int64_t)sizeof r->sample - 1;
    int32_t prompt = '\n';
    int32_t *gen = n > 0 ? malloc(sizeof *gen * (size_t)n) : NULL;
    if (gen == NULL) return;
    double start = now_seconds(), elapsed = 0.0;
    int64_t made = 0;
    kd_status st = KD_OK;
    for (int rep = 0; st == KD_OK && rep < 1000 && (rep == 0 || elapsed < 0.2); rep++) {
        st = kd_model_generate(m, &prompt, 1, n, 0.8f, 0, 0.9f, seed, gen);
        made += n;
        elapsed = now_seconds() - start;
    }
    if (st == KD_OK) {
        r->gen_tps = elapsed > 0 ? (double)made / elapsed : 0.0;
        for (int64_t i = 0; i < n; i++) r->sample[i] = gen[i] != 0 ? (char)gen[i] : ' ';
        r->sample[n] = '\0';
    }
    free(gen);
}

/* Fills r's measurements (its name, curves and training time set before); who names m. */
static int measure(kd_model *m, const char *who, const kd_text *text, int64_t limit,
                   const char *path, double seconds, int64_t tokens_trained, uint64_t seed,
                   lm_result *r)
{
    int64_t tokens;
    int rc = validation_ce(m, who, text, 64, limit, &r->ce, &tokens);
    if (rc != EXIT_OK) return rc;
    float ppl = 0.0f, bpb = 0.0f;
    kd_perplexity((float)r->ce, &ppl);
    kd_bits_per_byte((float)r->ce, 1, 1, &bpb);
    r->ppl = ppl;
    r->bpb = bpb;
    kd_model_param_count(m, &r->params);
    r->bytes = path != NULL ? file_size(path) : -1;
    r->seconds = seconds;
    r->tokens_per_s = seconds > 0 ? (double)tokens_trained / seconds : 0.0;
    lm_shape(m, r->shape, sizeof r->shape);
    lm_sample(m, seed, r);
    return EXIT_OK;
}

static void print_results(const lm_result *r, int n)
{
    int w = 22;
    for (int i = 0; i < n; i++) w = (int)strlen(r[i].name) > w ? (int)strlen(r[i].name) : w;
    printf("%-*s %10s %10s %9s %9s %8s %12s %10s\n", w, "model", "params", "file", "CE nats", "ppl",
           "bits/B", "train tok/s", "gen tok/s");
    for (int i = 0; i < n; i++) {
        char p[32], b[32] = "-", t[32] = "-"; /* "-": not trained here (a --teacher file) */
        format_count(r[i].params, p, sizeof p);
        if (r[i].bytes >= 0) format_bytes((double)r[i].bytes, b, sizeof b);
        if (r[i].tokens_per_s > 0.0) snprintf(t, sizeof t, "%.0f", r[i].tokens_per_s);
        printf("%-*s %10s %10s %9.4f %9.3f %8.4f %12s %10.0f\n", w, r[i].name, p, b, r[i].ce,
               r[i].ppl, r[i].bpb, t, r[i].gen_tps);
    }
}

/* ---------------------------------------------------------------- training */

typedef struct lm_run {
    const char *name;
    kd_model *model, *teacher; /* teacher NULL: cross-entropy alone */
    int method;
    float alpha, temperature;
    int64_t steps;
    uint64_t seed;
    int attention;    /* add the attention KL term of --attention-kl */
    int hidden;       /* add the hidden-state cosine terms of --hidden-cosine */
    lm_result *trace; /* where the curves go */
} lm_run;
/* The attention term of --attention-kl: the student's and the teacher's attention layers (-1 in
 * "S:T" the last, MiniLM's choice) and the heads' pairing. */
typedef struct attention_plan {
    int32_t student, teacher;
    kd_attention_heads heads;
} attention_plan;

static int parse_attention(const text_options *o, const kd_model *student, const kd_model *teacher,
                           attention_plan *p)
{
    const char *layers = o->attention_layers ? o->attention_layers : "-1:-1";
    const char *heads = o->attention_heads ? o->attention_heads : "mean";
    int32_t ns = 0, nt = 0;
    long s, t;
    char *end, *end2 = NULL;
    kd_model_attention_count(student, &ns);
    kd_model_attention_count(teacher, &nt);
    s = strtol(layers, &end, 10);
    t = *end == ':' ? strtol(end + 1, &end2, 10) : 0;
    if (end == layers || *end != ':' || end2 == end + 1 || *end2 != '\0') {
        fail_msg("--attention-layers '%s' is not S:T (student and teacher attention layers, -1 the "
                 "last)",
                 layers);
        return EXIT_USAGE;
    }
    if (strcmp(heads, "mean") != 0 && strcmp(heads, "matched") != 0) {
        fail_msg("--attention-heads '%s' is not mean or matched", heads);
        return EXIT_USAGE;
    }
    p->student = (int32_t)(s < 0 ? ns + s : s);
    p->teacher = (int32_t)(t < 0 ? nt + t : t);
    p->heads = strcmp(heads, "mean") == 0 ? KD_ATTENTION_HEADS_MEAN : KD_ATTENTION_HEADS_MATCHED;
    if (s < -ns || s >= ns || t < -nt || t >= nt) {
        fail_msg("--attention-layers %s: the student has %d attention layers, the teacher %d",
                 layers, (int)ns, (int)nt);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static kd_status add_attention(const text_options *o, kd_trainer *tr, const kd_model *student,
                               const kd_model *teacher, kd_feature_loss **kl)
{
    attention_plan p;
    if (parse_attention(o, student, teacher, &p) != EXIT_OK) return KD_ERR_ARGUMENT;
    kd_status st = kd_feature_loss_create(KD_FEATURE_ATTENTION_KL, kl);
    if (st == KD_OK)
        st = kd_trainer_add_attention_loss(tr, *kl, p.student, 0, p.teacher, p.heads,
                                           o->attention_kl);
    return st;
}

/* ---------------------------------------------------------------- hidden states (DistilBERT) */

#define MAX_HIDDEN 16

/* One term of --hidden-cosine: layers as kd info lists them, their kinds and widths (values a
 * token: the layer's output over the context). */
typedef struct hidden_pair {
    int32_t student, teacher;
    const char *skind, *tkind;
    int64_t ssize, tsize, sd, td;
} hidden_pair;

/* The output of m's last transformer block: its last residual layer, else its last but one. */
static int32_t last_block(const kd_model *m)
{
    int32_t n = 0;
    kd_model_layer_count(m, &n);
    for (int32_t i = n - 1; i >= 0; i--) {
        const char *kind = NULL;
        kd_model_layer_info(m, i, &kind, NULL, NULL);
        if (kind != NULL && strcmp(kind, "residual") == 0) return i;
    }
    return n >= 2 ? n - 2 : 0;
}

static void hidden_shapes(const hidden_pair *p, int64_t T, char *out, size_t size)
{
    snprintf(out, size,
             "the student's layer %d (%s) gives [%lld, %lld] a window, the teacher's layer %d "
             "(%s) [%lld, %lld]",
             (int)p->student, p->skind, (long long)T, (long long)p->sd, (int)p->teacher, p->tkind,
             (long long)T, (long long)p->td);
}

/* --hidden-layers "S:T[,S:T...]" (negative: from the end; default the last blocks' outputs). */
static int parse_hidden(const text_options *o, const kd_model *student, const kd_model *teacher,
                        hidden_pair *p, int *np)
{
    int32_t ns = 0, nt = 0;
    int64_t T = 0;
    kd_model_layer_count(student, &ns);
    kd_model_layer_count(teacher, &nt);
    kd_model_tokens(student, NULL, &T);
    *np = 0;
    if (o->hidden_layers == NULL) {
        p[0].student = last_block(student);
        p[0].teacher = last_block(teacher);
        *np = 1;
    }
    for (const char *c = o->hidden_layers; c != NULL;) {
        char *end, *end2 = NULL;
        long s = strtol(c, &end, 10), t = 0;
        if (end != c && *end == ':') t = strtol(end + 1, &end2, 10);
        if (end == c || *end != ':' || end2 == end + 1 || (*end2 != ',' && *end2 != '\0')) {
            fail_msg("--hidden-layers '%s' is not S:T[,S:T...] (student and teacher layers as kd "
                     "info lists them, -1 the last)",
                     o->hidden_layers);
            return EXIT_USAGE;
        }
        if (*np == MAX_HIDDEN) {
            fail_msg("--hidden-layers '%s' pairs more than %d layers", o->hidden_layers,
                     MAX_HIDDEN);
            return EXIT_USAGE;
        }
        if (s < -ns || s >= ns || t < -nt || t >= nt) {
            fail_msg("--hidden-layers %ld:%ld: the student has layers 0..%d, the teacher 0..%d (as "
                     "kd info lists them; -1 the last)",
                     s, t, (int)ns - 1, (int)nt - 1);
            return EXIT_USAGE;
        }
        p[*np].student = (int32_t)(s < 0 ? ns + s : s);
        p[*np].teacher = (int32_t)(t < 0 ? nt + t : t);
        (*np)++;
        c = *end2 == ',' ? end2 + 1 : NULL;
    }
    for (int i = 0; i < *np; i++) {
        kd_model_layer_info(student, p[i].student, &p[i].skind, NULL, &p[i].ssize);
        kd_model_layer_info(teacher, p[i].teacher, &p[i].tkind, NULL, &p[i].tsize);
        p[i].sd = p[i].ssize / T;
        p[i].td = p[i].tsize / T;
        if (p[i].ssize % T != 0 || p[i].tsize % T != 0 || p[i].sd < 1 || p[i].td < 1) {
            fail_msg(
                "--hidden-layers %d:%d: the student's layer %d (%s) gives %lld values a window "
                "and the teacher's layer %d (%s) %lld; DistilBERT's cosine compares hidden "
                "states [T, d] token by token (T = %lld)",
                (int)p[i].student, (int)p[i].teacher, (int)p[i].student, p[i].skind,
                (long long)p[i].ssize, (int)p[i].teacher, p[i].tkind, (long long)p[i].tsize,
                (long long)T);
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* Adds the cosine terms; on failure *bad is the pair that failed. A student width that is not the
 * teacher's is projected per token by a learned "dense D" (TinyBERT's W_h). */
static kd_status add_hidden(const text_options *o, kd_trainer *tr, const hidden_pair *p, int np,
                            kd_feature_loss **cos, int *bad)
{
    kd_status st = kd_feature_loss_create(KD_FEATURE_COSINE, cos);
    for (int i = 0; st == KD_OK && i < np; i++) {
        char reg[32];
        snprintf(reg, sizeof reg, "dense %lld", (long long)p[i].td);
        *bad = i;
        st = kd_trainer_add_feature_loss(tr, *cos, p[i].student, 0, p[i].teacher,
                                         p[i].sd != p[i].td ? reg : NULL, o->hidden_cosine);
    }
    return st;
}

/* The teacher fits the student (context, vocabulary) and the feature terms (--attention-kl,
 * --hidden-cosine) can be built: the library's own checks on a throwaway trainer with the
 * untrained models, before any training, so a mismatch costs no teacher run. */
static int check_terms(const text_options *o, kd_model *student, kd_model *teacher)
{
    attention_plan ap;
    hidden_pair hp[MAX_HIDDEN];
    int np = 0, bad = 0, rc = EXIT_OK;
    if (o->attention_kl > 0.0f) rc = parse_attention(o, student, teacher, &ap);
    if (rc == EXIT_OK && o->hidden_cosine > 0.0f) rc = parse_hidden(o, student, teacher, hp, &np);
    if (rc != EXIT_OK) return rc;
    kd_loss *loss = NULL;
    kd_optimizer *opt = NULL;
    kd_trainer *tr = NULL;
    kd_feature_loss *kl = NULL, *cos = NULL;
    kd_status st = kd_loss_create(KD_LOSS_HINTON, &loss);
    if (st == KD_OK) st = kd_optimizer_create(KD_OPTIMIZER_ADAMW, student, &opt);
    if (st == KD_OK) st = kd_trainer_create(student, loss, opt, &tr);
    if (st == KD_OK) {
        st = kd_trainer_add_teacher(tr, teacher, 1.0f);
        if (st != KD_OK) /* as train_lm would say it, a usage error */
            rc = fail_kd("the teacher cannot teach this student (give --student a spec of its "
                         "context and vocabulary)",
                         st) == EXIT_RUNTIME &&
                         st == KD_ERR_SHAPE
                     ? EXIT_USAGE
                     : EXIT_RUNTIME;
    }
    if (st == KD_OK && o->attention_kl > 0.0f) {
        st = add_attention(o, tr, student, teacher, &kl);
        /* layers of other lengths, matched heads of other counts: options refused before any
         * training, a usage error as an out-of-range --attention-layers */
        if (st != KD_OK) {
            fail_msg("--attention-kl cannot pair these attention layers: %s%s", kd_last_error(),
                     st == KD_ERR_SHAPE && ap.heads == KD_ATTENTION_HEADS_MATCHED
                         ? ": give --attention-heads mean"
                         : "");
            rc = st == KD_ERR_SHAPE || st == KD_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME;
        }
    }
    if (st == KD_OK && o->hidden_cosine > 0.0f) {
        st = add_hidden(o, tr, hp, np, &cos, &bad);
        if (st != KD_OK) {
            int64_t T = 0;
            char what[400];
            kd_model_tokens(student, NULL, &T);
            hidden_shapes(&hp[bad], T, what, sizeof what);
            fail_msg("--hidden-cosine cannot compare these layers: %s: %s", what, kd_last_error());
            rc = st == KD_ERR_SHAPE || st == KD_ERR_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME;
        }
    } else if (st != KD_OK && rc == EXIT_OK) {
        rc = fail_kd("cannot set up training", st);
    }
    if (rc == EXIT_OK && o->hidden_cosine > 0.0f && !o->quiet) {
        int64_t T = 0;
        kd_model_tokens(student, NULL, &T);
        for (int i = 0; i < np; i++) {
            char what[400];
            hidden_shapes(&hp[i], T, what, sizeof what);
            printf("hidden cosine %d: %s%s, weight %g\n", i, what,
                   hp[i].sd != hp[i].td ? "; the student's projected per token by a learned "
                                          "dense layer"
                                        : "",
                   (double)o->hidden_cosine);
        }
    }
    kd_trainer_destroy(tr);
    kd_feature_loss_destroy(kl);
    kd_feature_loss_destroy(cos);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    return rc;
}

static kd_status make_parts(const text_options *o, const lm_run *r, kd_loss **loss,
                            kd_optimizer **opt)
{
    kd_status st = kd_loss_create(r->teacher ? (kd_loss_kind)r->method : KD_LOSS_HINTON, loss);
    if (st == KD_OK) st = kd_loss_set_float(*loss, KD_LOSS_ALPHA, r->teacher ? r->alpha : 0.0f);
    if (st == KD_OK && r->method != KD_LOSS_LOGIT_MSE)
        st = kd_loss_set_float(*loss, KD_LOSS_TEMPERATURE, r->temperature);
    if (st == KD_OK) st = kd_loss_set_float(*loss, KD_LOSS_MASK_UNLABELLED, 1.0f);
    if (st == KD_OK && r->teacher && o->jsd_beta >= 0.0f)
        st = kd_loss_set_float(*loss, KD_LOSS_JSD_BETA, o->jsd_beta);
    if (st == KD_OK && r->teacher && o->skew >= 0.0f)
        st = kd_loss_set_float(*loss, KD_LOSS_SKEW, o->skew);
    if (st == KD_OK) st = kd_optimizer_create(KD_OPTIMIZER_ADAMW, r->model, opt);
    if (st != KD_OK) return st;
    /* nanoGPT's recipe, shortened: AdamW, cosine decay to a tenth, a short warm-up, clipping. */
    int64_t warmup = r->steps / 10 < 100 ? r->steps / 10 : 100;
    st = kd_optimizer_set_float(*opt, KD_OPT_LEARNING_RATE, o->lr);
    if (st == KD_OK) st = kd_optimizer_set_int(*opt, KD_OPT_SCHEDULE, KD_SCHEDULE_COSINE);
    if (st == KD_OK) st = kd_optimizer_set_int(*opt, KD_OPT_TOTAL_STEPS, r->steps);
    if (st == KD_OK) st = kd_optimizer_set_float(*opt, KD_OPT_MIN_LR, o->lr / 10.0f);
    if (st == KD_OK) st = kd_optimizer_set_int(*opt, KD_OPT_WARMUP_STEPS, warmup);
    if (st == KD_OK) st = kd_optimizer_set_float(*opt, KD_OPT_WARMUP_START, 0.1f);
    if (st == KD_OK) st = kd_optimizer_set_float(*opt, KD_OPT_CLIP_NORM, 1.0f);
    if (st == KD_OK) st = kd_optimizer_set_float(*opt, KD_OPT_WEIGHT_DECAY, 0.01f);
    return st;
}

/* The held-out bytes a curve point is measured on: --eval-bytes, else 64 KiB (the table's final
 * numbers use all of them), so that ten points cost little beside the training. */
static int64_t curve_bytes(const text_options *o)
{
    return o->eval_bytes > 0 ? o->eval_bytes : 65536;
}

/* ---------------------------------------------------------------- the log */

/* The first failed write's errno of the --log file (log_flush, log_close). */
static int log_errno;

static void log_line(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(FILE *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    log_flush(log, &log_errno);
}

/* Steps between held-out evaluations: --eval-every, else ten a run with a report, else none. */
static int64_t eval_every(const text_options *o, int64_t steps)
{
    if (o->eval_every > 0) return o->eval_every;
    if (o->report_dir == NULL) return 0;
    return steps / 10 > 0 ? steps / 10 : 1;
}

static int curve_point(const text_options *o, const kd_text *text, const lm_run *r, int64_t step,
                       FILE *log)
{
    double ce = 0.0;
    int64_t tokens = 0;
    char who[96];
    snprintf(who, sizeof who, "the %s", r->name);
    int rc = validation_ce(r->model, who, text, 64, curve_bytes(o), &ce, &tokens);
    if (rc != EXIT_OK) return rc;
    float bpb = 0.0f;
    kd_bits_per_byte((float)ce, 1, 1, &bpb);
    if (r->trace != NULL && text_curve_add(&r->trace->heldout, step, bpb) != 0) {
        fail_msg("out of memory for the held-out curve");
        return EXIT_RUNTIME;
    }
    if (!o->quiet)
        printf("%s: step %lld/%lld  held-out %.4f bits per byte\n", r->name, (long long)step,
               (long long)r->steps, (double)bpb);
    if (log != NULL)
        log_line(log, "{\"run\": \"%s\", \"step\": %lld, \"heldout_bits_per_byte\": %.6g}\n",
                 r->name, (long long)step, (double)bpb);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- checkpoints */

/* train_lm's result when --stop-after-step stopped its run: every later part of the command is
 * skipped (no model saved), and the command ends with exit 0. */
#define TEXT_STOPPED (-2)

/* The checkpoint of run r: --checkpoint FILE for the model or the distilled student, FILE.teacher
 * and FILE.alone for the other runs of kd distill. */
static void run_checkpoint(const text_options *o, const char *run, char *out, size_t size)
{
    const char *suffix = strcmp(run, "teacher") == 0         ? ".teacher"
                         : strcmp(run, "student alone") == 0 ? ".alone"
                                                             : "";
    snprintf(out, size, "%s%s", o->checkpoint, suffix);
}

/* What decides run r's training, "--steps=2000; --lr=0.003; ...", and its hash (FNV-1a): a
 * checkpoint continues only the run it came from. Not the outputs, the logging or evaluation.
 * The specs and a --teacher file go in as hashes (hash_str, hash_file: a spec may be longer than
 * the note, a retrained teacher keeps its spec), each entry short. */
static uint64_t run_fingerprint(const text_options *o, const kd_text *text, const lm_run *r,
                                char *note, size_t size)
{
    int64_t bytes = 0;
    kd_text_size(text, &bytes);
    const char *spec = kd_model_spec(r->model);
    int n = snprintf(note, size,
                     "run=%s; --text=%.600s (%lld bytes); --validation=%g; --max-bytes=%lld; "
                     "--steps=%lld; --batch=%lld; --lr=%g; --seed=%llu; MPI processes=%d; "
                     "spec#%016llx",
                     r->name, o->text, (long long)bytes, (double)o->validation,
                     (long long)o->max_bytes, (long long)r->steps, (long long)o->batch,
                     (double)o->lr, (unsigned long long)r->seed, par_world(),
                     (unsigned long long)hash_str(HASH_SEED, spec));
    if (r->teacher != NULL && n > 0 && (size_t)n < size) {
        const char *tspec = kd_model_spec(r->teacher);
        uint64_t teacher_file = HASH_SEED;
        if (o->teacher_file == NULL || hash_file(o->teacher_file, &teacher_file) != 0)
            teacher_file = 0;
        n += snprintf(
            note + n, size - (size_t)n,
            "; --method=%s; --alpha=%g; --temperature=%g; --jsd-beta=%g; --skew=%g; "
            "--attention-kl=%g; --attention-layers=%.100s; --attention-heads=%.20s; "
            "--hidden-cosine=%g; --hidden-layers=%.300s; teacher#%016llx; "
            "teacher file#%016llx",
            method_name(r->method), (double)r->alpha, (double)r->temperature, (double)o->jsd_beta,
            (double)o->skew, r->attention ? (double)o->attention_kl : 0.0,
            o->attention_layers ? o->attention_layers : "-",
            o->attention_heads ? o->attention_heads : "-",
            r->hidden ? (double)o->hidden_cosine : 0.0, o->hidden_layers ? o->hidden_layers : "-",
            (unsigned long long)hash_str(HASH_SEED, tspec), (unsigned long long)teacher_file);
    }
    /* the free-text values in full: the note shows only their first hundreds of bytes */
    uint64_t h = hash_str(HASH_SEED, note);
    const char *texts[] = {o->text, o->attention_layers, o->attention_heads, o->hidden_layers};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++)
        if (texts[k] != NULL) h = hash_str(h, texts[k]);
    return h;
}

/* The first "; "-separated entry of saved that ours lacks, for the message. */
static void first_difference(const char *saved, const char *ours, char *out, size_t size)
{
    snprintf(out, size, "its options differ");
    while (*saved == ';' || *saved == ' ') saved++;
    for (const char *p = saved; *p != '\0';) {
        size_t n = strcspn(p, ";");
        /* whole entries of ours, so that none matches inside another */
        int found = 0;
        for (const char *q = ours; *q != '\0' && !found;) {
            size_t m = strcspn(q, ";");
            found = m == n && strncmp(q, p, n) == 0;
            q += m;
            while (*q == ';' || *q == ' ') q++;
        }
        if (!found) {
            size_t k = strcspn(p, "=#");
            if (k > n) k = n;
            char now[700] = "?";
            for (const char *q = ours; *q != '\0';) {
                size_t m = strcspn(q, ";");
                if (m >= k && strncmp(q, p, k) == 0 && (q[k] == '=' || q[k] == '#'))
                    snprintf(now, sizeof now, "%.*s", (int)m, q);
                q += m;
                while (*q == ';' || *q == ' ') q++;
            }
            snprintf(out, size, "it was %.*s, this run has %s", (int)(n < 600 ? n : 600), p, now);
            return;
        }
        p += n;
        while (*p == ';' || *p == ' ') p++;
    }
}

/* --resume: loads run name's checkpoint into t when there is one (*start: its step; 0 when none,
 * said unless quiet, as the image runs say it: a mistyped path must not pass for a resume). */
static int resume_run(const char *name, int quiet, const char *path, kd_trainer *t,
                      kd_optimizer *opt, uint64_t print, const char *note, int64_t steps,
                      int64_t *start)
{
    char saved[4096] = "", why[1400];
    uint64_t was = 0;
    *start = 0;
    /* the image runs' reader of the sidecar: 0 when killed before its first checkpoint */
    int got = checkpoint_peek(path, &was, saved, sizeof saved);
    if (got == 0 && !quiet)
        printf("%s: no checkpoint at %s yet; starting from the beginning\n", name, path);
    if (got <= 0) return got == 0 ? EXIT_OK : EXIT_RUNTIME;
    if (was != print) {
        first_difference(saved, note, why, sizeof why);
        fail_msg("%s is of another run: %s; resume with the options that wrote it, or start "
                 "again with --force",
                 path, why);
        return EXIT_USAGE;
    }
    kd_status st = kd_trainer_load(t, path);
    if (st != KD_OK) {
        char what[4300];
        snprintf(what, sizeof what, "cannot resume from %s", path);
        return fail_kd(what, st);
    }
    kd_optimizer_get_int(opt, KD_OPT_STEP, start);
    if (*start < 0 || *start > steps) {
        fail_msg("the checkpoint %s is at step %lld, past the run's %lld", path, (long long)*start,
                 (long long)steps);
        return EXIT_RUNTIME;
    }
    if (*start > 0) printf("resumed from %s at step %lld\n", path, (long long)*start);
    return EXIT_OK;
}

/* Rank 0 saves run r's state and its sidecar (fingerprint and options), atomically. */
static int save_run(const char *path, kd_trainer *t, uint64_t print, const char *note)
{
    static history none; /* text runs keep no epoch history */
    if (par_rank() != 0) return EXIT_OK;
    return checkpoint_save(path, t, print, &none, note) == 0 ? EXIT_OK : EXIT_RUNTIME;
}

static int train_lm(const text_options *o, const kd_text *text, const lm_run *r, FILE *log,
                    double *seconds)
{
    int64_t T = 0;
    kd_model_tokens(r->model, NULL, &T);
    kd_loss *loss = NULL;
    kd_optimizer *opt = NULL;
    kd_trainer *tr = NULL;
    kd_feature_loss *kl = NULL, *cos = NULL;
    hidden_pair hp[MAX_HIDDEN];
    int np = 0, bad = 0, nterms = 0, rc = EXIT_OK;
    int32_t *ids = malloc(sizeof *ids * (size_t)(o->batch * T));
    int32_t *y = malloc(sizeof *y * (size_t)(o->batch * T));
    float *x = malloc(sizeof *x * (size_t)(o->batch * T));
    kd_status st = ids && y && x ? make_parts(o, r, &loss, &opt) : KD_ERR_NOMEM;
    const char *what = "cannot set up training";
    if (st == KD_OK) st = kd_trainer_create(r->model, loss, opt, &tr);
    if (st == KD_OK && r->teacher != NULL) {
        st = kd_trainer_add_teacher(tr, r->teacher, 1.0f);
        what = "the teacher cannot teach this student";
    }
    if (st == KD_OK && r->teacher != NULL && r->attention) {
        st = add_attention(o, tr, r->model, r->teacher, &kl);
        what = "cannot add the attention term";
        nterms++;
    }
    if (st == KD_OK && r->teacher != NULL && r->hidden) {
        if (parse_hidden(o, r->model, r->teacher, hp, &np) != EXIT_OK) st = KD_ERR_ARGUMENT;
        if (st == KD_OK) st = add_hidden(o, tr, hp, np, &cos, &bad);
        what = "cannot add the hidden-state cosine terms";
    }
    /* Under mpirun: one rank of a data-parallel job (issue 15), its terms all added first. */
    if (st == KD_OK && par_world() > 1) rc = par_attach(tr);
    /* --checkpoint: every rank resumes from the same file; batches are drawn from the step's
     * seed, so a resumed run ends with the uninterrupted run's model */
    char ckpt[4200] = "", note[4096] = "";
    uint64_t print = 0;
    int64_t first = 0;
    int stopped = 0;
    if (o->checkpoint != NULL) {
        run_checkpoint(o, r->name, ckpt, sizeof ckpt);
        print = run_fingerprint(o, text, r, note, sizeof note);
        if (st == KD_OK && rc == EXIT_OK && o->resume)
            rc = resume_run(r->name, o->quiet, ckpt, tr, opt, print, note, r->steps, &first);
        if (o->resume) rc = par_agree_resume(rc, first, print, ckpt); /* every rank alike */
        if (r->trace != NULL) r->trace->resumed_at = first;
    }
    int64_t lo = 0, hi = o->batch;
    par_slice(o->batch, &lo, &hi);
    int64_t every = eval_every(o, r->steps);
    double start = now_seconds(), sum = 0.0, eval_seconds = 0.0;
    int64_t count = 0;
    if (st == KD_OK && rc == EXIT_OK && every > 0 && first == 0)
        rc = curve_point(o, text, r, 0, log);
    eval_seconds = now_seconds() - start;
    for (int64_t s = first; st == KD_OK && rc == EXIT_OK && s < r->steps; s++) {
        what = "a training step failed";
        st = kd_text_batch(text, KD_TEXT_TRAIN, o->batch, T, r->seed * 1000003u + (uint64_t)s, ids,
                           y);
        for (int64_t i = 0; st == KD_OK && i < o->batch * T; i++) x[i] = (float)ids[i];
        float v = 0.0f;
        /* Every rank draws the same global batch and steps on its sequences [lo, hi). */
        if (st == KD_OK) st = kd_trainer_step(tr, x + lo * T, y + lo * T, NULL, hi - lo, &v);
        sum += v;
        count++;
        if (st == KD_OK && every > 0 && ((s + 1) % every == 0 || s + 1 == r->steps)) {
            double t0 = now_seconds();
            rc = curve_point(o, text, r, s + 1, log);
            eval_seconds += now_seconds() - t0;
        }
        /* --stop-after-step falls on a log point (checked): a resumed run then logs the same
         * windows as an uninterrupted one */
        int stop = st == KD_OK && o->stop_after > 0 && s + 1 == o->stop_after && s + 1 < r->steps;
        if (st != KD_OK || ((s + 1) % o->log_every != 0 && s + 1 != r->steps)) continue;
        double t = now_seconds() - start - eval_seconds;
        double mean = sum / (double)count;
        if (r->trace != NULL && text_curve_add(&r->trace->loss, s + 1, mean) != 0)
            st = KD_ERR_NOMEM;
        char terms[160] = "";
        float akl = 0.0f, hc = 0.0f;
        if (kl != NULL) {
            kd_trainer_feature_value(tr, 0, &akl);
            snprintf(terms, sizeof terms, "  attention KL %.4g", (double)(akl / o->attention_kl));
        }
        if (cos != NULL) { /* the mean of 1 - cos over the pairs */
            for (int k = 0; k < np; k++) {
                float v1 = 0.0f;
                kd_trainer_feature_value(tr, nterms + k, &v1);
                hc += v1;
            }
            size_t len = strlen(terms);
            snprintf(terms + len, sizeof terms - len, "  hidden cosine %.4g",
                     (double)(hc / o->hidden_cosine / (float)np));
        }
        if (!o->quiet)
            printf("%s: step %lld/%lld  loss %.4g%s  %.0f s\n", r->name, (long long)(s + 1),
                   (long long)r->steps, mean, terms, t);
        if (log != NULL)
            log_line(log, "{\"run\": \"%s\", \"step\": %lld, \"loss\": %.6g, \"seconds\": %.3f}\n",
                     r->name, (long long)(s + 1), mean, t);
        fflush(stdout);
        sum = 0.0;
        count = 0;
        /* the checkpoint after the step's log line, flushed: a killed run's log ends at or after
         * the step its checkpoint holds, never before */
        if (log != NULL) fflush(log);
        if (rc == EXIT_OK && o->checkpoint != NULL) rc = save_run(ckpt, tr, print, note);
        if (stop && rc == EXIT_OK) {
            stopped = 1;
            break;
        }
    }
    *seconds = now_seconds() - start - eval_seconds;
    if (rc == EXIT_OK) rc = st == KD_OK ? EXIT_OK : fail_kd(what, st);
    if (rc == EXIT_OK && stopped) {
        printf("%s: stopped after step %lld; %s holds it (--resume continues)\n", r->name,
               (long long)o->stop_after, ckpt);
        rc = TEXT_STOPPED;
    }
    /* The exit-code table of every command: a teacher that does not fit the student is 2, a
     * step that gave a non-finite value (the run diverged) is 3. */
    if (st == KD_ERR_SHAPE && strcmp(what, "the teacher cannot teach this student") == 0)
        rc = EXIT_USAGE;
    else if (st == KD_ERR_NUMERIC && strcmp(what, "a training step failed") == 0)
        rc = EXIT_COLLAPSE;
    (void)bad;
    kd_trainer_destroy(tr);
    kd_feature_loss_destroy(kl);
    kd_feature_loss_destroy(cos);
    kd_optimizer_destroy(opt);
    kd_loss_destroy(loss);
    free(ids);
    free(y);
    free(x);
    return rc;
}

static int save(kd_model *m, const char *path)
{
    if (path == NULL || par_rank() != 0) return EXIT_OK; /* rank 0 writes the job's files */
    kd_status st = kd_model_save(m, path);
    if (st == KD_OK) return EXIT_OK;
    char what[4200];
    snprintf(what, sizeof what, "cannot save %s", path);
    return fail_kd(what, st);
}

/* "2,576,674 bytes of FILE, the last 257,667 held out; context 64, batch 16, AdamW lr 0.003
 * (cosine), seed 1" */
static void describe_text(const text_options *o, const kd_text *text, int64_t T, char *out,
                          size_t size)
{
    int64_t n = 0, val = 0;
    kd_text_size(text, &n);
    kd_text_part_size(text, KD_TEXT_VALIDATION, &val);
    char a[32], b[32];
    format_count(n, a, sizeof a);
    format_count(val, b, sizeof b);
    snprintf(out, size,
             "%s bytes of %s, byte-level tokens (vocabulary 256); the last %s held out. Context "
             "%lld, batch %lld windows, AdamW lr %g with warm-up and cosine decay, clip 1, seed "
             "%llu. Bits per byte: the held-out cross-entropy in bits for each byte.",
             a, o->text, b, (long long)T, (long long)o->batch, (double)o->lr,
             (unsigned long long)o->seed);
}

static const char *const colors[] = {"#6b7280", "#d97706", "#059669", "#2f6db5"};

static int write_text_report(const text_options *o, const char *title, const char *subtitle,
                             const char *headline, const char *notes, const lm_result *res,
                             const int *color, int n)
{
    text_model_report m[3];
    for (int i = 0; i < n; i++) {
        m[i] = (text_model_report){
            res[i].name,   colors[color[i]], res[i].shape,   res[i].bpb,          res[i].ppl,
            res[i].ce,     res[i].params,    res[i].bytes,   res[i].tokens_per_s, res[i].gen_tps,
            res[i].sample, &res[i].loss,     &res[i].heldout};
    }
    text_report r = {title, subtitle, headline, notes, m, n, curve_bytes(o)};
    if (par_rank() != 0) return EXIT_OK; /* rank 0 writes the job's files */
    int rc = text_report_write(o->report_dir, &r);
    if (rc == EXIT_OK && !o->quiet) printf("report: %s/index.html\n", o->report_dir);
    return rc;
}

static const char report_notes[] =
    "The training objective is cross-entropy on the next bytes for a model trained alone and "
    "the distillation loss (feature terms included) for a distilled one, so only the held-out "
    "curves compare. "
    "Held-out points during training are measured on the first bytes of the held-out part (the "
    "figure says how many); the table's numbers on all of it (or --eval-bytes). Training tokens "
    "per second leave the held-out evaluations out and include the teacher's forward pass for "
    "a distilled student. Generation: batch 1 with cached keys and values, temperature 0.8, "
    "top-p 0.9, after a newline.";

/* Whether a run did not diverge: its held-out cross-entropy is finite and either below twice a
 * uniform guess's (2 ln 256 nats, 16 bits a byte: a short run may end a little above uniform) or
 * no worse than the untrained model's. That model is built again from its spec and seed, and
 * measured on the same held-out bytes, only when the first test fails: a tied LM head starts far
 * above uniform (its logits are products of N(0, 1) embeddings), so a short run of one can end at
 * 20 bits a byte while its loss falls. A run that got worse diverged: exit 3 with nothing saved,
 * as a diverged image run (--lr 10 ended at 982 bits, or at 603 from a tied head's 31). */
static int check_learned(const char *name, const char *spec, uint64_t seed, const text_options *o,
                         const kd_text *text, const lm_result *r)
{
    if (isfinite(r->ce) && r->ce <= 2.0 * log((double)KD_TEXT_VOCAB)) return EXIT_OK;
    double start = NAN;
    int64_t tokens = 0;
    kd_model *fresh = NULL;
    if (isfinite(r->ce) && spec_model(name, spec, seed, &fresh) == EXIT_OK &&
        validation_ce(fresh, "the untrained model", text, 64, o->eval_bytes, &start, &tokens) ==
            EXIT_OK &&
        r->ce <= start) {
        kd_model_destroy(fresh);
        return EXIT_OK;
    }
    kd_model_destroy(fresh);
    float bpb0 = 0.0f;
    kd_bits_per_byte((float)start, 1, 1, &bpb0);
    if (!isfinite(r->ce))
        fail_msg("the %s diverged: its held-out cross-entropy is not finite; nothing saved; try a "
                 "lower --lr",
                 name);
    else if (isfinite(start))
        fail_msg("the %s diverged: %.4g bits per byte on the held-out text, worse than the %.4g "
                 "of the untrained model; nothing saved; try a lower --lr",
                 name, r->bpb, (double)bpb0);
    else
        fail_msg("the %s diverged: %.4g bits per byte on the held-out text, more than twice the 8 "
                 "of a uniform guess; nothing saved; try a lower --lr",
                 name, r->bpb);
    return EXIT_COLLAPSE;
}

/* Measures, then saves when the run learned (check_learned: the model was built from spec and
 * seed); r->bytes is the file's size. */
static int measure_and_save(kd_model *m, const char *name, const char *spec, uint64_t seed,
                            const text_options *o, const kd_text *text, const char *path,
                            double seconds, int64_t tokens_trained, lm_result *r)
{
    char who[96];
    snprintf(who, sizeof who, "the %s", name);
    int rc = measure(m, who, text, o->eval_bytes, NULL, seconds, tokens_trained, o->seed, r);
    if (rc == EXIT_OK) rc = check_learned(name, spec, seed, o, text, r);
    if (rc == EXIT_OK && path != NULL) rc = save(m, path);
    if (rc == EXIT_OK && path != NULL) r->bytes = file_size(path);
    return rc;
}

static int text_train(const text_options *o, const kd_text *text, FILE *log)
{
    char spec[8192];
    if (o->spec != NULL)
        snprintf(spec, sizeof spec, "%s", o->spec);
    else
        text_lm_spec(TEXT_CONTEXT, TEXT_TEACHER_WIDTH, TEXT_TEACHER_LAYERS, TEXT_TEACHER_HEADS,
                     spec, sizeof spec);
    kd_model *m;
    int rc = spec_model("model", spec, o->seed, &m);
    if (rc != EXIT_OK) return rc;
    int64_t T = 0;
    kd_model_tokens(m, NULL, &T);
    if ((rc = check_windows(o, text, T)) != EXIT_OK) {
        kd_model_destroy(m);
        return rc;
    }
    lm_result res;
    memset(&res, 0, sizeof res);
    snprintf(res.name, sizeof res.name, "model");
    lm_run r = {"model", m, NULL, KD_LOSS_HINTON, 0.0f, 1.0f, o->steps, o->seed, 0, 0, &res};
    double seconds = 0.0;
    rc = train_lm(o, text, &r, log, &seconds);
    if (rc == EXIT_OK)
        rc = measure_and_save(m, "model", spec, o->seed, o, text, o->out, seconds,
                              (o->steps - res.resumed_at) * o->batch * T, &res);
    if (rc == EXIT_OK) {
        printf("saved %s: validation %.4f nats/byte, perplexity %.3f, %.4f bits per byte after "
               "%lld steps, %.0f s\n",
               o->out, res.ce, res.ppl, res.bpb, (long long)o->steps, seconds);
        if (!o->quiet) print_results(&res, 1);
    }
    if (rc == EXIT_OK && o->report_dir != NULL) {
        char title[4200], sub[4600], head[400];
        snprintf(title, sizeof title, "kd train --text %s", o->text);
        describe_text(o, text, T, sub, sizeof sub);
        size_t len = strlen(sub);
        snprintf(sub + len, sizeof sub - len, " %lld steps of cross-entropy on the next bytes.",
                 (long long)o->steps);
        snprintf(head, sizeof head,
                 "The model reaches %.4f bits per byte (perplexity %.3f) on held-out text after "
                 "%lld steps.",
                 res.bpb, res.ppl, (long long)o->steps);
        int color = 3;
        rc = write_text_report(o, title, sub, head, report_notes, &res, &color, 1);
    }
    text_curve_free(&res.loss);
    text_curve_free(&res.heldout);
    kd_model_destroy(m);
    return rc == TEXT_STOPPED ? EXIT_OK : rc;
}

static int text_distill(const text_options *o, const kd_text *text, FILE *log)
{
    char tspec[8192], sspec[8192];
    if (o->teacher_spec != NULL)
        snprintf(tspec, sizeof tspec, "%s", o->teacher_spec);
    else
        text_lm_spec(TEXT_CONTEXT, TEXT_TEACHER_WIDTH, TEXT_TEACHER_LAYERS, TEXT_TEACHER_HEADS,
                     tspec, sizeof tspec);
    if (o->student_spec != NULL)
        snprintf(sspec, sizeof sspec, "%s", o->student_spec);
    else
        text_lm_spec(TEXT_CONTEXT, TEXT_STUDENT_WIDTH, TEXT_STUDENT_LAYERS, TEXT_STUDENT_HEADS,
                     sspec, sizeof sspec);
    kd_model *teacher = NULL, *student = NULL, *alone = NULL;
    int rc = spec_model("student", sspec, o->seed + 1, &student);
    if (rc == EXIT_OK)
        rc = o->teacher_file != NULL ? text_load_model(o->teacher_file, &teacher)
                                     : spec_model("teacher", tspec, o->seed, &teacher);
    int64_t T = 0, TT = 0;
    if (rc == EXIT_OK) {
        kd_model_tokens(student, NULL, &T);
        kd_model_tokens(teacher, NULL, &TT);
        rc = check_windows(o, text, T > TT ? T : TT);
    }
    if (rc == EXIT_OK) {
        rc = check_terms(o, student, teacher);
    }
    lm_result res[3];
    int color[3], n = 0;
    memset(res, 0, sizeof res);
    double secs = 0.0;
    snprintf(res[0].name, sizeof res[0].name, "teacher");
    if (rc == EXIT_OK && o->teacher_file == NULL) {
        lm_run r = {"teacher", teacher, NULL, KD_LOSS_HINTON, 0.0f, 1.0f, o->teacher_steps,
                    o->seed,   0,       0,    &res[0]};
        rc = train_lm(o, text, &r, log, &secs);
    }
    color[n] = 0;
    char tname[4200];
    snprintf(tname, sizeof tname, "the teacher%s%s", o->teacher_file ? " " : "",
             o->teacher_file ? o->teacher_file : "");
    if (rc == EXIT_OK)
        rc = measure(teacher, tname, text, o->eval_bytes, o->teacher_file, secs,
                     o->teacher_file ? 0 : (o->teacher_steps - res[0].resumed_at) * o->batch * TT,
                     o->seed, &res[n++]);
    if (rc == EXIT_OK && o->teacher_file == NULL)
        rc = check_learned("teacher", tspec, o->seed, o, text, &res[0]);
    if (rc == EXIT_OK && o->compare && (rc = kd_model_clone(student, &alone)) != KD_OK)
        rc = fail_kd("cannot copy the student", (kd_status)rc);
    if (rc == EXIT_OK && alone != NULL) {
        snprintf(res[n].name, sizeof res[n].name, "student alone");
        color[n] = 1;
        lm_run r = {"student alone", alone, NULL, KD_LOSS_HINTON, 0.0f, 1.0f, o->steps,
                    o->seed + 2,     0,     0,    &res[n]};
        rc = train_lm(o, text, &r, log, &secs);
        if (rc == EXIT_OK)
            rc = measure(alone, "the student alone", text, o->eval_bytes, NULL, secs,
                         (o->steps - res[n].resumed_at) * o->batch * T, o->seed, &res[n]);
        n++;
    }
    if (rc == EXIT_OK) {
        snprintf(res[n].name, sizeof res[n].name, "distilled (%s%s%s)", method_name(o->method),
                 o->attention_kl > 0.0f ? " + attention KL" : "",
                 o->hidden_cosine > 0.0f ? " + hidden cosine" : "");
        color[n] = 2;
        lm_run r = {"distilled",
                    student,
                    teacher,
                    o->method,
                    o->alpha,
                    o->temperature,
                    o->steps,
                    o->seed + 2,
                    o->attention_kl > 0.0f,
                    o->hidden_cosine > 0.0f,
                    &res[n]};
        rc = train_lm(o, text, &r, log, &secs);
    }
    if (rc == EXIT_OK)
        rc = measure_and_save(student, "student", sspec, o->seed + 1, o, text, o->out, secs,
                              (o->steps - res[n].resumed_at) * o->batch * T, &res[n]);
    n += rc == EXIT_OK;
    if (rc == EXIT_OK) {
        const lm_result *d = &res[n - 1];
        printf("saved %s: validation %.4f nats/byte, perplexity %.3f, %.4f bits per byte "
               "(teacher %.4f) after %lld steps of %s, alpha %g, T %g\n",
               o->out, d->ce, d->ppl, d->bpb, res[0].bpb, (long long)o->steps,
               method_name(o->method), (double)o->alpha, (double)o->temperature);
        if (!o->quiet) print_results(res, n);
    }
    if (rc == EXIT_OK && o->report_dir != NULL) {
        const lm_result *d = &res[n - 1], *t = &res[0];
        char title[4200], sub[4800], head[600], alone_part[160] = "";
        snprintf(title, sizeof title, "kd distill --text %s", o->text);
        describe_text(o, text, T, sub, sizeof sub);
        size_t len = strlen(sub);
        snprintf(sub + len, sizeof sub - len,
                 " Teacher: %s; students: %lld steps; distilled with %s, alpha %g, T %g%s%s.",
                 o->teacher_file ? o->teacher_file : "trained here", (long long)o->steps,
                 method_name(o->method), (double)o->alpha, (double)o->temperature,
                 o->attention_kl > 0.0f ? ", MiniLM's attention KL" : "",
                 o->hidden_cosine > 0.0f ? ", DistilBERT's hidden-state cosine" : "");
        if (alone != NULL)
            snprintf(alone_part, sizeof alone_part,
                     ", against %.4f for the same student trained alone on the same budget",
                     res[1].bpb);
        snprintf(head, sizeof head,
                 "The distilled student (%.1f%% of the teacher's parameters) reaches %.4f bits "
                 "per byte on held-out text%s; the teacher %.4f.",
                 t->params > 0 ? 100.0 * (double)d->params / (double)t->params : 0.0, d->bpb,
                 alone_part, t->bpb);
        rc = write_text_report(o, title, sub, head, report_notes, res, color, n);
    }
    for (int i = 0; i < 3; i++) {
        text_curve_free(&res[i].loss);
        text_curve_free(&res[i].heldout);
    }
    kd_model_destroy(alone);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
    return rc == TEXT_STOPPED ? EXIT_OK : rc;
}

static int text_eval(const text_options *o, const kd_text *text)
{
    kd_model *m;
    int rc = text_load_model(o->model, &m);
    if (rc != EXIT_OK) return rc;
    int64_t tokens = 0, T = 0, vbytes = 0;
    double ce = 0.0;
    kd_model_tokens(m, NULL, &T);
    kd_text_part_size(text, KD_TEXT_VALIDATION, &vbytes);
    rc = validation_ce(m, o->model, text, o->batch, o->eval_bytes, &ce, &tokens);
    if (rc == EXIT_OK) {
        float ppl = 0.0f, bpb = 0.0f;
        kd_perplexity((float)ce, &ppl);
        kd_bits_per_byte((float)ce, 1, 1, &bpb);
        int64_t params = 0;
        kd_model_param_count(m, &params);
        if (o->json) {
            printf("{\"model\": ");
            json_string(stdout, o->model);
            printf(", \"text\": ");
            json_string(stdout, o->text);
            printf(", \"context\": %lld, \"parameters\": %lld, \"validation_bytes\": %lld, "
                   "\"tokens\": %lld, \"cross_entropy\": %.6f, \"perplexity\": %.6f, "
                   "\"bits_per_byte\": %.6f}\n",
                   (long long)T, (long long)params, (long long)vbytes, (long long)tokens, ce,
                   (double)ppl, (double)bpb);
        } else if (o->quiet) { /* the number alone, as image eval's accuracy */
            printf("%.4f\n", (double)bpb);
        } else {
            char p[32];
            format_count(params, p, sizeof p);
            printf("%s: %s parameters, context %lld bytes\n", o->model, p, (long long)T);
            printf("validation: the last %lld bytes of %s, %lld predicted\n", (long long)vbytes,
                   o->text, (long long)tokens);
            printf("cross-entropy %.4f nats/byte, perplexity %.3f, %.4f bits per byte\n", ce,
                   (double)ppl, (double)bpb);
        }
    }
    kd_model_destroy(m);
    return rc;
}

/* --checkpoint FILE (and FILE.teacher, FILE.alone for distill's other runs) can be written, and an
 * existing one is continued (--resume) or replaced (--force), never overwritten by accident. */
static int check_checkpoints(const text_options *o, const char *name)
{
    static const char *const runs[] = {"model", "teacher", "student alone"};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        if (k > 0 && strcmp(name, "distill") != 0) break;
        if (k == 1 && o->teacher_file != NULL) continue;
        if (k == 2 && !o->compare) continue;
        char path[4200], side[4210];
        run_checkpoint(o, runs[k], path, sizeof path);
        snprintf(side, sizeof side, "%s.run", path); /* its sidecar, saved the same way */
        int rc = check_output(path);
        if (rc == EXIT_OK) rc = check_output(side);
        if (rc != EXIT_OK) return rc;
        if (!o->resume && !o->force && access(path, F_OK) == 0) {
            fail_msg("%s exists: continue it with --resume, or start again with --force", path);
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* The specs given build byte-level language models: a usage error, found before the text is read. */
static int check_specs(const text_options *o)
{
    const char *specs[3] = {o->spec, o->teacher_spec, o->student_spec};
    const char *what[3] = {"model", "teacher", "student"};
    for (int i = 0; i < 3; i++) {
        kd_model *m = NULL;
        int rc = specs[i] != NULL ? spec_model(what[i], specs[i], o->seed, &m) : EXIT_OK;
        kd_model_destroy(m);
        if (rc != EXIT_OK) return rc;
    }
    return EXIT_OK;
}

int cmd_text(const char *name, int argc, char **argv)
{
    text_options o;
    int rc = text_parse(&o, name, argc, argv, 2);
    if (rc == -1) return EXIT_OK;
    if (rc != EXIT_OK) return rc;
    if (strcmp(name, "eval") == 0 && o.model == NULL) {
        fail_msg("a model file is required: kd eval MODEL.safetensors --text FILE");
        return EXIT_USAGE;
    }
    if (strcmp(name, "eval") != 0 && o.out == NULL) {
        fail_msg("--out MODEL.safetensors is required (see 'kd help %s')", name);
        return EXIT_USAGE;
    }
    /* Nothing it reads may be what it writes: the corpus, the teacher, the model of eval. Under
     * mpirun rank 0 alone writes, so it alone checks (another host need not have the
     * directories). */
    char ck_teacher[4200] = "", ck_alone[4200] = "", side[3][4210] = {"", "", ""};
    if (o.checkpoint != NULL && strcmp(name, "distill") == 0) { /* the ones it will write */
        if (o.teacher_file == NULL) run_checkpoint(&o, "teacher", ck_teacher, sizeof ck_teacher);
        if (o.compare) run_checkpoint(&o, "student alone", ck_alone, sizeof ck_alone);
    }
    /* and each one's sidecar FILE.run (checkpoint_save) */
    if (o.checkpoint != NULL) snprintf(side[0], sizeof side[0], "%s.run", o.checkpoint);
    if (ck_teacher[0]) snprintf(side[1], sizeof side[1], "%s.run", ck_teacher);
    if (ck_alone[0]) snprintf(side[2], sizeof side[2], "%s.run", ck_alone);
    const char *out[] = {o.out,
                         o.log_path,
                         o.report_dir,
                         o.checkpoint,
                         ck_teacher[0] ? ck_teacher : NULL,
                         ck_alone[0] ? ck_alone : NULL,
                         side[0][0] ? side[0] : NULL,
                         side[1][0] ? side[1] : NULL,
                         side[2][0] ? side[2] : NULL};
    const char *names[] = {"--out",
                           "--log",
                           "--report",
                           "--checkpoint",
                           "--checkpoint (its .teacher)",
                           "--checkpoint (its .alone)",
                           "--checkpoint (its .run)",
                           "--checkpoint (its .teacher.run)",
                           "--checkpoint (its .alone.run)"};
    const char *in[] = {o.text, o.teacher_file, o.model};
    if (par_rank() == 0) {
        if ((rc = check_apart(out, names, 9, in, 3)) != EXIT_OK) return rc;
        if (o.checkpoint != NULL && (rc = check_checkpoints(&o, name)) != EXIT_OK) return rc;
        if (o.out != NULL && (rc = check_output(o.out)) != EXIT_OK) return rc;
        if (o.log_path != NULL && (rc = check_output_in_place(o.log_path)) != EXIT_OK) return rc;
        if (o.report_dir != NULL && (rc = check_output_dir("the report", o.report_dir)) != EXIT_OK)
            return rc;
    }
    if (!o.quiet) par_announce();
    if ((rc = check_specs(&o)) != EXIT_OK) return rc;
    kd_text *text = NULL;
    if ((rc = open_text(&o, &text)) != EXIT_OK) return rc;
    if ((rc = par_check_batch(o.batch, "sequence")) != EXIT_OK) {
        kd_text_destroy(text);
        return rc;
    }
    /* Under mpirun the ranks compute the same results: rank 0 alone prints them and writes the log
     * (errors still come from every rank, on standard error, with its rank). */
    if (par_rank() != 0 && freopen("/dev/null", "w", stdout) == NULL) {
        kd_text_destroy(text);
        return EXIT_RUNTIME;
    }
    FILE *log = NULL;
    if (o.log_path != NULL && par_rank() == 0 &&
        (log = fopen(o.log_path, o.resume ? "a+" : "w")) == NULL) {
        fail_msg("cannot write %s: %s", o.log_path, strerror(errno));
        kd_text_destroy(text);
        return EXIT_RUNTIME;
    }
    /* a resumed log goes on from a new line: a killed run may have left half of one */
    if (log != NULL && o.resume && fseek(log, -1, SEEK_END) == 0 && fgetc(log) != '\n') {
        fseek(log, 0, SEEK_END); /* a read then a write needs a positioning call between */
        fputc('\n', log);
    }
    if (log != NULL && o.resume) fseek(log, 0, SEEK_END);
    if (strcmp(name, "train") == 0)
        rc = text_train(&o, text, log);
    else if (strcmp(name, "distill") == 0)
        rc = text_distill(&o, text, log);
    else
        rc = text_eval(&o, text);
    if (log != NULL) {
        int logged = log_close(log, o.log_path, log_errno);
        if (rc == EXIT_OK) rc = logged;
    }
    kd_text_destroy(text);
    return rc;
}
