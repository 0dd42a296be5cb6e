/* --report DIR for kd train|distill --text: the page of an image run (report.c's style, inline
 * SVG, no scripts), with what a language model is judged by: held-out bits per byte against the
 * step, the training objective, and a table of bits per byte, perplexity, parameters, file size,
 * tokens per second and a generated sample for every model. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

int text_curve_add(text_curve *c, int64_t step, double value)
{
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 16;
        int64_t *s = realloc(c->step, sizeof *s * (size_t)cap);
        if (s == NULL) return -1;
        c->step = s;
        double *v = realloc(c->value, sizeof *v * (size_t)cap);
        if (v == NULL) return -1;
        c->value = v;
        c->cap = cap;
    }
    c->step[c->n] = step;
    c->value[c->n] = value;
    c->n++;
    return 0;
}

void text_curve_free(text_curve *c)
{
    free(c->step);
    free(c->value);
    memset(c, 0, sizeof *c);
}

typedef const text_curve *(*curve_of)(const text_model_report *m);
static const text_curve *loss_curve(const text_model_report *m) { return m->loss; }
static const text_curve *heldout_curve(const text_model_report *m) { return m->heldout; }

static report_axes make_axes(const text_report *r, curve_of which)
{
    double lo = INFINITY, hi = -INFINITY, last = 1;
    for (int i = 0; i < r->n; i++) {
        const text_curve *c = which(&r->models[i]);
        for (int64_t k = 0; c != NULL && k < c->n; k++) {
            if (!isfinite(c->value[k])) continue;
            lo = c->value[k] < lo ? c->value[k] : lo;
            hi = c->value[k] > hi ? c->value[k] : hi;
            last = (double)c->step[k] > last ? (double)c->step[k] : last;
        }
    }
    report_axes a;
    report_axes_y(&a, lo, hi);
    a.x0 = 0;
    a.xstep = report_nice_step(last, 6);
    a.x1 = ceil(last / a.xstep) * a.xstep;
    return a;
}

static void plot(FILE *f, const text_report *r, const char *title, const char *ylabel,
                 curve_of which)
{
    report_axes a = make_axes(r, which);
    report_plot_begin(f, &a, title, "step", ylabel);
    double x = REPORT_PLOT_LEFT;
    for (int i = 0; i < r->n; i++) { /* the legend */
        const text_model_report *m = &r->models[i];
        if (which(m) == NULL || which(m)->n == 0) continue;
        /* the name before " (", so that three runs fit: "distilled (jsd + ...)" is "distilled" */
        char name[64];
        const char *paren = strstr(m->name, " (");
        int len = paren != NULL ? (int)(paren - m->name) : (int)strlen(m->name);
        snprintf(name, sizeof name, "%.*s", len, m->name);
        report_legend_entry(f, &x, m->color, name);
    }
    for (int i = 0; i < r->n; i++) {
        const text_model_report *m = &r->models[i];
        const text_curve *c = which(m);
        if (c == NULL || c->n == 0) continue;
        if (c->n > 1) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2.2' points='", m->color);
            for (int64_t k = 0; k < c->n; k++)
                if (isfinite(c->value[k]))
                    fprintf(f, "%.1f,%.1f ", report_px(&a, (double)c->step[k]),
                            report_py(&a, c->value[k]));
            fprintf(f, "'/>");
        }
        for (int64_t k = 0; k < c->n; k++) {
            if (!isfinite(c->value[k])) continue;
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'><title>",
                    report_px(&a, (double)c->step[k]), report_py(&a, c->value[k]), m->color);
            report_html(f, m->name);
            fprintf(f, ", step %lld: %.4g</title></circle>", (long long)c->step[k], c->value[k]);
        }
    }
    fprintf(f, "</svg></figure>\n");
}

