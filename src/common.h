/* Declarations shared by the files of the kd tool. The tool calls only the public API (kd.h); its
 * own names carry no kd_ prefix, which belongs to the library. */
#ifndef KD_TOOL_COMMON_H
#define KD_TOOL_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kd.h"

/* Exit codes, documented in kd --help and kd(1). */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_COLLAPSE = 3 };

#define MAX_TEACHERS 16
/* The batch of the tool's inference passes (test accuracy, teacher logits, kd eval's accuracy): a
 * model's buffers grow to the largest batch it has run and stay, so this is what evaluation adds
 * to a run's peak memory. 1000 made bench_conv's ResNet teacher hold 1.34 GB (128: 0.23 GB, at
 * the training batch's speed). */
#define EVAL_BATCH 128
#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
/* The default distillation (kd distill with no arguments); epochs chosen so that the whole run,
 * teacher training included, stays under 10 minutes on 2 cores (see docs/kd.1). */
#define DEFAULT_TEACHER_SPEC "784-1200-1200-10"
#define DEFAULT_STUDENT_SPEC "784-256-10"
#define DEFAULT_TEACHER_EPOCHS 10
#define DEFAULT_STUDENT_EPOCHS 15
/* The main job (kd distill without --teacher, --teacher-logits, --method, --epochs or --auto):
 * DIST for 5 epochs. Measured (issue 12; 784-1200-1200-10 teacher at 89.22%, 784-256-10 student,
 * seeds 1-3): at 5 epochs DIST 88.30 +- 0.15, KD (T 4, alpha 0.9) 87.52 +- 0.17, alone
 * 86.57 +- 0.02; at 15 epochs (seed 1) DIST 88.75, alone 89.00: the gain is a faster start. */
#define DEFAULT_MAIN_JOB_EPOCHS 5
/* --clip-norm of kd distill's students when none is given: 5 for a method's loss kind of
 * KD_LOSS_DIST (the main job's; its correlation terms start with very large gradients), else 0.
 * One rule for the given method and for each of --auto's trials. */
#define DEFAULT_DIST_CLIP_NORM 5.0f
static inline float default_clip_norm(int method)
{
    return method == KD_LOSS_DIST ? DEFAULT_DIST_CLIP_NORM : 0.0f;
}
#define DEFAULT_TRAIN_EPOCHS 10
/* The students' warm-up in kd distill: without one, a CNN student without batch norm distilled at
 * T = 4, alpha = 0.9, lr 0.05 collapsed in its first epoch on 2 seeds of 6, with one epoch on 1
 * of 6, with two on none of 10 (docs/kd.1). At most half of the run. */
#define DEFAULT_DISTILL_WARMUP_EPOCHS 2

/* ---------------------------------------------------------------- options (args.c) */

typedef enum command {
    CMD_NONE = 0,
    CMD_TRAIN,
    CMD_DISTILL,
    CMD_EVAL,
    CMD_INFO,
    CMD_PREDICT
} command;

