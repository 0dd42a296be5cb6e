/* Small helpers of the kd tool: specs, sizes, hashes, atomic files, the cache directory. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_short_spec(const char *s)
{
    int numbers = 0;
    while (*s) {
        if (!isdigit((unsigned char)*s)) return 0;
        while (isdigit((unsigned char)*s)) s++;
        numbers++;
        if (*s == '-') {
            s++;
            if (!isdigit((unsigned char)*s)) return 0;
        } else if (*s != '\0') {
            return 0;
        }
    }
    return numbers >= 2;
}

void expand_spec(const char *in, char *out, size_t size)
{
    if (!is_short_spec(in)) {
        snprintf(out, size, "%s", in);
        return;
    }
    size_t used = 0;
    const char *p = in;
    int first = 1;
    while (*p && used < size) {
        long v = strtol(p, (char **)&p, 10);
        int last = *p == '\0';
        if (*p == '-') p++;
        int w = first
                    ? snprintf(out + used, size - used, "input %ld", v)
                    : snprintf(out + used, size - used, " | dense %ld%s", v, last ? "" : " | relu");
        if (w < 0) break;
        used += (size_t)w;
        first = 0;
    }
}

int create_model(const char *what, const char *spec, uint64_t seed, kd_model **out)
{
    char full[4096];
    expand_spec(spec, full, sizeof full);
    kd_status st = kd_model_create(full, seed, out);
    if (st == KD_OK) return EXIT_OK;
    if (st == KD_ERR_FORMAT || st == KD_ERR_ARGUMENT || st == KD_ERR_SHAPE) {
        fail_msg("bad %s spec '%s': %s", what, spec, kd_last_error());
        return EXIT_USAGE;
    }
    return fail_kd("cannot build the model", st);
}

/* An MLP reads as its widths ("784-256-10"); any other model as its weighted layers
 * ("conv-conv-dense"), normalisation layers left out. */
void model_shape_name(const kd_model *m, char *out, size_t size)
{
    int64_t in = 0;
    int32_t n = 0;
    int mlp = 1;
    kd_model_input_size(m, &in);
    kd_model_layer_count(m, &n);
    for (int32_t i = 0; i < n; i++) {
        const char *kind;
        int64_t params, outsize;
        if (kd_model_layer_info(m, i, &kind, &params, &outsize) == KD_OK && params > 0)
            mlp &= strcmp(kind, "dense") == 0 || strcmp(kind, "qdense") == 0;
    }
    int32_t quantized = 0;
    kd_model_is_quantized(m, &quantized);
    size_t used = mlp ? (size_t)snprintf(out, size, "%lld", (long long)in) : 0;
    if (!mlp && size > 0) out[0] = '\0';
    for (int32_t i = 0; i < n && used < size; i++) {
        const char *kind;
        int64_t params, outsize;
        if (kd_model_layer_info(m, i, &kind, &params, &outsize) != KD_OK) break;
        if (params == 0 || strcmp(kind, "bn") == 0 || strcmp(kind, "layernorm") == 0) continue;
        if (mlp)
            used += (size_t)snprintf(out + used, size - used, "-%lld", (long long)outsize);
        else
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "-" : "",
                                     quantized && kind[0] == 'q' ? kind + 1 : kind);
    }
    if (quantized && used < size) snprintf(out + used, size - used, " int8");
}

int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

void format_bytes(double bytes, char *out, size_t size)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 3) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(out, size, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
}

void format_count(int64_t n, char *out, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t j = 0;
    if (n < 0 && j + 1 < size) out[j++] = '-';
    for (int i = 0; i < len && j + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0) out[j++] = ',';
        out[j++] = digits[i];
    }
    out[j] = '\0';
}

#define HASH_PRIME 0x100000001b3ULL

uint64_t hash_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * HASH_PRIME;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * HASH_PRIME;
    return h;
}

uint64_t hash_str(uint64_t h, const char *s) { return hash_bytes(h, s, strlen(s) + 1); }

int hash_file(const char *path, uint64_t *h)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    static unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) *h = hash_bytes(*h, buf, got);
    int bad = ferror(f);
    fclose(f);
    return bad ? -1 : 0;
}

void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/'), *base = slash != NULL ? slash + 1 : path;
    char dir[4096];
    size_t dlen = slash == NULL   ? 1
                  : slash == path ? 1
                                  : (size_t)(slash - path),
           blen = strlen(base);
    if (dlen + 1 > sizeof dir || blen == 0) return;
    memcpy(dir, slash == NULL ? "." : path, dlen);
    dir[dlen] = '\0';
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        const char *p = e->d_name;
        if (strncmp(p, base, blen) != 0 || strncmp(p + blen, ".tmp.", 5) != 0) continue;
        char *end;
        errno = 0;
        long pid = strtol(p + blen + 5, &end, 10);
        if (errno != 0 || end == p + blen + 5 || *end != '\0' || pid <= 0) continue;
        /* Only a dead writer's file: a live process with that pid may be writing it. */
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat sb;
        if (fstatat(dirfd(d), p, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
            sb.st_uid == geteuid())
            (void)unlinkat(dirfd(d), p, 0);
    }
    if (d != NULL) closedir(d);
}

