/* libFuzzer target for the kd tool's option parser (src/args.c): the input, split at NUL bytes,
 * is the argument list of each command in turn; then the whole input, written to a file, is a
 * --config FILE (INI) for each command. Parsing must end in a status (0, -1 for --help,
 * or a usage error), never a crash, and a parse that succeeds must give values in their ranges.
 * fail_msg and the help printer are replaced by quiet stubs. Built with -DKD_FUZZ=ON. */
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fuzz_common.h"

void fail_msg(const char *fmt, ...) { (void)fmt; }
int fail_kd(const char *what, kd_status st)
{
    (void)what;
    (void)st;
    return 1;
}

int print_command_help(FILE *f, const char *name)
{
    (void)f;
    (void)name;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *argv[MAX_ARGS + 1];
    if (text == NULL) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    int argc = 2;
    argv[0] = "kd";
    argv[1] = "cmd";
    for (char *p = text; argc < MAX_ARGS && p < text + size; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    for (command c = CMD_TRAIN; c <= CMD_INFO; c++) {
        options o;
        memset(&o, 0, sizeof o);
        o.cmd = c;
        int rc = parse_options(&o, argc, argv, 2);
        if (rc == 0 && (c == CMD_TRAIN || c == CMD_DISTILL) &&
            (o.epochs < 1 || o.epochs > MAX_EPOCHS || o.batch < 1))
            abort();
    }
    /* The same bytes as an INI file, read by --config. */
    static char path[64];
    if (path[0] == '\0') snprintf(path, sizeof path, "/tmp/fuzz_options.%ld.ini", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(data, 1, size, f);
        fclose(f);
        char *cargv[] = {"kd", "cmd", "--config", path, NULL};
        for (command c = CMD_TRAIN; c <= CMD_INFO; c++) {
            options o;
            memset(&o, 0, sizeof o);
            o.cmd = c;
            int rc = parse_options(&o, 4, cargv, 2);
            if (rc == 0 && (c == CMD_TRAIN || c == CMD_DISTILL) &&
                (o.epochs < 1 || o.epochs > MAX_EPOCHS || o.batch < 1))
                abort();
        }
        remove(path);
    }
    free(text);
    return 0;
}