typedef struct options {
    command cmd;
    const char *cmd_name;
    /* data */
    const char *data_dir, *train_prefix, *test_prefix;
    const char *train_y, *test_y; /* labels of a .npy --train / --test */
    const char *label_column;     /* the labels of a .csv */
    const char *x_name, *y_name;  /* the arrays of a .npz (default x, y) */
    int channels;                 /* an ImageFolder's channels: 1 or 3 */
    int normalize;                /* store the training set's per-channel mean/std */
    const char *input;            /* predict: the examples */
    int output_kind;              /* predict: 0 logits, 1 probs, 2 classes */
    const char *teacher_logits;   /* distill: logits computed elsewhere */
    /* models */
    const char *model_spec;   /* train: --model */
    const char *student_spec; /* distill: --student */
    const char *teacher_spec; /* distill without --teacher: the teacher it trains */
    const char *teachers[MAX_TEACHERS];
    float teacher_weights[MAX_TEACHERS];
    int nteachers;
    int weighted;           /* the teacher count when the last --teacher-weight was given */
    const char *positional; /* eval, info: the model file */
    /* training protocol */
    int epochs, teacher_epochs, batch, warmup_epochs;
    float lr, momentum, weight_decay, min_lr, clip_norm, temperature, alpha, beta, gamma;
    int clip_auto; /* distill without --clip-norm: 5 for the students of dist, else 0 */
    int nesterov, cosine, optimizer; /* optimizer: a kd_optimizer_kind */
    int method;                      /* a kd_loss_kind */
    int standardize;                 /* logit standardisation (kd-ls, dkd-ls) */
    uint64_t seed;
    /* outputs */
    const char *out, *log_path, *report_dir, *checkpoint, *soft_cache, *cache_dir;
    int quiet, resume, compare, json;
    int seeds;          /* distill: students trained with seeds seed .. seed + seeds - 1 */
    int warmup_auto;    /* distill: --warmup-epochs not given; the students' default applies */
    float val_fraction; /* distill: the share of the training set held out for validation */
    int keep_best;      /* distill: keep the best epoch on validation, not the last */
    int stop_after;     /* hidden: stop after this epoch, as if killed (tests of --resume) */
    /* ---- the tool behaves (issue 13, section 5) */
    int force;     /* --force: start again over an existing checkpoint */
    int drop_last; /* 1: --drop-last; -1: automatic (a lone last example with batch norm) */
    int threads;   /* --threads N (0: every core); -1: default_threads' choice */
    int naugment;  /* --augment: kinds (kd_augment_kind) and amounts in pixels */
    int augment_kind[4], augment_amount[4];
    const char *config;       /* --config FILE: read first, the command line overrides it */
    unsigned char given[128]; /* given[i]: option i of the table was set (command line or file) */
    /* ---- wins (issue 12): feature methods */
    int feature;          /* --method hint|attention|...: a kd_feature_loss_kind, or -1 */
    int student_layer;    /* --student-layer (-1: the penultimate) */
    int teacher_layer;    /* --teacher-layer (-1: the penultimate) */
    float feature_weight; /* --feature-weight (-1: the method's default) */
    int auto_tune;        /* --auto: successive halving before the final run (tune.c) */
    int auto_trials;      /* --auto-trials N (8) */
    int auto_budget;      /* --auto-budget E: student epochs the search may use (8 x --epochs) */
    int method_given;     /* --method was given */
    /* ---- qat (issue 14): quantisation-aware distillation */
    const char *quantize; /* --quantize int8: train with fake quantisation, write the int8 model */
    const char *init;     /* --init FILE: the float student to fine-tune (with --quantize) */
    /* ---- qat (issue 14): kd eval of several models side by side */
#define MAX_EVAL_MODELS 16
    const char *more[MAX_EVAL_MODELS - 1]; /* the models after positional */
    int nmore;
    float seconds; /* eval: seconds each timing runs (1) */
} options;

/* 1 when the option named (e.g. "--beta") was given on the command line or in --config's file. */
int option_given(const options *o, const char *name);
/* The data-format options of the commands that parse their own (prune, quantize), as the main
 * table defines them: --label-column, --train-y, --test-y, --x-name, --y-name. Sets o's field from
 * v, marks it given and returns 1 when a is one of them, else 0. */
int data_format_option(options *o, const char *a, const char *v);
/* Refuses (one line, EXIT_USAGE) a data-format option that none of o's data (--train, --test,
 * --input) can read: --label-column without a .csv, --x-name or --y-name without a .npz,
 * --train-y or --test-y beside a --train or --test that is not a .npy. */
int check_data_options(const options *o);
/* The single place that sets the number of threads the library's kernels use (--threads). */
int set_threads(int n);
/* --threads V for the commands with options of their own (quantize, prune): checked, then set. */
int threads_option(const char *v);
/* The default before any option: KD_THREADS (checked: -1 with a message when malformed), else
 * OMP_NUM_THREADS or OPENBLAS_NUM_THREADS, else every core (shared among the MPI ranks of this
 * host). */
int default_threads(void);

/* Parses argv[first..] for o->cmd into o (defaults first). On a usage error prints one line and
 * returns EXIT_USAGE; returns -1 when --help was asked (and printed); EXIT_OK otherwise. */