int write_atomic(const char *path, const void *data, size_t n)
{
    /* The rename would replace a pipe or a device there with a regular file (check_output refuses
     * one first; this is for one that appeared since). */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        errno = S_ISDIR(sb.st_mode) ? EISDIR : EEXIST;
        return -1;
    }
    remove_stale_temps(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) return -1;
    int ok = fwrite(data, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

int make_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

void cache_dir(const options *o, char *out, size_t size)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (o->cache_dir != NULL)
        snprintf(out, size, "%s", o->cache_dir);
    else if (xdg != NULL && xdg[0] == '/')
        snprintf(out, size, "%s/kd", xdg);
    else if (home != NULL && home[0] != '\0')
        snprintf(out, size, "%s/.cache/kd", home);
    else
        snprintf(out, size, ".kd-cache");
}

/* splitmix64 (Steele, Lea and Flood 2014) finaliser: a full-avalanche mix of (seed, epoch). */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t epoch_seed(uint64_t seed, int epoch)
{
    return mix(mix(seed) + 0x9e3779b97f4a7c15ULL * (uint64_t)(epoch + 1));
}

/* The directory part of path ("." for a bare name, "/" for "/x"). */
static void dir_of(const char *path, char *dir, size_t size)
{
    snprintf(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, size, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

int check_output(const char *path)
{
    char dir[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fail_msg("cannot write %s: it is a directory (give a file name)", path);
        return EXIT_RUNTIME;
    }
    /* Saves go to a temporary file renamed over path: a pipe or a device there would be replaced
     * by a regular file (a link to a regular file is replaced, as it always was). */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fail_msg("cannot write %s: it is %s, not a regular file, and saving would replace it "
                 "(give a file name)",
                 path,
                 S_ISFIFO(st.st_mode)                         ? "a pipe (FIFO)"
                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                 : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                              : "a special file");
        return EXIT_USAGE;
    }
    dir_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0) {
        fail_msg("cannot write %s: %s: %s", path, dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail_msg("cannot write %s: %s is not a directory", path, dir);
        return EXIT_RUNTIME;
    }
    if (access(dir, W_OK) == 0) return EXIT_OK;
    fail_msg("cannot write %s: %s: %s", path, dir, strerror(errno));
    return EXIT_RUNTIME;
}

int check_output_in_place(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode) && access(path, W_OK) == 0) return EXIT_OK;
    return check_output(path);
}

int check_not_language_model(const char *path, const kd_model *m, const char *why)
{
    int64_t vocab = 0;
    if (m != NULL) kd_model_tokens(m, &vocab, NULL);
    if (vocab == 0) return EXIT_OK;
    fail_msg("%s is a language model (token ids in): %s", path, why);
    return EXIT_USAGE;
}

void log_flush(FILE *log, int *err)
{
    errno = 0;
    if ((fflush(log) != 0 || ferror(log)) && *err == 0) *err = errno ? errno : EIO;
}

int log_close(FILE *log, const char *path, int err)
{
    int bad = ferror(log);
    errno = 0;
    if ((fclose(log) != 0 || bad) && err == 0) err = errno ? errno : EIO;
    if (err == 0) return EXIT_OK;
    fail_msg("cannot write the log %s: %s (the log is incomplete)", path, strerror(err));
    return EXIT_RUNTIME;
}

/* A directory that may not exist yet (--report DIR): it, or its nearest existing ancestor, is a
 * writable directory. */
int check_output_dir(const char *what, const char *path)
{
    char dir[4096];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    for (;;) {
        if (stat(dir, &st) == 0) break;
        if (errno != ENOENT && errno != ENOTDIR) {
            fail_msg("cannot write %s %s: %s: %s", what, path, dir, strerror(errno));
            return EXIT_RUNTIME;
        }
        char up[4096];
        dir_of(dir, up, sizeof up);
        if (strcmp(up, dir) == 0) break;
        snprintf(dir, sizeof dir, "%s", up);
    }
    if (!S_ISDIR(st.st_mode)) {
        fail_msg("cannot write %s %s: %s is not a directory", what, path, dir);
        return EXIT_RUNTIME;
    }
    if (access(dir, W_OK) == 0) return EXIT_OK;
    fail_msg("cannot write %s %s: %s: %s", what, path, dir, strerror(errno));
    return EXIT_RUNTIME;
}

