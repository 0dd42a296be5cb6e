/* --report DIR: one self-contained HTML page (no scripts, no external files) with inline SVG plots
 * of the training curves and the comparison table. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define PLOT_W 560
#define PLOT_H 330
#define LEFT REPORT_PLOT_LEFT
#define RIGHT 18
#define TOP 44
#define BOTTOM 46

void report_html(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

double report_nice_step(double span, int ticks)
{
    double raw = span / ticks, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

typedef double (*field_fn)(const epoch_rec *r);
static double field_ce(const epoch_rec *r) { return r->ce; }
static double field_test(const epoch_rec *r) { return r->test_acc; }

static report_axes make_axes(const report *r, field_fn field)
{
    double lo = INFINITY, hi = -INFINITY;
    int epochs = 1;
    for (int s = 0; s < r->nseries; s++) {
        const history *h = r->series[s].hist;
        for (int i = 0; i < h->n; i++) {
            double v = field(&h->rec[i]);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        epochs = h->n > epochs ? h->n : epochs;
    }
    report_axes a;
    report_axes_y(&a, lo, hi);
    a.x0 = 1;
    a.x1 = epochs > 1 ? epochs : 2;
    a.xstep = ceil(report_nice_step(a.x1 - a.x0, 8));
    a.xstep = a.xstep < 1 ? 1 : a.xstep;
    return a;
}

void report_axes_y(report_axes *a, double lo, double hi)
{
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-6) lo -= 0.5, hi += 0.5;
    a->ystep = report_nice_step(hi - lo, 5);
    a->y0 = floor(lo / a->ystep) * a->ystep;
    a->y1 = ceil(hi / a->ystep) * a->ystep;
}

double report_px(const report_axes *a, double x)
{
    return LEFT + (x - a->x0) / (a->x1 - a->x0) * (PLOT_W - LEFT - RIGHT);
}
double report_py(const report_axes *a, double y)
{
    return PLOT_H - BOTTOM - (y - a->y0) / (a->y1 - a->y0) * (PLOT_H - TOP - BOTTOM);
}

void report_plot_begin(FILE *f, const report_axes *a, const char *title, const char *xlabel,
                       const char *ylabel)
{
    fprintf(f,
            "<figure><figcaption>%s</figcaption>\n<svg viewBox='0 0 %d %d' width='%d' "
            "height='%d' role='img' aria-label='%s'>",
            title, PLOT_W, PLOT_H, PLOT_W, PLOT_H, title);
    int decimals = a->ystep >= 1 ? 0 : (int)ceil(-log10(a->ystep) - 1e-9);
    for (double y = a->y0; y <= a->y1 + 1e-9; y += a->ystep) {
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' class='grid'/>", LEFT, PLOT_W - RIGHT,
                report_py(a, y), report_py(a, y));
        fprintf(f, "<text x='%d' y='%.1f' class='tick' text-anchor='end'>%.*f</text>", LEFT - 8,
                report_py(a, y) + 4, decimals, y);
    }
    for (double x = a->x0; x <= a->x1 + 1e-9; x += a->xstep) {
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' class='axis'/>", report_px(a, x),
                report_px(a, x), PLOT_H - BOTTOM, PLOT_H - BOTTOM + 5);
        fprintf(f, "<text x='%.1f' y='%d' class='tick' text-anchor='middle'>%.0f</text>",
                report_px(a, x), PLOT_H - BOTTOM + 19, x);
    }
    fprintf(f, "<line x1='%d' x2='%d' y1='%d' y2='%d' class='axis'/>", LEFT, PLOT_W - RIGHT,
            PLOT_H - BOTTOM, PLOT_H - BOTTOM);
    fprintf(f, "<text x='%d' y='%d' class='label' text-anchor='middle'>%s</text>",
            (LEFT + PLOT_W - RIGHT) / 2, PLOT_H - 8, xlabel);
    fprintf(f, "<text x='%d' y='%d' class='label'>%s</text>", LEFT - 50, TOP - 24, ylabel);
}

void report_legend_entry(FILE *f, double *x, const char *color, const char *name)
{
    fprintf(f, "<rect x='%.0f' y='%d' width='14' height='4' rx='2' fill='%s'/>", *x, TOP - 14,
            color);
    fprintf(f, "<text x='%.0f' y='%d' class='legend'>", *x + 19, TOP - 8);
    report_html(f, name);
    fprintf(f, "</text>");
    *x += 32 + 7.2 * (double)strlen(name);
}

static void legend(FILE *f, const report *r)
{
    double x = LEFT;
    for (int s = 0; s < r->nseries; s++)
        report_legend_entry(f, &x, r->series[s].color, r->series[s].name);
}

static void curve(FILE *f, const report_axes *a, const report_series *s, field_fn field)
{
    const history *h = s->hist;
    if (h->n > 1) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2.2' points='", s->color);
        for (int i = 0; i < h->n; i++)
            fprintf(f, "%.1f,%.1f ", report_px(a, h->rec[i].epoch),
                    report_py(a, field(&h->rec[i])));
        fprintf(f, "'/>");
    }
    for (int i = 0; i < h->n; i++) {
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'><title>",
                report_px(a, h->rec[i].epoch), report_py(a, field(&h->rec[i])), s->color);
        report_html(f, s->name);
        fprintf(f, ", epoch %d: %.4g</title></circle>", h->rec[i].epoch, field(&h->rec[i]));
    }
}

static void plot(FILE *f, const report *r, const char *title, const char *ylabel, field_fn field)
{
    report_axes a = make_axes(r, field);
    report_plot_begin(f, &a, title, "epoch", ylabel);
    legend(f, r);
    for (int s = 0; s < r->nseries; s++) curve(f, &a, &r->series[s], field);
    fprintf(f, "</svg></figure>\n");
}

static void table(FILE *f, const report *r)
{
    if (r->stats == NULL || r->nstats == 0) return;
    double best = -1;
    for (int i = 0; i < r->nstats; i++)
        best = r->stats[i].accuracy > best ? r->stats[i].accuracy : best;
    int thr = 0; /* kd eval measures throughput too */
    for (int i = 0; i < r->nstats; i++) thr |= r->stats[i].throughput > 0;
    fprintf(f,
            "<table><thead><tr><th>model</th><th>architecture</th><th>test accuracy</th>"
            "<th>parameters</th><th>file size</th><th>latency / image</th><th>speed-up</th>"
            "%s</tr></thead><tbody>\n",
            thr ? "<th>throughput</th><th>vs first</th>" : "");
    const model_stats *base = &r->stats[r->baseline];
    for (int i = 0; i < r->nstats; i++) {
        const model_stats *s = &r->stats[i];
        char params[32], size[32];
        format_count(s->params, params, sizeof params);
        if (s->bytes >= 0)
            format_bytes((double)s->bytes, size, sizeof size);
        else
            snprintf(size, sizeof size, "-");
        fprintf(f, "<tr><td>");
        report_html(f, s->name);
        fprintf(f,
                "</td><td>%s</td><td class='n%s'>%.2f%%</td><td class='n'>%s</td>"
                "<td class='n'>%s</td><td class='n'>%.1f &micro;s</td><td class='n'>%.1f&times;"
                "</td>",
                s->shape, s->accuracy == best ? " best" : "", s->accuracy, params, size,
                s->latency_us, base->latency_us / s->latency_us);
        if (thr) {
            char ips[32];
            format_count((int64_t)(s->throughput + 0.5), ips, sizeof ips);
            fprintf(f, "<td class='n'>%s images/s</td><td class='n'>%.1f&times;</td>", ips,
                    base->throughput > 0 ? s->throughput / base->throughput : 0.0);
        }
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</tbody></table>\n");
}

