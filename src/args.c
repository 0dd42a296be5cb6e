/* Option parsing: one table says which option each command takes, what kind of value it has and
 * where it goes, so an unknown option or a bad value is one clear line (exit code 2). */
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

enum kind {
    FLAG,
    INT,
    FLOAT,
    STRING,
    TEACHER,
    TEACHER_WEIGHT,
    SEED,
    SCHEDULE,
    OPTIMIZER,
    METHOD,
    KEEP,
    OUTPUT,
    AUGMENT
};

/* Which commands take an option. */
#define T (1 << CMD_TRAIN)
#define D (1 << CMD_DISTILL)
#define E (1 << CMD_EVAL)
#define I (1 << CMD_INFO)
#define P (1 << CMD_PREDICT)

typedef struct option_def {
    const char *name;
    enum kind kind;
    size_t offset;
    unsigned commands;
    double lo, hi; /* allowed range of a number (closed unless noted in check_range) */
} option_def;

#define AT(field) offsetof(options, field)

static const option_def table[] = {
    {"--data", STRING, AT(data_dir), T | D | E, 0, 0},
    {"--train", STRING, AT(train_prefix), T | D, 0, 0},
    {"--test", STRING, AT(test_prefix), T | D | E, 0, 0},
    {"--train-y", STRING, AT(train_y), T | D, 0, 0},
    {"--test-y", STRING, AT(test_y), T | D | E, 0, 0},
    {"--label-column", STRING, AT(label_column), T | D | E | P, 0, 0},
    {"--x-name", STRING, AT(x_name), T | D | E | P, 0, 0},
    {"--y-name", STRING, AT(y_name), T | D | E, 0, 0},
    {"--channels", INT, AT(channels), T | D | E | P, 1, 3},
    {"--normalize", FLAG, AT(normalize), T | D, 0, 0},
    {"--input", STRING, AT(input), P, 0, 0},
    {"--output", OUTPUT, 0, P, 0, 0},
    {"--teacher-logits", STRING, AT(teacher_logits), D, 0, 0},
    {"--model", STRING, AT(model_spec), T, 0, 0},
    {"--student", STRING, AT(student_spec), D, 0, 0},
    {"--teacher", TEACHER, 0, D, 0, 0},
    {"--teacher-weight", TEACHER_WEIGHT, 0, D, 0, 0},
    {"--teacher-spec", STRING, AT(teacher_spec), D, 0, 0},
    {"--teacher-epochs", INT, AT(teacher_epochs), D, 1, MAX_EPOCHS},
    {"--epochs", INT, AT(epochs), T | D, 1, MAX_EPOCHS},
    {"--batch", INT, AT(batch), T | D | E | P, 1, 65536},
    {"--lr", FLOAT, AT(lr), T | D, 0, 1e6},
    {"--min-lr", FLOAT, AT(min_lr), T | D, 0, 1e6},
    {"--warmup-epochs", INT, AT(warmup_epochs), T | D, 0, MAX_EPOCHS},
    {"--clip-norm", FLOAT, AT(clip_norm), T | D, 0, 1e6},
    {"--momentum", FLOAT, AT(momentum), T | D, 0, 1},
    {"--weight-decay", FLOAT, AT(weight_decay), T | D, 0, 1e6},
    {"--nesterov", FLAG, AT(nesterov), T | D, 0, 0},
    {"--schedule", SCHEDULE, 0, T | D, 0, 0},
    {"--optimizer", OPTIMIZER, 0, T | D, 0, 0},
    {"--method", METHOD, 0, D, 0, 0},
    {"--temperature", FLOAT, AT(temperature), D, 0, 1e6},
    {"--alpha", FLOAT, AT(alpha), D, 0, 1},
    {"--beta", FLOAT, AT(beta), D, 0, 1e6},
    {"--gamma", FLOAT, AT(gamma), D, 0, 1e6},
    {"--seed", SEED, 0, T | D, 0, 0},
    {"--seeds", INT, AT(seeds), D, 1, 100},
    {"--val", FLOAT, AT(val_fraction), D, 0, 0.9},
    {"--keep", KEEP, 0, D, 0, 0},
    {"--out", STRING, AT(out), T | D | P, 0, 0},
    {"--log", STRING, AT(log_path), T | D, 0, 0},
    {"--report", STRING, AT(report_dir), T | D | E, 0, 0},
    {"--checkpoint", STRING, AT(checkpoint), T | D, 0, 0},
    {"--resume", FLAG, AT(resume), T | D, 0, 0},
    {"--soft-targets-cache", STRING, AT(soft_cache), D, 0, 0},
    {"--cache-dir", STRING, AT(cache_dir), D, 0, 0},
    {"--compare", FLAG, AT(compare), D, 0, 0},
    {"--no-compare", FLAG, 0, D, 0, 0},
    {"--json", FLAG, AT(json), E | I, 0, 0},
    {"--quiet", FLAG, AT(quiet), T | D | E, 0, 0},
    {"-q", FLAG, AT(quiet), T | D | E, 0, 0},
    {"--stop-after-epoch", INT, AT(stop_after), T | D, 1, MAX_EPOCHS}, /* hidden, for tests */
    /* ---- the tool behaves (issue 13, section 5) */
    {"--force", FLAG, AT(force), T | D, 0, 0},
    {"--drop-last", FLAG, AT(drop_last), T | D, 0, 0},
    {"--threads", INT, AT(threads), T | D | E | P, 0, 1024},
    {"--config", STRING, AT(config), T | D | E | P, 0, 0},
    {"--augment", AUGMENT, 0, T | D, 0, 0},
    /* ---- wins (issue 12): the layers a feature method connects */
    {"--student-layer", INT, AT(student_layer), D, 0, 100000},
    {"--teacher-layer", INT, AT(teacher_layer), D, 0, 100000},
    {"--feature-weight", FLOAT, AT(feature_weight), D, 0, 1e9},
    {"--auto", FLAG, AT(auto_tune), D, 0, 0},
    {"--auto-trials", INT, AT(auto_trials), D, 2, 64},
    {"--auto-budget", INT, AT(auto_budget), D, 1, 100000},
    /* ---- qat (issue 14) */
    {"--quantize", STRING, AT(quantize), D, 0, 0},
    {"--init", STRING, AT(init), D, 0, 0},
    {"--seconds", FLOAT, AT(seconds), E, 0.01, 600},
};