int parse_options(options *o, int argc, char **argv, int first);

/* ---------------------------------------------------------------- messages (kd.c, help.c) */

/* "kd: <message>" or "kd <command>: <message>" on stderr, one line. */
void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One line naming what failed with the library's sentence; returns EXIT_RUNTIME. */
int fail_kd(const char *what, kd_status st);
/* kd_model_load, or "cannot load PATH: <the library's sentence>" and EXIT_RUNTIME. */
int load_model(const char *path, kd_model **out);
void set_command_name(const char *name);
void print_usage(FILE *f);
/* 0 if the command is known (help printed), -1 otherwise. */
int print_command_help(FILE *f, const char *name);

/* ---------------------------------------------------------------- data (data.c) */

typedef struct dataset_pair {
    kd_dataset *train, *test;
    kd_dataset *val; /* held out of the training set (distill --val), or NULL */
    char train_prefix[1024], test_prefix[1024];
} dataset_pair;

/* Loads the training and/or test set named by o; prints one line and returns EXIT_RUNTIME when a
 * file is missing (naming the Debian package for the default directory). */
int load_data(const options *o, int want_train, int want_test, dataset_pair *d);
void free_data(dataset_pair *d);
/* One user's file or directory: an ImageFolder directory, .npz, .npy (labels from y_path), .csv,
 * or else an IDX prefix; labelled 0 reads examples only. Prints one line on failure. */
int load_user_data(const options *o, const char *path, const char *y_path, int labelled,
                   kd_dataset **out);
/* 1 when the data looks like Fashion-MNIST (for class names). */
int data_is_fashion(const options *o);
/* Identifies a data set's contents (sizes, pixels, labels), for cache keys. */
uint64_t dataset_hash(const kd_dataset *d);
/* "60000 training / 10000 test images, 1x28x28, from DIR" */
void describe_data(const options *o, const dataset_pair *d, char *out, size_t size);

/* ---------------------------------------------------------------- utilities (util.c) */

double now_seconds(void);
/* Expands "784-256-10" into "input 784 | dense 256 | relu | dense 10"; other specs are copied. */
void expand_spec(const char *in, char *out, size_t size);
/* Builds a model from a spec (expanded first); prints one line and returns EXIT_USAGE if bad. */
int create_model(const char *what, const char *spec, uint64_t seed, kd_model **out);
/* "784-1200-1200-10" from a model's layers. */
void model_shape_name(const kd_model *m, char *out, size_t size);
int64_t file_size(const char *path);
void format_bytes(double bytes, char *out, size_t size);
void format_count(int64_t n, char *out, size_t size);
/* 64-bit hash (FNV-1a on 8-byte words) for fingerprints; chain with the previous value, starting
 * from HASH_SEED (FNV's offset basis). */
#define HASH_SEED 0xcbf29ce484222325ULL
uint64_t hash_bytes(uint64_t h, const void *data, size_t n);
uint64_t hash_str(uint64_t h, const char *s);
/* 0 on success; -1 with errno set. */
int hash_file(const char *path, uint64_t *h);
/* Removes PATH.tmp.PID files (write_atomic's) whose process is gone: what a killed run left. */
void remove_stale_temps(const char *path);
/* 1 when s ends with suffix (a file's extension: ends_with(path, ".csv")). Inline: the option
 * parser uses it, and the fuzz target links args.c alone. */
static inline int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}
/* Writes data to path through a temporary file and a rename, so readers never see half a file.
 * -1 with errno set on failure, and for a path that is not a regular file (EEXIST: a pipe or a
 * device there is left as it is). */
int write_atomic(const char *path, const void *data, size_t n);
/* "SGD momentum 0.9, lr 0.05 with cosine decay, batch 128, seed 1" */
void describe_protocol(const options *o, char *out, size_t size);
/* "Hinton's KD, T = 4, alpha = 0.9" and the like. */
void describe_method(const options *o, char *out, size_t size);
/* s as a JSON string, quotes included. */
void json_string(FILE *f, const char *s);
/* path is not a directory and its directory exists and is writable; else one line and
 * EXIT_RUNTIME. An existing path that is not a regular file (a pipe, a device), which the save's
 * rename would replace: one line and EXIT_USAGE. */