static void epochs_table(FILE *f, const report *r)
{
    fprintf(f,
            "<details><summary>Every epoch</summary><table><thead><tr><th>run</th><th>epoch"
            "</th><th>objective</th><th>train cross-entropy</th><th>train accuracy</th>"
            "<th>%s accuracy</th><th>learning rate</th><th>time</th></tr></thead><tbody>\n",
            r->validation ? "validation" : "test");
    for (int s = 0; s < r->nseries; s++) {
        const history *h = r->series[s].hist;
        for (int i = 0; i < h->n; i++) {
            const epoch_rec *e = &h->rec[i];
            fprintf(f, "<tr><td>");
            report_html(f, r->series[s].name);
            fprintf(f,
                    "</td><td class='n'>%d</td><td class='n'>%.4f</td><td class='n'>%.4f</td>"
                    "<td class='n'>%.2f%%</td><td class='n'>%.2f%%</td><td class='n'>%.4f</td>"
                    "<td class='n'>%.0f s</td></tr>\n",
                    e->epoch, e->loss, e->ce, e->train_acc, e->test_acc, e->lr, e->seconds);
        }
    }
    fprintf(f, "</tbody></table></details>\n");
}

const char report_style[] =
    "<style>\n"
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
    "color:#1f2937;max-width:1180px;margin:28px auto;padding:0 24px;background:#fff}\n"
    "h1{font-size:24px;margin:0 0 4px}p.sub{color:#4b5563;margin:0 0 18px;max-width:900px}\n"
    "p.headline{font-size:17px;margin:0 0 14px;max-width:900px}\n"
    "table{border-collapse:collapse;margin:8px 0 22px}th,td{padding:7px 14px;border-bottom:1px "
    "solid #e5e7eb;text-align:left;white-space:nowrap}th{font-weight:600;color:#374151;"
    "background:#f9fafb}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.best{font-weight:700}\n"
    ".plots{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;border:1px solid #e5e7eb;"
    "border-radius:8px;padding:10px 6px 2px}figcaption{font-weight:600;padding:0 10px}\n"
    "svg{display:block}.grid{stroke:#eef0f3}.axis{stroke:#9ca3af}.tick{font-size:11px;"
    "fill:#6b7280}.label{font-size:12px;fill:#4b5563}.legend{font-size:12.5px;fill:#374151}\n"
    "p.notes,footer{color:#6b7280;font-size:13px;max-width:900px}details{margin:8px 0}"
    "summary{cursor:pointer;font-weight:600}\n"
    "</style>\n";