#define NOPTIONS (sizeof table / sizeof table[0])
_Static_assert(NOPTIONS <= sizeof((options *)0)->given, "options.given has a slot an option");

static void defaults(options *o, command cmd, const char *name)
{
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->cmd_name = name;
    o->data_dir = DEFAULT_DATA_DIR;
    o->x_name = "x";
    o->y_name = "y";
    o->channels = 3; /* ImageFolder's default: RGB */
    /* The protocol of issue 2: SGD momentum 0.9, lr 0.05 with cosine decay, batch 128. */
    o->epochs = cmd == CMD_TRAIN ? DEFAULT_TRAIN_EPOCHS : -1; /* distill: resolved after parsing */
    o->teacher_epochs = DEFAULT_TEACHER_EPOCHS;
    o->batch = cmd == CMD_EVAL ? 256 : 128;
    o->threads = -1;         /* not given: default_threads' choice stands */
    o->lr = -1.0f;           /* resolved after parsing: 0.05 for SGD, 0.001 for Adam(W) */
    o->weight_decay = -1.0f; /* 0, or 0.01 for AdamW (PyTorch's defaults) */
    o->momentum = 0.9f;
    o->cosine = 1;
    o->temperature = -1.0f; /* resolved after parsing: 2 with logit standardisation, else 4 */
    o->alpha = -1.0f;       /* resolved after parsing: 0.9 for kd, 1 for mse and dkd */
    o->beta = -1.0f;        /* DKD's NCKD weight 8 (Zhao et al. 2022); DIST's inter weight 2 */
    o->gamma = 2.0f;        /* DIST's intra weight (Huang et al. 2022, CIFAR-100) */
    o->seed = 1;
    o->seconds = 1.0f; /* eval: each timing */
    o->seeds = 1;
    o->warmup_epochs = cmd == CMD_DISTILL ? -1 : 0;      /* resolved after parsing */
    o->val_fraction = cmd == CMD_DISTILL ? -1.0f : 0.0f; /* resolved after parsing */
    o->compare = -1;   /* automatic: compare when the tool trains the teacher itself */
    o->drop_last = -1; /* automatic: drop a lone last example when the model has batch norm */
    /* ---- wins (issue 12) */
    o->feature = -1;
    o->student_layer = o->teacher_layer = -1;
    o->feature_weight = -1.0f;
    o->auto_trials = 8;
    o->auto_budget = -1; /* 8 x --epochs */
}

/* Where the values being parsed come from, for messages: "" (the command line) or " (in FILE)". */
static char where[4200] = "";

static const option_def *find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0)
            return &table[i];
    return NULL;
}

static int bad_value(const options *o, const char *opt, const char *value, const char *want)
{
    fail_msg("%s '%s' is not %s%s (see 'kd help %s')", opt, value, want, where, o->cmd_name);
    return EXIT_USAGE;
}

