/* kd train: one model, cross-entropy on labelled data. */
#include <string.h>

#include "common.h"
#include "parallel.h"

static int check_arguments(const options *o)
{
    if (o->model_spec == NULL) {
        fail_msg("--model SPEC is required, e.g. --model 784-256-10 (see 'kd help train')");
        return EXIT_USAGE;
    }
    if (o->out == NULL) {
        fail_msg("--out MODEL.safetensors is required (see 'kd help train')");
        return EXIT_USAGE;
    }
    int rc = par_check_batch(o->batch, "example");
    if (rc != EXIT_OK) return rc;
    kd_model *m = NULL; /* a bad spec is a usage error, found before any data is read */
    rc = create_model("model", o->model_spec, o->seed, &m);
    kd_model_destroy(m);
    if (rc != EXIT_OK) return rc;
    return check_outputs(o, o->out, NULL);
}

static void config(const options *o, run_config *c)
{
    memset(c, 0, sizeof *c);
    c->name = "model";
    c->key = "model";
    c->spec = o->model_spec;
    c->seed = o->seed;
    c->epochs = o->epochs;
    c->batch = o->batch;
    c->lr = o->lr;
    c->momentum = o->momentum;
    c->weight_decay = o->weight_decay;
    c->min_lr = o->min_lr;
    c->warmup_epochs = o->warmup_epochs;
    c->clip_norm = o->clip_norm;
    c->nesterov = o->nesterov;
    c->cosine = o->cosine;
    c->optimizer = o->optimizer;
    c->temperature = 1.0f;
    c->checkpoint = o->checkpoint;
    c->resume = o->resume;
    c->stop_after = o->stop_after;
    c->normalize = o->normalize;
    run_options(o, c);
}

static int finish(const options *o, const dataset_pair *d, run_result *r, progress *p)
{
    kd_status st = par_rank() == 0 ? kd_model_save(r->model, o->out) : KD_OK;
    if (st != KD_OK) {
        char what[4200];
        snprintf(what, sizeof what, "cannot save %s", o->out);
        return fail_kd(what, st);
    }
    model_stats s;
    double acc = r->test_acc;
    int rc = fill_stats(&s, "model", r->model, o->out, d->test, acc);
    if (rc != EXIT_OK) return rc;
    char size[32];
    format_bytes((double)s.bytes, size, sizeof size);
    /* The result, printed even with --quiet. */
    printf("saved %s (%s): test accuracy %.2f%% after %d epoch%s, %.0f s\n", o->out, size, acc,
           r->hist.n, r->hist.n == 1 ? "" : "s", r->seconds);
    if (o->report_dir == NULL) return EXIT_OK;
    char subtitle[1024], data[400], proto[256];
    describe_data(o, d, data, sizeof data);
    describe_protocol(o, proto, sizeof proto);
    snprintf(subtitle, sizeof subtitle, "%s. %d epochs, %s. libkd %s, kernels %s.", data, o->epochs,
             proto, kd_version(), kd_kernels_name());
    report_series series = {"model", "#2f6db5", &r->hist};
    char title[200];
    snprintf(title, sizeof title, "Training %s", s.shape);
    report rep = {title, subtitle, NULL, &series, 1, &s, 1, 0, NULL, 0};
    rc = report_write(o->report_dir, &rep);
    if (rc == EXIT_OK) note(p, "report: %s/index.html", o->report_dir);
    return rc;
}

int cmd_train(const options *o)
{
    int rc = check_arguments(o);
    if (rc != EXIT_OK) return rc;
    progress p;
    if ((rc = progress_open(&p, o)) != EXIT_OK) return rc;
    dataset_pair d;
    if ((rc = load_data(o, 1, 1, &d)) != EXIT_OK) {
        progress_close(&p);
        return rc;
    }
    char data[400];
    describe_data(o, &d, data, sizeof data);
    note(&p, "data: %s", data);
    char proto[256];
    describe_protocol(o, proto, sizeof proto);
    note(&p, "libkd %s, kernels %s; %s", kd_version(), kd_kernels_name(), proto);
    run_config c;
    config(o, &c);
    static run_result r; /* large (the history); one per process */
    rc = run_training(&c, d.train, d.test, d.test, &p, &r);
    if (rc == EXIT_OK && r.stopped)
        note(&p, "stopped after epoch %d as asked; continue with --resume", r.hist.n);
    else if (rc == EXIT_OK)
        rc = finish(o, &d, &r, &p);
    kd_model_destroy(r.model);
    free_data(&d);
    int logged = progress_close(&p);
    return rc != EXIT_OK ? rc : logged;
}
