/* kd: the command-line tool of libkd. It uses only the public API (kd.h).
 *
 *   kd train | distill | eval | info | generate | quantize | help   (see help.c, and docs/kd.1); train,
 *   distill and eval with --text work on byte-level language models (cmd_text.c)
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "text.h"

static const char *command_name = "";

void set_command_name(const char *name) { command_name = name; }

void fail_msg(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "kd%s%s: ", *command_name ? " " : "", command_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int fail_kd(const char *what, kd_status st)
{
    const char *detail = kd_last_error();
    fail_msg("%s: %s", what, *detail ? detail : kd_strerror(st));
    return EXIT_RUNTIME;
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
    fail_msg(
        "no command '%s'; the commands are train, distill, eval, predict, info, generate, quantize",
        argv[2]);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
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
    if (strcmp(a, "quantize") == 0) {
        set_command_name("quantize");
        return cmd_quantize(argc, argv);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(a, commands[i].name) != 0) continue;
        set_command_name(commands[i].name);
        if (commands[i].cmd != CMD_INFO && commands[i].cmd != CMD_PREDICT &&
            is_text_command(argc, argv))
            return cmd_text(commands[i].name, argc, argv);
        options o;
        o.cmd = commands[i].cmd;
        int rc = parse_options(&o, argc, argv, 2);
        if (rc == -1) return EXIT_OK;
        if (rc != EXIT_OK) return rc;
        return commands[i].run(&o);
    }
    fail_msg(
        "unknown command '%s'; the commands are train, distill, eval, predict, info, generate (see "
        "'kd --help')",
        a);
    return EXIT_USAGE;
}