static int parse_number(const options *o, const option_def *d, const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(x))
        return bad_value(o, d->name, v, "a number");
    if (d->kind == INT && x != floor(x)) return bad_value(o, d->name, v, "a whole number");
    int open_lo = d->kind == FLOAT && d->lo == 0 &&
                  (strcmp(d->name, "--lr") == 0 || strcmp(d->name, "--temperature") == 0 ||
                   strcmp(d->name, "--teacher-weight") == 0);
    int open_hi = strcmp(d->name, "--momentum") == 0;
    if (x < d->lo || x > d->hi || (open_lo && x <= d->lo) || (open_hi && x >= d->hi)) {
        char want[96];
        snprintf(want, sizeof want, "in %s%g, %g%s", open_lo ? "(" : "[", d->lo, d->hi,
                 open_hi ? ")" : "]");
        return bad_value(o, d->name, v, want);
    }
    *out = x;
    return EXIT_OK;
}

/* --augment LIST: comma-separated translate=N, crop=N (pixels, 1..64) and hflip, the library's
 * kd_augment_images kinds (shift and flip are other names of translate and hflip). */
static int set_augment(options *o, const option_def *d, const char *v)
{
    static const struct {
        const char *name;
        int kind, amount;
    } kinds[] = {{"translate", KD_AUGMENT_TRANSLATE, 1},
                 {"shift", KD_AUGMENT_TRANSLATE, 1},
                 {"crop", KD_AUGMENT_CROP, 1},
                 {"hflip", KD_AUGMENT_HFLIP, 0},
                 {"flip", KD_AUGMENT_HFLIP, 0}};
    static const char want[] = "a list of translate=N, crop=N and hflip (e.g. crop=4,hflip)";
    o->naugment = 0;
    for (const char *p = v; *p != '\0';) {
        size_t len = strcspn(p, ",");
        size_t name_len = strcspn(p, ",=");
        size_t i = 0;
        while (i < sizeof kinds / sizeof kinds[0] &&
               (strlen(kinds[i].name) != name_len || strncmp(kinds[i].name, p, name_len) != 0))
            i++;
        if (i == sizeof kinds / sizeof kinds[0] || o->naugment == 4)
            return bad_value(o, d->name, v, want);
        long amount = 0;
        if (kinds[i].amount) {
            char *end;
            if (p[name_len] != '=') return bad_value(o, d->name, v, want);
            amount = strtol(p + name_len + 1, &end, 10);
            if (end != p + len || amount < 1 || amount > 64)
                return bad_value(o, d->name, v, "N in 1..64 pixels for translate=N and crop=N");
        } else if (name_len != len) {
            return bad_value(o, d->name, v, want);
        }
        o->augment_kind[o->naugment] = kinds[i].kind;
        o->augment_amount[o->naugment++] = (int)amount;
        p += len;
        if (*p == ',') p++;
    }
    return o->naugment > 0 ? EXIT_OK : bad_value(o, d->name, v, want);
}

static int set_choice(options *o, const option_def *d, const char *v)
{
    if (d->kind == SCHEDULE) {
        if (strcmp(v, "cosine") == 0 || strcmp(v, "constant") == 0) {
            o->cosine = strcmp(v, "cosine") == 0;
            return EXIT_OK;
        }
        return bad_value(o, d->name, v, "cosine or constant");
    }
    if (d->kind == OPTIMIZER) {
        static const char *const names[] = {"sgd", "adam", "adamw"};
        for (int i = 0; i < 3; i++) {
            if (strcmp(v, names[i]) == 0) {
                o->optimizer = i; /* KD_OPTIMIZER_SGD, _ADAM, _ADAMW */
                return EXIT_OK;
            }
        }
        return bad_value(o, d->name, v, "sgd, adam or adamw");
    }
    if (d->kind == OUTPUT) {
        static const char *const names[] = {"logits", "probs", "classes"};
        for (int i = 0; i < 3; i++) {
            if (strcmp(v, names[i]) == 0) {
                o->output_kind = i;
                return EXIT_OK;
            }
        }
        return bad_value(o, d->name, v, "logits, probs or classes");
    }
    if (d->kind == AUGMENT) return set_augment(o, d, v);
    if (d->kind == KEEP) {
        if (strcmp(v, "best") == 0 || strcmp(v, "last") == 0) {
            o->keep_best = strcmp(v, "best") == 0;
            return EXIT_OK;
        }
        return bad_value(o, d->name, v, "best or last");
    }
    static const struct {
        const char *name;
        int kind, standardize;
    } methods[] = {{"kd", KD_LOSS_HINTON, 0},     {"hinton", KD_LOSS_HINTON, 0},
                   {"mse", KD_LOSS_LOGIT_MSE, 0}, {"dkd", KD_LOSS_DKD, 0},
                   {"dist", KD_LOSS_DIST, 0},     {"kd-ls", KD_LOSS_HINTON, 1},
                   {"dkd-ls", KD_LOSS_DKD, 1}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(v, methods[i].name) == 0) {
            o->method = methods[i].kind;
            o->standardize = methods[i].standardize;
            o->feature = -1;
            o->method_given = 1;
            return EXIT_OK;
        }
    }
    /* ---- wins (issue 12): a feature method, on top of cross-entropy (and, with --alpha, KD) */
    if ((o->feature = feature_method(v)) >= 0) {
        o->method_given = 1;
        o->method = KD_LOSS_HINTON;
        o->standardize = 0;
        return EXIT_OK;
    }
    return bad_value(o, d->name, v,
                     "kd, mse, dkd, dist, kd-ls, dkd-ls, hint, attention, rkd, sp, pkt, cosine or "
                     "crd");
}

