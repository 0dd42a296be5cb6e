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
#include "parallel.h"

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
    /* Under mpirun the launcher gives rank 0 a terminal even when mpirun's own output goes to a
     * file: plain lines there. */
    p->mode = o->quiet ? 0 : isatty(STDOUT_FILENO) && par_world() == 1 ? 2 : 1;
    p->unicode = utf8_locale();
    if (p->mode == 2) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    if (o->log_path != NULL) {
        /* A resumed run adds its epochs to the log the first run started. A new run empties an
         * old log only when it writes its first epoch, so a run refused before training (a typo
         * in a data path) leaves the old log as it was. */
        p->log = fopen(o->log_path, "a");
        p->log_path = o->log_path;
        p->log_fresh = !o->resume;
        if (p->log == NULL) {
            fail_msg("cannot write the log %s: %s", o->log_path, strerror(errno));
            return EXIT_RUNTIME;
        }
    }
    return EXIT_OK;
}

int progress_close(progress *p)
{
    if (p->log == NULL) return EXIT_OK;
    int rc = log_close(p->log, p->log_path, p->log_errno);
    p->log = NULL;
    return rc;
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

/* The terminal's width: the tty's (TIOCGWINSZ), else $COLUMNS, else 80. Asked at every draw, so
 * a resized window is followed. */
static int columns(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *env = getenv("COLUMNS");
    long c = env != NULL ? strtol(env, NULL, 10) : 0;
    return c > 0 && c < 10000 ? (int)c : 80;
}

static void append_bar(const progress *p, char *out, size_t size, double fraction, int width)
{
    size_t used = strlen(out);
    int full = (int)(fraction * width + 0.5);
    for (int i = 0; i < width; i++) {
        const char *cell = p->unicode ? (i < full ? "\u2588" : "\u00b7") : (i < full ? "#" : ".");
        size_t n = strlen(cell);
        if (used + n + 1 > size) break;
        memcpy(out + used, cell, n + 1);
        used += n;
    }
}

/* The bar's line, redrawn in place: it always fits in one line of the terminal (one column to
 * spare, so no terminal wraps it), dropping the bar first, then cutting the text. */
void progress_step(progress *p, int epoch, int64_t step, double loss, double acc)
{
    if (p->mode != 2) return;
    double t = now_seconds();
    if (step != p->steps && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    int64_t done = (int64_t)(epoch - p->first_epoch - 1) * p->steps + step;
    int64_t left = (int64_t)(p->epochs - epoch) * p->steps + (p->steps - step);
    double elapsed = t - p->run_start, eta = done > 0 ? elapsed / (double)done * (double)left : 0;
    char eta_s[32], head[128], tail[128], line[512];
    format_time(eta, eta_s, sizeof eta_s);
    snprintf(head, sizeof head, "%-14s epoch %2d/%-2d ", p->run, epoch, p->epochs);
    snprintf(tail, sizeof tail, " %3d%%  ETA %s  loss %.4g  acc %5.2f%%",
             (int)(100 * step / p->steps), eta_s, loss, acc);
    int room = columns() - 1, width = room - (int)(strlen(head) + strlen(tail));
    if (width < 5) { /* the compact form, with a shorter bar or none, cut if it must be */
        snprintf(head, sizeof head, "%s %d/%d ", p->run, epoch, p->epochs);
        width = room - (int)(strlen(head) + strlen(tail));
    }
    width = width > 40 ? 40 : width;
    snprintf(line, sizeof line, "%s", head);
    if (width >= 5) append_bar(p, line, sizeof line, (double)step / (double)p->steps, width);
    size_t used = strlen(line);
    snprintf(line + used, sizeof line - used, "%s", tail);
    if (width < 5 && room > 0 && (int)strlen(line) > room) line[room] = '\0'; /* ASCII here */
    printf("\r%s\x1b[K", line);
    fflush(stdout);
}

static void log_epoch(progress *p, const epoch_rec *r)
{
    if (p->log == NULL) return;
    if (p->log_fresh) {
        fflush(p->log);
        if (ftruncate(fileno(p->log), 0) != 0) /* then the epochs follow the old lines */
            clearerr(p->log);
        p->log_fresh = 0;
    }
    fprintf(
        p->log,
        "{\"run\":\"%s\",\"epoch\":%d,\"epochs\":%d,\"loss\":%.6g,\"ce\":%.6g,\"train_acc\":%.4f,"
        "\"%s_acc\":%.4f,\"lr\":%.6g,\"seconds\":%.3f}\n",
        p->key, r->epoch, p->epochs, r->loss, r->ce, r->train_acc,
        p->eval_name != NULL ? p->eval_name : "test", r->test_acc, r->lr, r->seconds);
    log_flush(p->log, &p->log_errno); /* said at the end, by progress_close */
}

void progress_epoch(progress *p, const epoch_rec *r)
{
    log_epoch(p, r);
    if (p->mode == 0) return;
    char t[32];
    format_time(r->seconds, t, sizeof t);
    printf("%s%-14s epoch %2d/%-2d  loss %.4g  train %6.2f%%  %-4s %6.2f%%  %s\n",
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