static void table(FILE *f, const text_report *r)
{
    double best = INFINITY;
    for (int i = 0; i < r->n; i++) best = r->models[i].bpb < best ? r->models[i].bpb : best;
    fprintf(f, "<table><thead><tr><th>model</th><th>architecture</th><th>held-out bits per "
               "byte</th><th>perplexity</th><th>parameters</th><th>file size</th><th>training "
               "tokens/s</th><th>generation tokens/s (batch 1)</th></tr></thead><tbody>\n");
    for (int i = 0; i < r->n; i++) {
        const text_model_report *m = &r->models[i];
        char params[32], size[32] = "-", train[32] = "-";
        format_count(m->params, params, sizeof params);
        if (m->bytes >= 0) format_bytes((double)m->bytes, size, sizeof size);
        if (m->train_tps > 0) snprintf(train, sizeof train, "%.0f", m->train_tps);
        fprintf(f, "<tr><td>");
        report_html(f, m->name);
        fprintf(f, "</td><td>");
        report_html(f, m->shape);
        fprintf(f,
                "</td><td class='n%s'>%.4f</td><td class='n'>%.3f</td><td class='n'>%s</td>"
                "<td class='n'>%s</td><td class='n'>%s</td><td class='n'>%.0f</td></tr>\n",
                m->bpb == best ? " best" : "", m->bpb, m->ppl, params, size, train, m->gen_tps);
    }
    fprintf(f, "</tbody></table>\n");
}

/* The sample as text: valid UTF-8 kept, other bytes and control characters (but the newline)
 * shown as U+FFFD, so the page stays valid whatever a model wrote. */
static void sample_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80             ? 1
                  : (*p & 0xE0) == 0xC0 ? 2
                  : (*p & 0xF0) == 0xE0 ? 3
                  : (*p & 0xF8) == 0xF0 ? 4
                                        : 0;
        int ok = len > 0 && !(len == 2 && *p < 0xC2);
        for (int k = 1; ok && k < len; k++) ok = (p[k] & 0xC0) == 0x80;
        if (!ok) {
            fputs("\xEF\xBF\xBD", f);
            p++;
        } else if (len == 1 && *p < 0x20 && *p != '\n') {
            fputs("\xEF\xBF\xBD", f);
            p++;
        } else if (len == 1) {
            char c[2] = {(char)*p, 0};
            report_html(f, c);
            p++;
        } else {
            fwrite(p, 1, (size_t)len, f);
            p += len;
        }
    }
}

static void points_table(FILE *f, const text_report *r)
{
    fprintf(f, "<details><summary>Every evaluation point</summary><table><thead><tr><th>run</th>"
               "<th>step</th><th>held-out bits per byte</th></tr></thead><tbody>\n");
    for (int i = 0; i < r->n; i++) {
        const text_curve *c = r->models[i].heldout;
        for (int64_t k = 0; c != NULL && k < c->n; k++) {
            fprintf(f, "<tr><td>");
            report_html(f, r->models[i].name);
            fprintf(f, "</td><td class='n'>%lld</td><td class='n'>%.4f</td></tr>\n",
                    (long long)c->step[k], c->value[k]);
        }
    }
    fprintf(f, "</tbody></table></details>\n");
}

static void page(FILE *f, const text_report *r)
{
    report_page_begin(
        f, r->title, r->subtitle, r->headline,
        "<style>pre.sample{white-space:pre-wrap;background:#f9fafb;border:1px "
        "solid #e5e7eb;border-radius:6px;padding:8px 12px;max-width:900px;margin:4px 0 "
        "14px}</style>\n");
    table(f, r);
    fprintf(f, "<div class='plots'>\n");
    char title[160];
    snprintf(title, sizeof title, "Held-out bits per byte (first %lld bytes)",
             (long long)r->curve_bytes);
    plot(f, r, title, "bits per byte", heldout_curve);
    plot(f, r, "Training objective", "loss", loss_curve);
    fprintf(f, "</div>\n<h2>Samples</h2>\n");
    for (int i = 0; i < r->n; i++) {
        if (r->models[i].sample == NULL) continue;
        fprintf(f, "<p><b>");
        report_html(f, r->models[i].name);
        fprintf(f, "</b></p><pre class='sample'>");
        sample_text(f, r->models[i].sample);
        fprintf(f, "</pre>\n");
    }
    report_page_notes(f, r->notes);
    points_table(f, r);
    report_page_end(f);
}

static void text_page(FILE *f, const void *r) { page(f, r); }

int text_report_write(const char *dir, const text_report *r)
{
    return report_write_page(dir, text_page, r);
}
