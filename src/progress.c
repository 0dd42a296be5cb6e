/* Progress: a bar with ETA, loss and accuracy on a terminal; one plain line per epoch otherwise;
 * nothing with --quiet; and, with --log FILE.jsonl, one JSON object per epoch whatever the mode. */
#define _DEFAULT_SOURCE /* TIOCGWINSZ */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common.h"

static int utf8_locale(void)
{
    const char *vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && *v != '\0')
            return strstr(v, "UTF-8") || strstr(v, "utf8") || strstr(v, "UTF8");
    }
    return 0;
}

/* Ctrl-C during a bar: end the bar's line so the shell's prompt starts on its own, then die of
 * the signal as usual (exit status 128 + signal). */
static void on_signal(int sig)
{
    static const char nl[] = "\n";
    ssize_t ignored = write(STDOUT_FILENO, nl, 1);
    (void)ignored;
    signal(sig, SIG_DFL);
    raise(sig);
}

int progress_open(progress *p, const options *o)
{
    memset(p, 0, sizeof *p);
    p->mode = o->quiet ? 0 : isatty(STDOUT_FILENO) ? 2 : 1;
    p->unicode = utf8_locale();
    if (p->mode == 2) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    if (o->log_path != NULL) {
        /* A resumed run adds its epochs to the log the first run started. */
        p->log = fopen(o->log_path, o->resume ? "a" : "w");
        if (p->log == NULL) {
            fail_msg("cannot write the log %s: %s", o->log_path, strerror(errno));
            return EXIT_RUNTIME;
        }
    }
    return EXIT_OK;
}

void progress_close(progress *p)
{
    if (p->log != NULL) fclose(p->log);
    p->log = NULL;
}

void progress_run(progress *p, const char *name, const char *key, int first_epoch, int epochs,
                  int64_t steps_per_epoch)
{
    p->run = name;
    p->key = key;
    p->first_epoch = first_epoch;
    p->epochs = epochs;
    p->steps = steps_per_epoch;
    p->run_start = now_seconds();
    p->last_draw = 0.0;
}

static void format_time(double s, char *out, size_t size)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, size, "%ld:%02ld", t / 60, t % 60);
}

static int columns(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
    return 80;
}

static void draw_bar(const progress *p, double fraction, int width)
{
    int full = (int)(fraction * width + 0.5);
    for (int i = 0; i < width; i++) {
        if (p->unicode)
            fputs(i < full ? "\u2588" : "\u00b7", stdout);
        else
            fputc(i < full ? '#' : '.', stdout);
    }
}

void progress_step(progress *p, int epoch, int64_t step, double loss, double acc)
{
    if (p->mode != 2) return;
    double t = now_seconds();
    if (step != p->steps && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    int64_t done = (int64_t)(epoch - p->first_epoch - 1) * p->steps + step;
    int64_t left = (int64_t)(p->epochs - epoch) * p->steps + (p->steps - step);
    double elapsed = t - p->run_start, eta = done > 0 ? elapsed / (double)done * (double)left : 0;
    char eta_s[32];
    format_time(eta, eta_s, sizeof eta_s);
    int width = columns() - 70;
    width = width < 10 ? 10 : width > 40 ? 40 : width;
    printf("\r%-14s epoch %2d/%-2d  ", p->run, epoch, p->epochs);
    draw_bar(p, (double)step / (double)p->steps, width);
    printf(" %3d%%  ETA %s  loss %.4f  acc %5.2f%%\x1b[K", (int)(100 * step / p->steps), eta_s,
           loss, acc);
    fflush(stdout);
}

static void log_epoch(const progress *p, const epoch_rec *r)
{
    if (p->log == NULL) return;
    fprintf(
        p->log,
        "{\"run\":\"%s\",\"epoch\":%d,\"epochs\":%d,\"loss\":%.6g,\"ce\":%.6g,\"train_acc\":%.4f,"
        "\"%s_acc\":%.4f,\"lr\":%.6g,\"seconds\":%.3f}\n",
        p->key, r->epoch, p->epochs, r->loss, r->ce, r->train_acc,
        p->eval_name != NULL ? p->eval_name : "test", r->test_acc, r->lr, r->seconds);
    fflush(p->log);
}

void progress_epoch(progress *p, const epoch_rec *r)
{
    log_epoch(p, r);
    if (p->mode == 0) return;
    char t[32];
    format_time(r->seconds, t, sizeof t);
    printf("%s%-14s epoch %2d/%-2d  loss %.4f  train %6.2f%%  %-4s %6.2f%%  %s\n",
           p->mode == 2 ? "\r\x1b[K" : "", p->run, r->epoch, p->epochs, r->loss, r->train_acc,
           p->eval_name != NULL ? p->eval_name : "test", r->test_acc, t);
    fflush(stdout);
}

void note(const progress *p, const char *fmt, ...)
{
    if (p->mode == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}