int check_output(const char *path);
/* The same for a file written in place, not renamed over (--log): an existing file it may write
 * (/dev/stdout, a pipe) will do, whatever its directory. */
int check_output_in_place(const char *path);
/* A --log line just written: flushed, and the first failure's errno kept in *err (ferror keeps
 * none), to be said at the end by log_close: a run goes on when its log fails. */
void log_flush(FILE *log, int *err);
/* A command that takes no language model: m (NULL: none given) reading token ids is one line,
 * "PATH is a language model (token ids in): WHY", and EXIT_USAGE; else EXIT_OK. */
int check_not_language_model(const char *path, const kd_model *m, const char *why);
/* Closes a --log file; when a write (err) or the close failed, one line and EXIT_RUNTIME, so a log
 * cut short by a full disk is never taken for a whole one; else EXIT_OK. */
int log_close(FILE *log, const char *path, int err);
/* A directory that may not exist yet (--report DIR): it, or its nearest existing ancestor, is a
 * writable directory; else one line and EXIT_RUNTIME. */
int check_output_dir(const char *what, const char *path);
/* Every output o names (model, --report, --log, --checkpoint and its companions) and alone (kd
 * distill's student-alone model, or NULL), checked before any data is read or any training starts:
 * EXIT_RUNTIME for an unwritable place, EXIT_USAGE for an existing checkpoint without --resume or
 * --force, or for two outputs that are one file. */
int check_outputs(const options *o, const char *model, const char *alone);
/* kd distill's plan, decided once for its run and for the checks of its outputs: it trains its own
 * teacher when given none (no --teacher, no --teacher-logits), and compares with the student
 * trained alone as --compare says, by default when it trains its teacher, never with --quantize. */
static inline int distill_own_teacher(const options *o)
{
    return o->cmd == CMD_DISTILL && o->nteachers == 0 && o->teacher_logits == NULL;
}
static inline int distill_compares(const options *o)
{
    return o->cmd == CMD_DISTILL && o->quantize == NULL &&
           (o->compare >= 0 ? o->compare : distill_own_teacher(o));
}
/* out (given as flag) is none of the files a command reads: each of inputs[0..n) (NULL skipped),
 * itself and as an IDX prefix (its images and labels files); else one line and EXIT_USAGE. For
 * the commands with their own options (predict, quantize, export, prune). */
int check_not_input(const char *flag, const char *out, const char *const *inputs, int n);
/* Each of the nout outputs out[k] (flag names[k]; NULL skipped) is none of the n inputs
 * (check_not_input) and none of the other outputs; else one line and EXIT_USAGE. */
int check_apart(const char *const *out, const char *const *names, int nout, const char *const *in,
                int nin);
/* mkdir -p; 0 on success. */
int make_dirs(const char *path);
/* The tool's cache directory: --cache-dir, $XDG_CACHE_HOME/kd or $HOME/.cache/kd. */
void cache_dir(const options *o, char *out, size_t size);
/* The seed of epoch e's batch order: a function of (seed, e) only, so the order of an epoch does
 * not depend on the epochs before it and a resumed run sees the same batches. */
uint64_t epoch_seed(uint64_t seed, int epoch);

/* ---------------------------------------------------------------- training runs (run.c) */

typedef struct epoch_rec {
    int epoch;
    double loss;      /* the objective, mean over the epoch's batches */
    double ce;        /* cross-entropy with the labels, from the same logits */
    double train_acc; /* top-1 on the training batches, as they were seen */
    double test_acc;  /* top-1 on the test set after the epoch (eval mode) */
    double lr;        /* the rate of the epoch's first step */
    double seconds;   /* wall time since the start of the run */
} epoch_rec;

#define MAX_EPOCHS 1000

typedef struct history {
    epoch_rec rec[MAX_EPOCHS];
    int n;
} history;

struct progress;