static int set_value(options *o, const option_def *d, const char *v)
{
    char *base = (char *)o;
    double x;
    switch (d->kind) {
    case STRING:
        if (*v == '\0') return bad_value(o, d->name, v, "a non-empty value");
        *(const char **)(base + d->offset) = v;
        return EXIT_OK;
    case INT:
    case FLOAT:
        if (parse_number(o, d, v, &x) != EXIT_OK) return EXIT_USAGE;
        if (d->kind == INT)
            *(int *)(base + d->offset) = (int)x;
        else
            *(float *)(base + d->offset) = (float)x;
        return EXIT_OK;
    case SEED: {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (*v == '\0' || *v == '-' || *end != '\0' || errno != 0)
            return bad_value(o, d->name, v, "a whole number >= 0");
        o->seed = (uint64_t)s;
        return EXIT_OK;
    }
    case TEACHER:
        if (o->nteachers == MAX_TEACHERS) {
            fail_msg("at most %d teachers", MAX_TEACHERS);
            return EXIT_USAGE;
        }
        o->teachers[o->nteachers] = v;
        o->teacher_weights[o->nteachers++] = 1.0f;
        return EXIT_OK;
    case TEACHER_WEIGHT: {
        option_def w = {d->name, FLOAT, 0, 0, 0, 1e6};
        if (o->nteachers == 0) {
            fail_msg("--teacher-weight follows the --teacher it weighs%s",
                     o->teacher_logits != NULL ? " (a --teacher-logits file's teachers are "
                                                 "weighed alike)"
                                               : "");
            return EXIT_USAGE;
        }
        if (parse_number(o, &w, v, &x) != EXIT_OK) return EXIT_USAGE;
        /* a second weight for one teacher would replace the first without a word */
        if (o->weighted == o->nteachers) {
            fail_msg("--teacher-weight is given twice for the --teacher %s; give it once",
                     o->teachers[o->nteachers - 1]);
            return EXIT_USAGE;
        }
        o->weighted = o->nteachers;
        o->teacher_weights[o->nteachers - 1] = (float)x;
        return EXIT_OK;
    }
    default: return set_choice(o, d, v);
    }
}

static int take(options *o, const option_def *d, const char *inline_value, int argc, char **argv,
                int *i)
{
    o->given[d - table] = 1;
    if (d->kind == FLAG) {
        if (inline_value != NULL) {
            fail_msg("%s takes no value", d->name);
            return EXIT_USAGE;
        }
        if (strcmp(d->name, "--no-compare") == 0)
            o->compare = 0;
        else
            *(int *)((char *)o + d->offset) = 1;
        return EXIT_OK;
    }
    const char *v = inline_value;
    if (v == NULL) {
        if (*i + 1 >= argc) {
            fail_msg("%s needs a value (see 'kd help %s')", d->name, o->cmd_name);
            return EXIT_USAGE;
        }
        v = argv[++*i];
    }
    return set_value(o, d, v);
}

static int one_argument(options *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        print_command_help(stdout, o->cmd_name);
        return -1;
    }
    if (a[0] != '-' || a[1] == '\0') {
        if ((o->cmd == CMD_EVAL || o->cmd == CMD_INFO || o->cmd == CMD_PREDICT) &&
            o->positional == NULL) {
            o->positional = a;
            return EXIT_OK;
        }
        if (o->cmd == CMD_EVAL && o->nmore < MAX_EVAL_MODELS - 1) { /* side by side */
            o->more[o->nmore++] = a;
            return EXIT_OK;
        }
        fail_msg("unexpected argument '%s' (see 'kd help %s')", a, o->cmd_name);
        return EXIT_USAGE;
    }
    const char *eq = strchr(a, '=');
    size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
    const option_def *d = find(a, len);
    if (d == NULL || !(d->commands & (1u << o->cmd))) {
        fail_msg("unknown option '%.*s' (see 'kd help %s')", (int)len, a, o->cmd_name);
        return EXIT_USAGE;
    }
    return take(o, d, eq != NULL ? eq + 1 : NULL, argc, argv, i);
}

int option_given(const options *o, const char *name)
{
    const option_def *d = find(name, strlen(name));
    return d != NULL && o->given[d - table] != 0;
}

/* ---------------------------------------------------------------- --config FILE */

/* The file's values live as long as the process, as argv's do. */
static char *kept[256];
static int nkept;

