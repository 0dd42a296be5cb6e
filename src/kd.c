/* kd: the command-line tool of libkd. It uses only the public API (kd.h).
 *
 *   kd train | distill | eval | info | generate | quantize | help   (see help.c, and docs/kd.1); train,
 *   distill and eval with --text work on byte-level language models (cmd_text.c)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "parallel.h"
#include "text.h"

static const char *command_name = "";

void set_command_name(const char *name) { command_name = name; }

void fail_msg(const char *fmt, ...)
{
    /* One write of the whole line: stderr is unbuffered, and under mpirun the ranks' lines would
     * interleave piece by piece ("kd train: kd train: rank 1 ..."). */
    char line[8192];
    int n = snprintf(line, sizeof line, "kd%s%s: ", *command_name ? " " : "", command_name);
    if (par_world() > 1 && n > 0 && (size_t)n < sizeof line)
        n +=
            snprintf(line + n, sizeof line - (size_t)n, "rank %d of %d: ", par_rank(), par_world());
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2; /* truncated: still one line */
    line[n++] = '\n';
    fflush(stdout);
    fwrite(line, 1, (size_t)n, stderr);
}

int fail_kd(const char *what, kd_status st)
{
    const char *detail = kd_last_error();
    fail_msg("%s: %s", what, *detail ? detail : kd_strerror(st));
    return EXIT_RUNTIME;
}

int load_model(const char *path, kd_model **out)
{
    kd_status st = kd_model_load(path, out);
    if (st == KD_OK) return EXIT_OK;
    char what[4200];
    snprintf(what, sizeof what, "cannot load %s", path);
    return fail_kd(what, st);
}

typedef struct entry {
    const char *name;
    command cmd;
    int (*run)(const options *o);
} entry;

static const entry commands[] = {
    {"train", CMD_TRAIN, cmd_train},       {"distill", CMD_DISTILL, cmd_distill},
    {"eval", CMD_EVAL, cmd_eval},          {"info", CMD_INFO, cmd_info},
    {"predict", CMD_PREDICT, cmd_predict},
};

static int help(int argc, char **argv)
{
    if (argc < 3) {
        print_usage(stdout);
        return EXIT_OK;
    }
    if (print_command_help(stdout, argv[2]) == 0) return EXIT_OK;
    fail_msg("no command '%s'; the commands are train, distill, eval, predict, info, generate, "
             "quantize, export, prune",
             argv[2]);
    return EXIT_USAGE;
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const char *a = argv[1];
    if (strcmp(a, "--version") == 0 || strcmp(a, "version") == 0) {
        printf("kd %s (libkd %s, kernels %s)\n", KD_VERSION_STRING, kd_version(),
               kd_kernels_name());
        return EXIT_OK;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0)
        return help(argc, argv);
    if (strcmp(a, "generate") == 0) {
        set_command_name("generate");
        return cmd_generate(argc, argv);
    }
    /* issue 14: export and prune parse their own options */
    if (strcmp(a, "export") == 0 || strcmp(a, "prune") == 0) {
        set_command_name(a);
        return a[0] == 'e' ? cmd_export(argc, argv) : cmd_prune(argc, argv);
    }
    if (strcmp(a, "quantize") == 0) {
        set_command_name("quantize");
        return cmd_quantize(argc, argv);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(a, commands[i].name) != 0) continue;
        set_command_name(commands[i].name);
        if (commands[i].cmd != CMD_INFO && commands[i].cmd != CMD_PREDICT &&
            is_text_command(argc, argv)) {
            if (par_world() > 1 && commands[i].cmd != CMD_TRAIN && commands[i].cmd != CMD_DISTILL) {
                fail_msg("kd %s --text runs in one process: run it without mpirun",
                         commands[i].name);
                return EXIT_USAGE;
            }
            return cmd_text(commands[i].name, argc, argv);
        }
        options o;
        o.cmd = commands[i].cmd;
        int rc = parse_options(&o, argc, argv, 2);
        if (rc == -1) return EXIT_OK;
        if (rc != EXIT_OK) return rc;
        if (o.threads >= 0 && set_threads(o.threads) != 0) {
            fail_msg("--threads: this libkd cannot set its number of threads");
            return EXIT_RUNTIME;
        }
        if (par_rank() != 0) { /* rank 0 writes the log and the report, and prints */
            o.log_path = NULL;
            o.report_dir = NULL;
        }
        if (!o.quiet && (o.cmd == CMD_TRAIN || o.cmd == CMD_DISTILL)) par_announce();
        return commands[i].run(&o);
    }
    fail_msg("unknown command '%s'; the commands are train, distill, eval, predict, info, "
             "generate, quantize, export, prune (see 'kd --help')",
             a);
    return EXIT_USAGE;
}

/* Under mpirun (src/parallel.c) every rank runs the command on its slices; rank 0 alone prints
 * and writes files, and a rank that fails ends the job. */
/* A closed standard stream's descriptor (kd ... >&-) would be the next file opened -- the log, a
 * model's temporary file -- and what is printed would land in that file. Each is held by /dev/null
 * opened for reading: nothing else takes it, and writes to it still fail (and are reported). */
static void hold_standard_streams(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int got = open("/dev/null", O_RDONLY); /* the lowest free descriptor: fd */
            if (got >= 0 && got != fd) close(got);
        }
}

int main(int argc, char **argv)
{
    hold_standard_streams();
    if (par_init(&argc, &argv) != 0) return EXIT_RUNTIME;
    if (default_threads() != 0) return par_end(EXIT_USAGE);
    if (par_rank() != 0 && freopen("/dev/null", "w", stdout) == NULL) return par_end(EXIT_RUNTIME);
    int rc = run(argc, argv);
    /* What went to the standard output is part of the result (kd info, eval, generate, the help):
     * a full disk or a closed stream makes the command fail, not end with 0 and half of it. A
     * command that failed already (kd predict said it) keeps its status and message. */
    errno = 0;
    int bad = fflush(stdout) != 0, err = errno;
    if ((bad || ferror(stdout)) && rc == EXIT_OK) {
        fail_msg("cannot write the standard output: %s",
                 err != 0 ? strerror(err) : "a write failed");
        rc = EXIT_RUNTIME;
    }
    return par_end(rc);
}
