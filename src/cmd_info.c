/* kd info: what is in a model file, without any data. */
#include <string.h>

#include "common.h"
#include "stheader.h"

static void print_shape(FILE *f, const st_tensor *t)
{
    fputc('[', f);
    for (int i = 0; i < t->rank; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    fputc(']', f);
}

static void print_text(const char *path, kd_model *m, const st_header *h)
{
    int64_t in, out, params;
    int32_t layers;
    char shape[128], size[32], count[32];
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &out);
    kd_model_param_count(m, &params);
    kd_model_layer_count(m, &layers);
    model_shape_name(m, shape, sizeof shape);
    format_bytes((double)file_size(path), size, sizeof size);
    format_count(params, count, sizeof count);
    printf("file          %s (%s)\n", path, size);
    printf("spec          %s\n", kd_model_spec(m));
    printf("architecture  %s\n", shape);
    int64_t vocab, length;
    kd_model_tokens(m, &vocab, &length);
    if (vocab > 0) {
        printf("input         %lld token ids per example, vocabulary %lld\n", (long long)length,
               (long long)vocab);
        printf("output        %lld positions x %lld values\n", (long long)length,
               (long long)(out / length));
    } else {
        printf("input         %lld values per example\n", (long long)in);
        printf("output        %lld classes\n", (long long)out);
    }
    printf("parameters    %s (float32)\n\n", count);
    printf("layer  kind          params    output\n");
    for (int32_t i = 0; i < layers; i++) {
        const char *kind;
        int64_t p, o;
        if (kd_model_layer_info(m, i, &kind, &p, &o) != KD_OK) break;
        format_count(p, count, sizeof count);
        printf("%5d  %-10s %9s %9lld\n", (int)i, kind, count, (long long)o);
    }
    if (h == NULL) return;
    printf("\ntensors (%d)\n", h->total_tensors);
    for (int i = 0; i < h->ntensors; i++) {
        printf("  %-20s %-4s ", h->tensors[i].name, h->tensors[i].dtype);
        print_shape(stdout, &h->tensors[i]);
        putchar('\n');
    }
    printf("\nmetadata\n");
    for (int i = 0; i < h->nmeta; i++) printf("  %-20s %s\n", h->meta[i].key, h->meta[i].value);
}

static void print_json(const char *path, kd_model *m, const st_header *h)
{
    int64_t in, out, params;
    int32_t layers;
    kd_model_input_size(m, &in);
    kd_model_output_size(m, &out);
    kd_model_param_count(m, &params);
    kd_model_layer_count(m, &layers);
    printf("{\"file\":");
    json_string(stdout, path);
    printf(",\"file_bytes\":%lld,\"spec\":", (long long)file_size(path));
    json_string(stdout, kd_model_spec(m));
    printf(",\"input\":%lld,\"output\":%lld,\"params\":%lld,\"layers\":[", (long long)in,
           (long long)out, (long long)params);
    for (int32_t i = 0; i < layers; i++) {
        const char *kind;
        int64_t p, o;
        if (kd_model_layer_info(m, i, &kind, &p, &o) != KD_OK) break;
        printf("%s{\"kind\":\"%s\",\"params\":%lld,\"output\":%lld}", i ? "," : "", kind,
               (long long)p, (long long)o);
    }
    printf("],\"metadata\":{");
    for (int i = 0; h != NULL && i < h->nmeta; i++) {
        printf("%s", i ? "," : "");
        json_string(stdout, h->meta[i].key);
        putchar(':');
        json_string(stdout, h->meta[i].value);
    }
    printf("}}\n");
}

int cmd_info(const options *o)
{
    kd_model *m;
    kd_status st = kd_model_load(o->positional, &m);
    if (st != KD_OK) {
        char what[4200];
        snprintf(what, sizeof what, "cannot load %s", o->positional);
        return fail_kd(what, st);
    }
    static st_header h; /* large; one per process */
    int have = st_read_header(o->positional, &h) == 0;
    if (o->json)
        print_json(o->positional, m, have ? &h : NULL);
    else
        print_text(o->positional, m, have ? &h : NULL);
    kd_model_destroy(m);
    return EXIT_OK;
}