/* A checkpoint that exists is continued (--resume) or replaced (--force), never overwritten by
 * accident. */
static int check_checkpoint(const options *o, const char *suffix)
{
    char path[4200], side[4210];
    snprintf(path, sizeof path, "%s%s", o->checkpoint, suffix);
    snprintf(side, sizeof side, "%s.run", path); /* its sidecar, saved the same way */
    int rc = check_output(path);
    if (rc == EXIT_OK) rc = check_output(side);
    if (rc != EXIT_OK || o->resume || o->force || access(path, F_OK) != 0) return rc;
    fail_msg("the checkpoint %s exists: continue it with --resume, or start again over it with "
             "--force",
             path);
    return EXIT_USAGE;
}

static const char *base_name(const char *p)
{
    const char *slash = strrchr(p, '/');
    return slash != NULL ? slash + 1 : p;
}

/* The resolved directory of path p into out (PATH_MAX); 0 when it cannot be resolved. */
static int resolved_dir(const char *p, char *out)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(p, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == p)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - p), p);
    return realpath(dir, out) != NULL;
}

/* Whether two paths name one file: the same inode when both exist, else the same name in the same
 * (resolved) directory. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char da[PATH_MAX], db[PATH_MAX];
    return resolved_dir(a, da) && resolved_dir(b, db) && strcmp(da, db) == 0 &&
           strcmp(base_name(a), base_name(b)) == 0;
}

/* The files a run reads: its teachers, logits, config, and its data (files, or IDX prefixes that
 * check_not_input expands). n at most 32. */
static int input_files(const options *o, const char **in)
{
    int n = 0;
    for (int i = 0; i < o->nteachers && n < 24; i++) in[n++] = o->teachers[i];
    const char *single[] = {o->teacher_logits, o->config, o->train_y,      o->test_y,     o->input,
                            o->positional,     o->init,   o->train_prefix, o->test_prefix};
    for (size_t i = 0; i < sizeof single / sizeof single[0] && n < 32; i++)
        if (single[i] != NULL) in[n++] = single[i];
    return n;
}

int check_apart(const char *const *out, const char *const *names, int nout, const char *const *in,
                int nin)
{
    for (int i = 0; i < nout; i++) {
        if (out[i] == NULL) continue;
        int rc = check_not_input(names[i], out[i], in, nin);
        if (rc != EXIT_OK) return rc;
        for (int j = i + 1; j < nout; j++)
            if (out[j] != NULL && same_file(out[i], out[j])) {
                fail_msg("%s and %s name the same file %s; give each its own", names[i], names[j],
                         out[i]);
                return EXIT_USAGE;
            }
    }
    return EXIT_OK;
}

/* An output that is an input, or another output: refused before anything is read or written
 * (the run would overwrite what it reads, or one result would replace another). The checkpoint's
 * companions count as outputs: its FILE.run sidecar, and for kd distill the teacher it trains
 * (FILE.teacher) and the student alone (FILE.alone), each with its .run. */
static int check_distinct(const options *o, const char *model, const char *alone)
{
    enum { NOUT = 11 };
    const char *out[NOUT] = {model, o->log_path, o->checkpoint, o->report_dir, o->soft_cache};
    const char *names[NOUT] = {"--out",
                               "--log",
                               "--checkpoint",
                               "--report",
                               "--soft-targets-cache",
                               "--checkpoint (its .run)",
                               "--checkpoint (its .teacher)",
                               "--checkpoint (its .teacher.run)",
                               "--checkpoint (its .alone)",
                               "--checkpoint (its .alone.run)",
                               "--out (its student alone)"};
    static const char *const suffixes[NOUT] = {
        [5] = ".run", [6] = ".teacher", [7] = ".teacher.run", [8] = ".alone", [9] = ".alone.run"};
    char companions[NOUT][4220];
    /* only the ones this run writes: --teacher FILE.teacher may reuse an earlier run's */
    int own_teacher = distill_own_teacher(o), compare = distill_compares(o);
    for (int i = 5; i < 10 && o->checkpoint != NULL; i++) {
        if ((i == 6 || i == 7) && !own_teacher) continue;
        if ((i == 8 || i == 9) && !compare) continue;
        snprintf(companions[i], sizeof companions[i], "%s%s", o->checkpoint, suffixes[i]);
        out[i] = companions[i];
    }
    out[10] = alone;
    const char *in[32];
    int n = input_files(o, in);
    return check_apart(out, names, NOUT, in, n);
}

/* --soft-targets-cache FILE is rewritten when it does not hold these teachers' logits: an existing
 * file must be such a cache (kd.kind "teacher-logits"), not any file a typo names. */