/* ---- wins (issue 12): a feature term of kd distill --method (features.c) */
typedef struct feature_term {
    int kind; /* a kd_feature_loss_kind, or -1 for none */
    int32_t student, teacher;
    float weight;
    char regressor[64]; /* "" for none */
    char shapes[256];   /* what connects to what, for the log */
} feature_term;

/* The kd_feature_loss_kind of a --method name, or -1. */
int feature_method(const char *name);
const char *feature_method_name(int kind);
const char *feature_title(int kind);
float feature_default_weight(int kind);
/* Resolves o's feature method against the two models: layers, shapes (checked; a usage error
 * names both shapes), regressor and weight. out->kind is -1 when o names no feature method. */
int feature_plan(const options *o, kd_model *student, kd_model *teacher, feature_term *out);

typedef struct run_config run_config;
typedef struct run_result run_result;
struct progress;
/* ---- wins (issue 12): --auto. Searches the logit method, T, alpha and lr from base (the
 * distilled run's config) on val; prints the trials and the winner; *winner = o with the winner's
 * settings. */
int tune(const options *o, const run_config *base, const kd_dataset *train, const kd_dataset *val,
         const kd_dataset *test, struct progress *p, options *winner);

struct run_config {
    const char *name; /* "teacher", "student alone", "distilled", "model" */
    const char *key;  /* the run's name in logs: teacher, alone, distilled, model */
    const char *spec;
    uint64_t seed;
    int epochs, batch, warmup_epochs;
    int warmup_auto; /* warmup_epochs is the default, which follows --epochs */
    float lr, momentum, weight_decay, min_lr, clip_norm, temperature, alpha, beta, gamma;
    int nesterov, cosine, optimizer, method; /* method: a kd_loss_kind */
    int standardize;                         /* KD_LOSS_LOGIT_STANDARDIZE */
    kd_model *const *teachers;               /* borrowed; NULL/0 for a run without teachers */
    const float *teacher_weights;
    int nteachers;
    const float *teacher_logits; /* [nteachers][n][classes] for the training set, or NULL */
    uint64_t teacher_hash;       /* identifies the teachers, for the checkpoint's fingerprint */
    const char *checkpoint;      /* NULL: none */
    int resume, stop_after;
    int keep_best; /* keep the epoch with the best per-epoch (validation) accuracy */
    int normalize; /* the model normalises its inputs with the training set's statistics */
    /* ---- the tool behaves (issue 13, section 5) */
    int drop_last; /* 1: drop a short last batch; -1: drop a lone example when the model has bn */
    int naugment;  /* --augment, applied to each training batch (images only) */
    const int *augment_kind, *augment_amount;
    const feature_term *feature; /* wins: a feature term (teacher 0), or NULL */
    /* ---- qat (issue 14) */
    const char *init; /* start from this model file (its spec is spec), or NULL */
    int fake_quant;   /* train with kd_model_set_fake_quant */
};

struct run_result {
    kd_model *model; /* owned by the caller after run_training */
    history hist;
    double seconds;
    int stopped;     /* --stop-after-epoch ended the run early */
    int dropped;     /* examples left out of each epoch (drop_last) */
    int kept_epoch;  /* the epoch model is from */
    double test_acc; /* model's accuracy on the test set */
};

/* Trains one model as cfg says; returns an exit code (messages printed). */
/* Per-epoch accuracy is measured on eval (the validation split, or the test set); the kept model's
 * test accuracy on test goes to out->test_acc. */
int run_training(const run_config *cfg, const kd_dataset *train, const kd_dataset *eval,
                 const kd_dataset *test, struct progress *p, run_result *out);
/* The options of section 5 of issue 13 that every run shares (--drop-last, --augment). */
void run_options(const options *o, run_config *c);
/* The classes of labelled data: the number of names (CSV, ImageFolder), else the largest label of
 * either set (test may be NULL) + 1. */
int64_t data_classes(const kd_dataset *train, const kd_dataset *test);
/* m takes the data's examples and has one output a class; else one line and EXIT_USAGE. */
int check_fits(const char *what, kd_model *m, const kd_dataset *train, const kd_dataset *test);
/* The same for a test set alone, whose numbered labels may cover only some of the model's classes
 * (labels 0 to 4 for a 10-class model); named classes must still match. */
