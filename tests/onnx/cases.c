/* Writes the ONNX test models of tests/onnx/run.sh into DIR: for each case NAME.onnx, an input
 * batch NAME.in and libkd's outputs for it NAME.out (raw float32), and a line of DIR/cases.txt,
 * "NAME dims of the input... " then the output's count. Weights, batch-norm statistics and
 * normalisation are random, so every operator's numbers matter.
 * usage: onnx_cases DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd.h"
#include "nn/model.h"
#include "testutil.h"

typedef struct onnx_case {
    const char *name, *spec;
    int64_t norm; /* channels of the input normalisation, 0 for none */
    int quant;    /* exported after kd_model_quantize (int8, min-max on 64 random inputs) */
} onnx_case;

static const onnx_case cases[] = {
    {"mlp", "input 784 | dense 256 | relu | dropout 0.5 | dense 10", 1, 0},
    {"activations",
     "input 20 | dense 16 | leakyrelu 0.1 | dense 16 | gelu | dense 16 | tanh | dense 16 | sigmoid "
     "| bn | layernorm eps=0.001 | dense 5",
     20, 0},
    {"cnn",
     "input 1x28x28 | conv 8 3 pad=1 | bn | relu | maxpool 2 | conv 16 3 stride=2 pad=1 bias=0 "
     "| relu | avgpool 2 stride=1 | flatten | dense 10",
     1, 0},
    {"resnet",
     "input 3x8x8 | conv 8 3 pad=1 bias=0 | bn | relu | residual(conv 8 3 pad=1 | bn | relu "
     "| conv 8 3 pad=1 | bn) | relu | residual(conv 16 3 stride=2 pad=1 | bn)(conv 16 1 stride=2 "
     "| bn) | gelu | layernorm | conv 16 3 groups=16 pad=1 | gap | flatten | dense 4",
     3, 0},
    {"mixed_ranks", "input 4x4x4 | gap | residual(flatten | dense 4) | layernorm | dense 3", 0, 0},
    {"image_out", "input 2x6x6 | conv 3 3 | sigmoid", 2, 0},
    {"transformer",
     "tokens 32 8 | embed 16 | posembed | residual(layernorm | attention 2 causal) "
     "| residual(layernorm | dense 64 | gelu | dense 16) | layernorm | lmhead 32 tied",
     0, 0},
    {"sequence",
     "sequence 6 8 | dense 12 | tanh | residual(layernorm eps=0.0001 | attention 3 dropout=0.1) "
     "| lmhead 5 | flatten | dense 3",
     0, 0},
    {"int8_mlp", "input 784 | dense 64 | relu | dense 32 | relu | dense 10", 1, 1},
    {"int8_cnn",
     "input 1x12x12 | conv 8 3 pad=1 | bn | relu | maxpool 2 | conv 8 3 stride=2 pad=1 | relu "
     "| flatten | dense 5",
     1, 1},
};

static int write_raw(const char *path, const float *x, int64_t n)
{
    FILE *fp = fopen(path, "wb");
    int ok = fp != NULL && fwrite(x, sizeof *x, (size_t)n, fp) == (size_t)n;
    return fp != NULL && fclose(fp) == 0 && ok;
}

/* Random values in every parameter and buffer, variances positive. */
static void randomize(kd_model *m, uint64_t seed)
{
    const kdi_param_list *ps = kdi_model_params(m);
    for (int32_t i = 0; i < ps->n; i++) {
        kdi_param *p = ps->items[i].p;
        if (p->value == NULL) continue;
        int var = strstr(ps->items[i].name, "running_var") != NULL;
        if (var)
            kdt_fill(p->value, p->count, seed + (uint64_t)i, 0.5f, 2.0f);
        else if (strstr(ps->items[i].name, "running_mean") != NULL ||
                 strstr(ps->items[i].name, "bias") != NULL)
            kdt_fill(p->value, p->count, seed + (uint64_t)i, -0.5f, 0.5f);
        else if (p->ndim == 1 || p->ndim == 3) /* norms' scales */
            kdt_fill(p->value, p->count, seed + (uint64_t)i, 0.5f, 1.5f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: onnx_cases DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
    FILE *list = fopen(path, "w");
    if (list == NULL) return 1;
    const int64_t batch = 3;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const onnx_case *k = &cases[c];
        kd_model *m;
        if (kd_model_create(k->spec, 7 + c, &m) != KD_OK) {
            fprintf(stderr, "%s: %s\n", k->name, kd_last_error());
            return 1;
        }
        randomize(m, 100 * c);
        if (k->norm > 0) {
            float mean[32], std[32];
            kdt_fill(mean, k->norm, 11, -0.3f, 0.3f);
            kdt_fill(std, k->norm, 12, 0.2f, 2.0f);
            if (kd_model_set_normalization(m, mean, std, k->norm) != KD_OK) return 1;
        }
        if (k->quant) {
            int64_t n = 64, size = kdi_model_in(m);
            float *calib = malloc(sizeof *calib * (size_t)(n * size));
            kd_model *q = NULL;
            kdt_fill(calib, n * size, 77 + c, -1.0f, 2.0f);
            kd_status qs = kd_model_quantize(m, calib, n, KD_CALIBRATION_MINMAX, 0.0f, &q);
            free(calib);
            if (qs != KD_OK) {
                fprintf(stderr, "%s: %s\n", k->name, kd_last_error());
                return 1;
            }
            kd_model_destroy(m);
            m = q;
        }
        int64_t in = kdi_model_in(m), out = kdi_model_out(m);
        float *x = malloc(sizeof *x * (size_t)(batch * in)),
              *y = malloc(sizeof *y * (size_t)(batch * out));
        kdt_fill(x, batch * in, 1000 + c, -1.0f, 2.0f);
        int64_t vocab = 0;
        kd_model_tokens(m, &vocab, NULL);
        for (int64_t i = 0; vocab > 0 && i < batch * in; i++) /* token ids, whole numbers */
            x[i] = (float)(((uint64_t)i * 7919u + c) % (uint64_t)vocab);
        snprintf(path, sizeof path, "%s/%s.onnx", argv[1], k->name);
        kd_status st = kd_model_predict(m, x, batch, y);
        if (st == KD_OK) st = kd_model_export_onnx(m, path);
        if (st != KD_OK) {
            fprintf(stderr, "%s: %s\n", k->name, kd_last_error());
            return 1;
        }
        snprintf(path, sizeof path, "%s/%s.in", argv[1], k->name);
        int ok = write_raw(path, x, batch * in);
        snprintf(path, sizeof path, "%s/%s.out", argv[1], k->name);
        ok = ok && write_raw(path, y, batch * out);
        if (!ok) return 1;
        kdi_shape s = m->seq.in;
        if (m->seq.seq_in && vocab == 0)
            fprintf(list, "%s %lld %lld %lld %lld\n", k->name, (long long)batch, (long long)s.c,
                    (long long)(s.h * s.w), (long long)(batch * out));
        else if (s.h * s.w > 1)
            fprintf(list, "%s %lld %lld %lld %lld %lld\n", k->name, (long long)batch,
                    (long long)s.c, (long long)s.h, (long long)s.w, (long long)(batch * out));
        else
            fprintf(list, "%s %lld %lld %lld\n", k->name, (long long)batch, (long long)s.c,
                    (long long)(batch * out));
        free(x);
        free(y);
        kd_model_destroy(m);
    }
    return fclose(list) == 0 ? 0 : 1;
}