static int check_soft_cache(const char *path)
{
    if (access(path, F_OK) != 0) return check_output(path);
    kd_tensors *t = NULL;
    const char *kind = NULL;
    int ok = kd_tensors_load(path, &t) == KD_OK &&
             kd_tensors_get_meta(t, "kd.kind", &kind) == KD_OK && kind != NULL &&
             strcmp(kind, "teacher-logits") == 0;
    kd_tensors_destroy(t);
    if (ok) return check_output(path);
    fail_msg("--soft-targets-cache %s exists and is not a teachers' logits cache (kd.kind "
             "teacher-logits): it would be overwritten; give another path",
             path);
    return EXIT_USAGE;
}

/* An input as given, and as an IDX prefix: its images and labels files. */
static const char *const idx_names[] = {"",
                                        "-images-idx3-ubyte.gz",
                                        "-labels-idx1-ubyte.gz",
                                        "-images-idx3-ubyte",
                                        "-labels-idx1-ubyte",
                                        "-images.idx3-ubyte",
                                        "-labels.idx1-ubyte"};

int check_not_input(const char *flag, const char *out, const char *const *inputs, int n)
{
    char path[PATH_MAX];
    for (int i = 0; i < n; i++) {
        if (inputs[i] == NULL) continue;
        for (size_t k = 0; k < sizeof idx_names / sizeof idx_names[0]; k++) {
            if (snprintf(path, sizeof path, "%s%s", inputs[i], idx_names[k]) >= (int)sizeof path)
                continue;
            if (same_file(out, path)) {
                fail_msg("%s %s is a file this run reads (%s); give another path", flag, out, path);
                return EXIT_USAGE;
            }
        }
    }
    return EXIT_OK;
}

int check_outputs(const options *o, const char *model, const char *alone)
{
    /* under mpirun rank 0 alone writes: another host need not have the output directories */
    if (par_rank() != 0) return EXIT_OK;
    int rc = check_distinct(o, model, alone);
    if (rc == EXIT_OK && model != NULL) rc = check_output(model);
    if (rc == EXIT_OK && alone != NULL) rc = check_output(alone);
    if (rc == EXIT_OK && o->report_dir != NULL) rc = check_output_dir("the report", o->report_dir);
    if (rc == EXIT_OK && o->soft_cache != NULL) rc = check_soft_cache(o->soft_cache);
    if (rc == EXIT_OK && o->log_path != NULL) rc = check_output_in_place(o->log_path);
    if (rc == EXIT_OK && o->checkpoint != NULL) rc = check_checkpoint(o, "");
    if (rc == EXIT_OK && o->checkpoint != NULL && o->cmd == CMD_DISTILL)
        rc = check_checkpoint(o, ".alone");
    if (rc == EXIT_OK && o->checkpoint != NULL && o->cmd == CMD_DISTILL)
        rc = check_checkpoint(o, ".teacher");
    return rc;
}

void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void describe_protocol(const options *o, char *out, size_t size)
{
    static const char *const names[] = {"SGD", "Adam", "AdamW"};
    size_t n = (size_t)snprintf(out, size, "%s", names[o->optimizer]);
    if (o->optimizer == KD_OPTIMIZER_SGD && o->momentum > 0)
        n += (size_t)snprintf(out + n, size - n, " momentum %g%s", (double)o->momentum,
                              o->nesterov ? " (Nesterov)" : "");
    n += (size_t)snprintf(out + n, size - n, ", lr %g%s", (double)o->lr,
                          o->cosine ? " with cosine decay" : "");
    if (o->warmup_epochs > 0 && n < size)
        n += (size_t)snprintf(out + n, size - n, " after a %d-epoch warm-up%s", o->warmup_epochs,
                              o->warmup_auto ? " (students)" : "");
    if (o->weight_decay > 0 && n < size)
        n += (size_t)snprintf(out + n, size - n, ", weight decay %g", (double)o->weight_decay);
    if (n < size)
        snprintf(out + n, size - n, ", batch %d, seed %llu", o->batch, (unsigned long long)o->seed);
}

void describe_method(const options *o, char *out, size_t size)
{
    const char *ls = o->standardize ? " with logit standardisation" : "";
    if (o->method == KD_LOSS_LOGIT_MSE)
        snprintf(out, size, "logit MSE, alpha = %g", (double)o->alpha);
    else if (o->method == KD_LOSS_DKD)
        snprintf(out, size, "DKD%s, T = %g, alpha = %g, beta = %g", ls, (double)o->temperature,
                 (double)o->alpha, (double)o->beta);
    else if (o->method == KD_LOSS_DIST)
        snprintf(out, size, "DIST, T = %g, beta = %g, gamma = %g", (double)o->temperature,
                 (double)o->beta, (double)o->gamma);
    else
        snprintf(out, size, "Hinton's KD%s, T = %g, alpha = %g", ls, (double)o->temperature,
                 (double)o->alpha);
}