void report_page_begin(FILE *f, const char *title, const char *subtitle, const char *headline,
                       const char *extra_style)
{
    fprintf(f, "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>");
    report_html(f, title);
    fprintf(f, "</title>\n%s%s</head><body>\n<h1>", report_style,
            extra_style != NULL ? extra_style : "");
    report_html(f, title);
    fprintf(f, "</h1>\n<p class='sub'>");
    report_html(f, subtitle);
    fprintf(f, "</p>\n");
    if (headline != NULL) {
        fprintf(f, "<p class='headline'>");
        report_html(f, headline);
        fprintf(f, "</p>\n");
    }
}

void report_page_notes(FILE *f, const char *notes)
{
    if (notes == NULL) return;
    fprintf(f, "<p class='notes'>");
    report_html(f, notes);
    fprintf(f, "</p>\n");
}

void report_page_end(FILE *f)
{
    fprintf(f, "<footer>Written by kd %s (libkd %s).</footer>\n</body></html>\n", KD_VERSION_STRING,
            kd_version());
}

static void page(FILE *f, const report *r)
{
    report_page_begin(f, r->title, r->subtitle, r->headline, NULL);
    table(f, r);
    if (r->nseries > 0) { /* kd eval's side-by-side page has no training curves */
        fprintf(f, "<div class='plots'>\n");
        plot(f, r, "Training cross-entropy per epoch", "cross-entropy", field_ce);
        plot(f, r, r->validation ? "Validation accuracy per epoch" : "Test accuracy per epoch",
             "accuracy (%)", field_test);
        fprintf(f, "</div>\n");
    }
    report_page_notes(f, r->notes);
    if (r->nseries > 0) epochs_table(f, r);
    report_page_end(f);
}

static void report_page(FILE *f, const void *r) { page(f, r); }

int report_write(const char *dir, const report *r)
{
    return report_write_page(dir, report_page, r);
}

int report_write_page(const char *dir, void (*write_page)(FILE *f, const void *r), const void *r)
{
    if (make_dirs(dir) != 0) {
        fail_msg("cannot create the report directory %s: %s", dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL) {
        fail_msg("out of memory for the report");
        return EXIT_RUNTIME;
    }
    write_page(f, r);
    fclose(f);
    char path[4200];
    snprintf(path, sizeof path, "%s/index.html", dir);
    int rc = write_atomic(path, buf, size);
    free(buf);
    if (rc != 0) {
        fail_msg("cannot write %s: %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}