int check_fits_eval(const char *what, kd_model *m, const kd_dataset *test);
/* Top-1 accuracy in percent on a labelled set. */
int test_accuracy(kd_model *m, const kd_dataset *test, double *accuracy);

/* ---------------------------------------------------------------- checkpoints (checkpoint.c) */

/* The sidecar beside a kd_trainer_save file: the run's fingerprint and history. The sidecar is
 * written before the trainer file, so after a crash between the two it may be one epoch ahead; the
 * trainer's step count decides and the extra epoch is dropped. */
int checkpoint_save(const char *path, kd_trainer *t, uint64_t fingerprint, const history *h,
                    const char *options);
/* The sidecar of the checkpoint at path: its fingerprint and its run's options ("--lr=0.05; ..."),
 * to say which option differs. 0 when there is no checkpoint, 1 when read, -1 (printed) when the
 * sidecar cannot be read. */
int checkpoint_peek(const char *path, uint64_t *fingerprint, char *options, size_t size);
/* The options of the run that wrote the checkpoint at path: 1, or 0 (none, or unreadable) without
 * a message (checkpoint_peek says why, later). */
int checkpoint_options(const char *path, char *options, size_t size);
/* 1 if a checkpoint was loaded, 0 if none exists, EXIT_RUNTIME-style -1 on error (printed).
 * steps_per_epoch checks the trainer's position against the history. */
int checkpoint_load(const char *path, kd_trainer *t, kd_optimizer *o, uint64_t fingerprint,
                    int64_t steps_per_epoch, history *h);
/* The history alone (teacher cache sidecars use the same format); 0 on success. */
int history_save(const char *path, uint64_t fingerprint, const history *h, const char *note);
int history_load(const char *path, uint64_t fingerprint, history *h);
/* The same without the check: the sidecar's fingerprint and its note line (NULL: not wanted). */
int history_read(const char *path, uint64_t *fingerprint, history *h, char *note, size_t size);

/* ---------------------------------------------------------------- progress (progress.c) */

typedef struct progress {
    int mode; /* 0 quiet, 1 plain lines, 2 terminal bar */
    int unicode;
    FILE *log; /* --log FILE.jsonl, or NULL */
    const char *log_path;
    int log_errno; /* the first failed write's errno (ferror keeps none), 0 while all went well */
    int log_fresh; /* a new run's log: emptied at its first epoch, not at the start */
    const char *eval_name; /* what per-epoch accuracy is measured on: "test" or "val" */
    const char *run, *key;
    int epoch, epochs, first_epoch;
    int64_t steps, step;
    double run_start, last_draw;
} progress;

int progress_open(progress *p, const options *o);
/* EXIT_RUNTIME, said on stderr, when a line of the log could not be written (a full disk, a file
 * size limit): the run went on, but its log is not whole. */
int progress_close(progress *p);
void progress_run(progress *p, const char *name, const char *key, int first_epoch, int epochs,
                  int64_t steps_per_epoch);
