/* kd distill --method for the feature losses (issue 12): which kind each name selects, its
 * default weight, the layers it connects (by index in the spec, as kd info lists them), the
 * regressor that makes the shapes meet, and the check of both shapes before any training. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const struct {
    const char *name, *title;
    int kind;
    /* RepDistiller's CIFAR-100 weights (Tian et al. 2020, their train_student.py), but the hint's:
     * their 100 collapsed a one-epoch MLP run of the CLI tests, 1 did not */
    float weight;
} methods[] = {
    {"hint", "FitNets hint", KD_FEATURE_HINT, 1.0f},
    {"attention", "attention transfer", KD_FEATURE_ATTENTION, 1000.0f},
    {"rkd", "relational KD", KD_FEATURE_RKD, 1.0f},
    {"sp", "similarity preserving", KD_FEATURE_SIMILARITY, 3000.0f},
    {"pkt", "PKT", KD_FEATURE_PKT, 30000.0f},
    {"cosine", "cosine embedding", KD_FEATURE_COSINE, 1.0f},
    {"crd", "CRD", KD_FEATURE_CRD, 0.8f},
};

#define NMETHODS (sizeof methods / sizeof methods[0])

int feature_method(const char *name)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (strcmp(name, methods[i].name) == 0) return methods[i].kind;
    return -1;
}

const char *feature_method_name(int kind)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (methods[i].kind == kind) return methods[i].name;
    return "?";
}

const char *feature_title(int kind)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (methods[i].kind == kind) return methods[i].title;
    return "?";
}

float feature_default_weight(int kind)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (methods[i].kind == kind) return methods[i].weight;
    return 1.0f;
}

/* Layer i's output shape, from one forward of a zero example. */
static int layer_shape(kd_model *m, const char *who, int32_t i, int64_t shape[3])
{
    int64_t in = 0, out = 0, b;
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &out);
    float *x = calloc((size_t)in, sizeof *x), *z = calloc((size_t)out, sizeof *z);
    const float *f;
    kd_status st = x != NULL && z != NULL ? kd_model_predict(m, x, 1, z) : KD_ERR_NOMEM;
    if (st == KD_OK) st = kd_model_feature(m, i, &f, &b, &shape[0], &shape[1], &shape[2]);
    free(x);
    free(z);
    if (st == KD_OK) return EXIT_OK;
    char what[100];
    snprintf(what, sizeof what, "the %s's layer %d", who, (int)i);
    return fail_kd(what, st);
}

static int layer_index(kd_model *m, const char *who, const char *opt, int given, int32_t *out)
{
    int32_t count = 0;
    kd_model_layer_count(m, &count);
    /* by default the layer that feeds the last one: the penultimate representation */
    int32_t i = given >= 0 ? (int32_t)given : count - 2;
    if (i < 0 || i >= count - 1) {
        fail_msg("%s %d: the %s has layers 0 to %d and the last one (%d) is its output; name a "
                 "hidden layer (kd info lists them)",
                 opt, (int)i, who, (int)count - 1, (int)count - 1);
        return EXIT_USAGE;
    }
    *out = i;
    return EXIT_OK;
}

int feature_plan(const options *o, kd_model *student, kd_model *teacher, feature_term *out)
{
    memset(out, 0, sizeof *out);
    out->kind = -1;
    if (o->feature < 0) return EXIT_OK;
    int rc = layer_index(student, "student", "--student-layer", o->student_layer, &out->student);
    if (rc == EXIT_OK)
        rc = layer_index(teacher, "teacher", "--teacher-layer", o->teacher_layer, &out->teacher);
    int64_t s[3], t[3];
    if (rc == EXIT_OK) rc = layer_shape(student, "student", out->student, s);
    if (rc == EXIT_OK) rc = layer_shape(teacher, "teacher", out->teacher, t);
    if (rc != EXIT_OK) return rc;
    int kind = o->feature;
    int64_t ss = s[0] * s[1] * s[2], ts = t[0] * t[1] * t[2];
    int spatial = s[1] * s[2] > 1;
    if (kind == KD_FEATURE_ATTENTION && (s[1] != t[1] || s[2] != t[2] || s[1] * s[2] < 2)) {
        fail_msg("--method attention: the student's layer %d gives %lldx%lldx%lld and the "
                 "teacher's layer %d gives %lldx%lldx%lld; attention transfer needs maps of the "
                 "same height x width (above 1x1): choose other layers with --student-layer and "
                 "--teacher-layer",
                 (int)out->student, (long long)s[0], (long long)s[1], (long long)s[2],
                 (int)out->teacher, (long long)t[0], (long long)t[1], (long long)t[2]);
        return EXIT_USAGE;
    }
    int pointwise = kind == KD_FEATURE_HINT || kind == KD_FEATURE_COSINE || kind == KD_FEATURE_CRD;
    if (pointwise && (ss != ts || kind == KD_FEATURE_CRD || kind == KD_FEATURE_HINT)) {
        /* the student's projection head: FitNets' regressor, CRD's embedding */
        if (spatial && s[1] == t[1] && s[2] == t[2])
            snprintf(out->regressor, sizeof out->regressor, "conv %lld 1", (long long)t[0]);
        else
            snprintf(out->regressor, sizeof out->regressor, "%sdense %lld",
                     spatial ? "flatten | " : "", (long long)ts);
    }
    if (ts > 65536 && kind == KD_FEATURE_CRD) {
        fail_msg("--method crd: the teacher's layer %d gives %lldx%lldx%lld = %lld values, too "
                 "wide for CRD's memory; choose a narrower --teacher-layer",
                 (int)out->teacher, (long long)t[0], (long long)t[1], (long long)t[2],
                 (long long)ts);
        return EXIT_USAGE;
    }
    out->kind = kind;
    out->weight = o->feature_weight >= 0 ? o->feature_weight : feature_default_weight(kind);
    snprintf(out->shapes, sizeof out->shapes,
             "student layer %d (%lldx%lldx%lld) -> teacher layer %d (%lldx%lldx%lld)%s%s",
             (int)out->student, (long long)s[0], (long long)s[1], (long long)s[2],
             (int)out->teacher, (long long)t[0], (long long)t[1], (long long)t[2],
             out->regressor[0] != '\0' ? " through " : "", out->regressor);
    return EXIT_OK;
}