static void free_kept(void)
{
    while (nkept > 0) free(kept[--nkept]);
}

static const char *keep_value(const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2; /* "a | b" as a | b */
    if (nkept == (int)(sizeof kept / sizeof kept[0])) return NULL;
    char *copy = malloc(n + 1);
    if (copy == NULL) return NULL;
    memcpy(copy, v, n);
    copy[n] = '\0';
    static int registered;
    if (!registered) registered = atexit(free_kept) == 0;
    kept[nkept++] = copy;
    return copy;
}

typedef struct ini_state {
    options *o;
    const char *path;
    int rc;
} ini_state;

static int is_command(const char *name)
{
    static const char *const names[] = {"train", "distill", "eval", "predict", "info"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

/* One key = value of the file: the long option's name without its dashes. Keys outside a section
 * are for every command that takes them (others ignore them, so one file serves train and
 * distill); keys in [train], [distill], ... are for that command alone. */
static int ini_key(void *user, const char *section, const char *name, const char *value)
{
    ini_state *st = user;
    options *o = st->o;
    if (st->rc != EXIT_OK) return 1;
    if (*section != '\0' && !is_command(section)) {
        fail_msg("--config %s: unknown section [%s]; the sections are [train], [distill], "
                 "[eval], [predict]",
                 st->path, section);
        st->rc = EXIT_USAGE;
        return 1;
    }
    if (*section != '\0' && strcmp(section, o->cmd_name) != 0) return 1;
    char opt[128];
    snprintf(opt, sizeof opt, "--%s", name);
    const option_def *d = find(opt, strlen(opt));
    if (d == NULL || strcmp(opt, "--config") == 0 || strcmp(opt, "--stop-after-epoch") == 0) {
        fail_msg("--config %s: unknown key '%s' (the keys are the long options without their "
                 "dashes: epochs = 5)",
                 st->path, name);
        st->rc = EXIT_USAGE;
        return 1;
    }
    if (!(d->commands & (1u << o->cmd))) {
        if (*section == '\0') return 1;
        fail_msg("--config %s: kd %s takes no option %s", st->path, o->cmd_name, opt);
        st->rc = EXIT_USAGE;
        return 1;
    }
    if (d->kind == FLAG) {
        int on = strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
                 strcmp(value, "1") == 0 || strcmp(value, "on") == 0;
        int off = strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                  strcmp(value, "0") == 0 || strcmp(value, "off") == 0;
        if (!on && !off) {
            st->rc = bad_value(o, d->name, value, "true or false");
            return 1;
        }
        int i = 0;
        if (on) st->rc = take(o, d, NULL, 0, NULL, &i);
    } else {
        const char *v = keep_value(value);
        if (v == NULL) {
            fail_msg("--config %s: out of memory", st->path);
            st->rc = EXIT_RUNTIME;
            return 1;
        }
        int i = 0;
        st->rc = take(o, d, v, 0, NULL, &i);
    }
    if (st->rc == EXIT_OK) o->given[d - table] = 2; /* from the file */
    return 1;
}

/* --config's value on the command line, or NULL. */
static const char *config_arg(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
    }
    return NULL;
}

static int has_teacher_arg(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "--teacher") == 0 || strncmp(argv[i], "--teacher=", 10) == 0) return 1;
    return 0;
}