void progress_step(progress *p, int epoch, int64_t step, double loss, double acc);
void progress_epoch(progress *p, const epoch_rec *r);
/* A line of information (not printed with --quiet). */
void note(const progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- measurements (measure.c) */

typedef struct model_stats {
    char name[64], shape[128];
    double accuracy; /* percent */
    int64_t params;
    int64_t bytes;     /* file size, -1 if unknown */
    double latency_us; /* per image at batch 1 */
    double throughput; /* images per second at batch 256, 0 if not measured */
    int throughput_batch;
} model_stats;

/* Median latency of single-image predictions over about `seconds`. */
int measure_latency(kd_model *m, const kd_dataset *d, double seconds, double *us);
int measure_throughput(kd_model *m, const kd_dataset *d, int64_t batch, double seconds,
                       double *images_per_s);
/* Latency (us) and throughput (images/s) of n models (at most 32) in 5 interleaved rounds of
 * seconds / 5 each, medians: timed one after the other, each model meets the machine in another
 * state (an untouched copy of the first model came out 1.2-1.3x faster). */
int measure_models(kd_model **m, int n, const kd_dataset *d, int64_t batch, double seconds,
                   double *us, double *images_per_s);
/* Name, shape, parameters, file size (path may be NULL) and latency of m. */
int fill_stats(model_stats *s, const char *name, kd_model *m, const char *path,
               const kd_dataset *test, double accuracy);
void print_comparison(FILE *f, const model_stats *s, int n, int baseline);

/* ---------------------------------------------------------------- teacher logits (logits.c) */

/* Logits of every teacher on every example of d, [n_teachers][n][classes], computed in chunks; or
 * read from / written to cache_path (NULL: no cache) when its fingerprint matches. */
int teacher_logits(kd_model *const *teachers, int nteachers, const kd_dataset *d,
                   const char *cache_path, uint64_t fingerprint, const progress *p, float **out);

/* ---------------------------------------------------------------- report (report.c) */

typedef struct report_series {
    const char *name;
    const char *color;
    const history *hist;
} report_series;

typedef struct report {
    const char *title;
    const char *subtitle; /* data, protocol */
    const char *headline; /* the result in one sentence, may be NULL */
    const report_series *series;
    int nseries;
    const model_stats *stats; /* comparison table, may be NULL */
    int nstats, baseline;
    const char *notes; /* a paragraph of plain text, may be NULL */
    int validation;    /* 1: per-epoch accuracy is on a validation split, not the test set */
} report;

/* Writes DIR/index.html; returns an exit code. */
int report_write(const char *dir, const report *r);
/* Writes DIR/index.html atomically from write_page(f, r), making DIR first; an exit code, with a
 * message. report_write and text_report_write are this with their own page. */
int report_write_page(const char *dir, void (*write_page)(FILE *f, const void *r), const void *r);
/* The pieces the text report (text_report.c) shares: s with <, >, & and " escaped; a step of 1, 2
 * or 5 times a power of ten giving about `ticks` intervals over span; the page's style sheet. */
void report_html(FILE *f, const char *s);
double report_nice_step(double span, int ticks);
extern const char report_style[];
/* A report page's opening (head with report_style and extra_style, which may be NULL; h1 title,
 * subtitle, headline if not NULL), its notes paragraph (nothing for NULL), and its footer. */
void report_page_begin(FILE *f, const char *title, const char *subtitle, const char *headline,
                       const char *extra_style);
void report_page_notes(FILE *f, const char *notes);
void report_page_end(FILE *f);
/* A plot's axes (data units) and the SVG pieces both reports draw with them: x and y in pixels;
 * the <figure> and <svg> opening with the grid, x ticks at x0, x0 + xstep, ... (integers) and the
 * axis labels; one legend entry at *x, which moves past it. */
typedef struct report_axes {
    double x0, x1, xstep, y0, y1, ystep;
} report_axes;
#define REPORT_PLOT_LEFT 62 /* the plot's left margin in pixels, where the legend starts */
/* The y range of values lo..hi (none: 0..1) rounded out to about 5 steps of report_nice_step. */
void report_axes_y(report_axes *a, double lo, double hi);
double report_px(const report_axes *a, double x);
double report_py(const report_axes *a, double y);
void report_plot_begin(FILE *f, const report_axes *a, const char *title, const char *xlabel,
                       const char *ylabel);
void report_legend_entry(FILE *f, double *x, const char *color, const char *name);

/* ---------------------------------------------------------------- commands */

int cmd_train(const options *o);
int cmd_distill(const options *o);
int cmd_eval(const options *o);
int cmd_info(const options *o);
int cmd_predict(const options *o);
/* ---- shipping the student (issue 14): each parses its own options */
int cmd_export(int argc, char **argv); /* cmd_export.c */
void export_help(FILE *f);
int cmd_prune(int argc, char **argv); /* cmd_prune.c */
void prune_help(FILE *f);
/* ---- end of shipping the student */

/* ---------------------------------------------------------------- int8 (cmd_quantize.c) */

/* kd quantize MODEL --calib DATA --out FILE: parses its own options from argv[2..]. */
int cmd_quantize(int argc, char **argv);
void quantize_help(FILE *f);

#endif