static int read_config(options *o, const char *path, int argc, char **argv, int first)
{
    ini_state st = {o, path, EXIT_OK};
    snprintf(where, sizeof where, " (in %s)", path);
    FILE *f = fopen(path, "r");
    struct stat sb;
    if (f == NULL || fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) { /* not a pipe */
        fail_msg("cannot read --config %s: %s", path,
                 f != NULL ? "not a regular file" : strerror(errno));
        if (f != NULL) fclose(f);
        where[0] = '\0';
        return EXIT_RUNTIME;
    }
    int line = ini_parse_file(f, ini_key, &st);
    fclose(f);
    where[0] = '\0';
    if (st.rc != EXIT_OK) return st.rc;
    if (line != 0) {
        fail_msg("--config %s: line %d is not INI (key = value, [section] or a ; comment)", path,
                 line);
        return EXIT_USAGE;
    }
    if (has_teacher_arg(argc, argv, first)) { /* the command line's replace them */
        o->nteachers = 0;
        o->weighted = 0;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- options that do not apply */

static int refuse(const options *o, const char *opt, const char *why)
{
    const option_def *d = find(opt, strlen(opt));
    fail_msg("%s does not apply %s; leave it out%s%s", opt, why,
             o->given[d - table] == 2 ? " of " : "", o->given[d - table] == 2 ? o->config : "");
    return EXIT_USAGE;
}

/* The data options that only some formats read: a .csv's label column, a .npz's arrays, a .npy's
 * labels; given to other data they would be ignored. */
int check_data_options(const options *o)
{
    const char *data[] = {o->train_prefix, o->test_prefix, o->input};
    int csv = 0, npz = 0;
    for (size_t k = 0; k < sizeof data / sizeof data[0]; k++) {
        csv |= data[k] != NULL && ends_with(data[k], ".csv");
        npz |= data[k] != NULL && ends_with(data[k], ".npz");
    }
    if (!csv && option_given(o, "--label-column"))
        return refuse(o, "--label-column", "to data without a .csv file (it names a CSV column)");
    if (!npz && option_given(o, "--x-name"))
        return refuse(o, "--x-name", "to data without a .npz file (it names an array in one)");
    if (!npz && option_given(o, "--y-name"))
        return refuse(o, "--y-name", "to data without a .npz file (it names an array in one)");
    if (option_given(o, "--train-y") &&
        (o->train_prefix == NULL || !ends_with(o->train_prefix, ".npy")))
        return refuse(o, "--train-y",
                      "unless --train is a .npy file (it names that file's labels)");
    if (option_given(o, "--test-y") &&
        (o->test_prefix == NULL || !ends_with(o->test_prefix, ".npy")))
        return refuse(o, "--test-y", "unless --test is a .npy file (it names that file's labels)");
    return EXIT_OK;
}

int data_format_option(options *o, const char *a, const char *v)
{
    static const char *const names[] = {"--label-column", "--train-y", "--test-y", "--x-name",
                                        "--y-name"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (strcmp(a, names[k]) != 0) continue;
        const option_def *d = find(a, strlen(a));
        *(const char **)((char *)o + d->offset) = v;
        o->given[d - table] = 1;
        return 1;
    }
    return 0;
}

/* Each option given must change something: one that the chosen method, optimizer or schedule
 * ignores is refused by name, rather than silently unused. */
static int check_applies(const options *o)
{
    static const struct {
        int kind, standardize;
        const char *name, *unused; /* the loss's parameters it does not read */
    } methods[] = {{KD_LOSS_HINTON, 0, "kd", "--beta --gamma"},
                   {KD_LOSS_HINTON, 1, "kd-ls", "--beta --gamma"},
                   {KD_LOSS_LOGIT_MSE, 0, "mse", "--temperature --beta --gamma"},
                   {KD_LOSS_DKD, 0, "dkd", "--gamma"},
                   {KD_LOSS_DKD, 1, "dkd-ls", "--gamma"},
                   {KD_LOSS_DIST, 0, "dist", "--alpha"}};
    static const char *const params[] = {"--temperature", "--alpha", "--beta", "--gamma"};
    char why[200];
    /* a feature method: cross-entropy plus its term, and Hinton's KD only with --alpha > 0 */
    if (o->cmd == CMD_DISTILL && o->feature >= 0) {
        const char *name = feature_method_name(o->feature);
        for (size_t k = 2; k < sizeof params / sizeof params[0]; k++)
            if (option_given(o, params[k])) {
                snprintf(why, sizeof why,
                         "to --method %s (its soft term, with --alpha > 0, is Hinton's KD: no %s)",
                         name, params[k] + 2);
                return refuse(o, params[k], why);
            }
        if (option_given(o, "--temperature") && !(option_given(o, "--alpha") && o->alpha > 0.0f)) {
            snprintf(why, sizeof why,
                     "to --method %s without --alpha > 0 (it has no soft term to soften then)",
                     name);
            return refuse(o, "--temperature", why);
        }
    }
    for (size_t m = 0;
         o->cmd == CMD_DISTILL && o->feature < 0 && m < sizeof methods / sizeof methods[0]; m++) {
        if (methods[m].kind != o->method || methods[m].standardize != o->standardize) continue;
        for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
            if (!option_given(o, params[k]) || strstr(methods[m].unused, params[k]) == NULL)
                continue;
            snprintf(why, sizeof why, "to --method %s, which has no %s", methods[m].name,
                     params[k] + 2);
            return refuse(o, params[k], why);
        }
    }
    if (o->optimizer != KD_OPTIMIZER_SGD && option_given(o, "--momentum"))
        return refuse(o, "--momentum",
                      o->optimizer == KD_OPTIMIZER_ADAM
                          ? "to --optimizer adam (momentum is SGD's; Adam has its own averages)"
                          : "to --optimizer adamw (momentum is SGD's; AdamW has its own averages)");
    if (!o->cosine && option_given(o, "--min-lr"))
        return refuse(o, "--min-lr", "to --schedule constant (it is where the cosine decay ends)");
    int given_teacher = o->nteachers > 0 || o->teacher_logits != NULL;
    if (given_teacher && option_given(o, "--teacher-epochs"))
        return refuse(o, "--teacher-epochs",
                      "when the teacher is given (--teacher, --teacher-logits): kd trains none");
    if (o->teacher_logits != NULL && option_given(o, "--teacher-spec"))
        return refuse(o, "--teacher-spec", "to --teacher-logits (there is no teacher model)");
    if (o->teacher_logits != NULL && o->naugment > 0)
        return refuse(o, "--augment",
                      "to --teacher-logits (they are the teacher's outputs on the examples as "
                      "they are, not as augmented)");
    if (o->naugment > 0 && o->soft_cache != NULL)
        return refuse(o, "--soft-targets-cache",
                      "with --augment (the teachers run on every augmented batch: no logits are "
                      "cached)");
    /* ---- qat (issue 14): what quantisation-aware distillation cannot honour */
    if (o->init != NULL && o->quantize == NULL)
        return refuse(o, "--init",
                      "without --quantize int8 (it is the float student to fine-tune)");
    if (o->quantize != NULL) {
        static const char *const off[][2] = {
            {"--compare", "to --quantize int8 (the student alone would be a float model)"},
            {"--keep", "to --quantize int8 (the ranges fake quantisation tracked go on with "
                       "training: the last epoch is the int8 model's)"},
            {"--checkpoint", "to --quantize int8 (checkpoints do not hold the tracked ranges)"},
            {"--resume", "to --quantize int8 (checkpoints do not hold the tracked ranges)"},
            {"--auto", "to --quantize int8 (the search trains float students)"},
            {"--student", "with --init (the file names the student)"},
            {"--normalize", "with --init (the file's normalisation is kept)"}};
        for (size_t k = 0; k < sizeof off / sizeof off[0]; k++) {
            if (k >= 5 && o->init == NULL) break;
            if (option_given(o, off[k][0]) && (k != 1 || o->keep_best))
                return refuse(o, off[k][0], off[k][1]);
        }
    }
    int rc = check_data_options(o);
    if (rc != EXIT_OK) return rc;
    if (o->force && o->resume) return refuse(o, "--force", "with --resume (which continues)");
    if (o->force && o->checkpoint == NULL)
        return refuse(o, "--force", "without --checkpoint (it allows overwriting one)");
    return EXIT_OK;
}

int parse_options(options *o, int argc, char **argv, int first)
{
    static const char *names[] = {"", "train", "distill", "eval", "info", "predict"};
    command cmd = o->cmd;
    defaults(o, cmd, names[cmd]);
    free_kept(); /* a previous parse's file values (the fuzz target parses many times) */
    const char *config = config_arg(argc, argv, first);
    if (config != NULL) {
        o->config = config;
        int rc = read_config(o, config, argc, argv, first);
        if (rc != EXIT_OK) return rc;
    }
    for (int i = first; i < argc; i++) {
        int rc = one_argument(o, argc, argv, &i);
        if (rc != EXIT_OK) return rc;
    }
    if ((cmd == CMD_EVAL || cmd == CMD_INFO || cmd == CMD_PREDICT) && o->positional == NULL) {
        fail_msg("which model? usage: kd %s MODEL.safetensors", o->cmd_name);
        return EXIT_USAGE;
    }
    /* ---- wins (issue 12): a feature method alone is cross-entropy plus its term */
    if (o->alpha < 0 && o->feature >= 0) o->alpha = 0.0f;
    if (o->feature >= 0 && o->teacher_logits != NULL) {
        fail_msg("--method %s reads the teacher's hidden layers: it needs --teacher, not "
                 "--teacher-logits",
                 feature_method_name(o->feature));
        return EXIT_USAGE;
    }
    if (o->feature < 0 &&
        (o->student_layer >= 0 || o->teacher_layer >= 0 || o->feature_weight >= 0)) {
        fail_msg("--student-layer, --teacher-layer and --feature-weight go with a feature "
                 "--method (hint, attention, rkd, sp, pkt, cosine, crd)");
        return EXIT_USAGE;
    }
    /* the main job: DIST for DEFAULT_MAIN_JOB_EPOCHS, unless a choice was made; with --auto the
     * same budget, and DIST is the default the search must beat (its trial 0) */
    int main_job = cmd == CMD_DISTILL && o->nteachers == 0 && o->teacher_logits == NULL &&
                   !o->method_given && !option_given(o, "--alpha");
    if (main_job) o->method = KD_LOSS_DIST;
    /* DIST's Pearson terms start with gradients of 1 / std of near-uniform probabilities, times
     * T^2 beta: unclipped, a 784-32-10 student on 1,800 images went to loss 410 and 53.4% (67.0%
     * alone); clipped at 5, 79.4%. On Fashion-MNIST's main job it also helps (88.2 -> 88.3-88.7%
     * over three seeds) and leaves the student alone as it was. */
    if (cmd == CMD_DISTILL && !option_given(o, "--clip-norm")) { /* --auto: by its trials' */
        o->clip_auto = 1;
        o->clip_norm = default_clip_norm(o->method); /* a feature method's is Hinton's */
    }
    if (o->epochs < 0) o->epochs = main_job ? DEFAULT_MAIN_JOB_EPOCHS : DEFAULT_STUDENT_EPOCHS;
    if (o->auto_budget < 0) o->auto_budget = 8 * o->epochs;
    if (o->auto_tune && (o->val_fraction == 0.0f || o->teacher_logits != NULL)) {
        fail_msg("--auto chooses on the validation split: it needs --val > 0 (and --teacher, not "
                 "--teacher-logits)");
        return EXIT_USAGE;
    }
    /* --auto chooses the method, T, alpha and lr itself: a choice given beside it would be
     * dropped silently, so it is refused; and its own options mean nothing without it. */
    static const char *const chosen[] = {"--method", "--temperature", "--alpha", "--beta",
                                         "--gamma"};
    for (size_t k = 0; o->auto_tune && k < sizeof chosen / sizeof chosen[0]; k++)
        if (option_given(o, chosen[k])) {
            fail_msg("%s does not apply to --auto, which chooses the method, T, alpha and the "
                     "learning rate itself; drop one of them",
                     chosen[k]);
            return EXIT_USAGE;
        }
    if (!o->auto_tune && (option_given(o, "--auto-trials") || option_given(o, "--auto-budget"))) {
        fail_msg("--auto-trials and --auto-budget go with --auto");
        return EXIT_USAGE;
    }
    if (o->auto_tune && (o->feature >= 0 || o->checkpoint != NULL)) {
        fail_msg("--auto searches the logit methods; it does not go with a feature --method or "
                 "--checkpoint");
        return EXIT_USAGE;
    }
    /* ---- end wins */
    if (o->quantize != NULL && strcmp(o->quantize, "int8") != 0) {
        fail_msg("--quantize %s: the format is int8 (per-channel int8 weights, uint8 activations)",
                 o->quantize);
        return EXIT_USAGE;
    }
    int rc = check_applies(o);
    if (rc != EXIT_OK) return rc;
    if (o->alpha < 0) o->alpha = o->method == KD_LOSS_HINTON ? 0.9f : 1.0f;
    if (o->beta < 0) o->beta = o->method == KD_LOSS_DIST ? 2.0f : 8.0f;
    if (o->warmup_epochs < 0) {
        o->warmup_auto = 1;
        o->warmup_epochs = o->epochs / 2 < DEFAULT_DISTILL_WARMUP_EPOCHS
                               ? o->epochs / 2
                               : DEFAULT_DISTILL_WARMUP_EPOCHS;
    }
    if (o->temperature < 0) o->temperature = o->standardize ? 2.0f : 4.0f;
    if (o->lr < 0) o->lr = o->optimizer == KD_OPTIMIZER_SGD ? 0.05f : 0.001f;
    if (o->weight_decay < 0) o->weight_decay = o->optimizer == KD_OPTIMIZER_ADAMW ? 0.01f : 0.0f;
    if (o->nesterov && o->optimizer != KD_OPTIMIZER_SGD) {
        fail_msg("--nesterov is for --optimizer sgd");
        return EXIT_USAGE;
    }
    if (o->teacher_logits != NULL && (o->nteachers > 0 || o->soft_cache != NULL)) {
        fail_msg("--teacher-logits replaces --teacher and --soft-targets-cache");
        return EXIT_USAGE;
    }
    if (o->teacher_logits != NULL && o->val_fraction > 0) {
        fail_msg("--teacher-logits are one a training example, in order: no --val split");
        return EXIT_USAGE;
    }
    /* distill holds out 10% for validation, except with logits of the whole training set */
    if (o->val_fraction < 0) o->val_fraction = o->teacher_logits != NULL ? 0.0f : 0.1f;
    if (o->keep_best && o->checkpoint != NULL) {
        fail_msg("--keep best and --checkpoint do not go together (the best epoch's model is "
                 "not in the checkpoint)");
        return EXIT_USAGE;
    }
    if (o->keep_best && o->val_fraction <= 0) {
        fail_msg(o->teacher_logits != NULL
                     ? "--keep best chooses on a validation split, which --teacher-logits (logits "
                       "of the whole training set) leaves out: drop --keep best"
                     : "--keep best chooses on the validation split: it needs --val > 0");
        return EXIT_USAGE;
    }
    if (o->seeds > 1 && o->checkpoint != NULL) {
        fail_msg("--seeds and --checkpoint do not go together (one checkpoint, several runs)");
        return EXIT_USAGE;
    }
    if (cmd == CMD_PREDICT && o->input == NULL) {
        fail_msg("--input FILE is required: the examples to predict (see 'kd help predict')");
        return EXIT_USAGE;
    }
    if (o->resume && o->checkpoint == NULL) {
        fail_msg("--resume needs --checkpoint FILE (the file the first run saved)");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}
