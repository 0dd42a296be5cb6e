/* kd info: what is in a model file, without any data. */
#include <string.h>

#include "common.h"

/* The file's arrays and metadata come from kd_tensors_load: kd_model_load has already accepted the
 * file, so every array is one of the dtypes it reads. */
static const char *const dtype_names[] = {"F32", "I32", "I64", "I8", "U8"};

static void print_tensor(FILE *f, const kd_tensors *h, int32_t i)
{
    const char *name = "";
    kd_dtype dt = KD_DTYPE_F32;
    int32_t ndim = 0;
    int64_t dims[KD_TENSORS_MAX_DIMS];
    kd_tensors_name(h, i, &name);
    kd_tensors_info(h, name, &dt, &ndim, dims);
    fprintf(f, "  %-20s %-4s [", name, (unsigned)dt < 5 ? dtype_names[dt] : "?");
    for (int32_t k = 0; k < ndim; k++) fprintf(f, "%s%lld", k ? ", " : "", (long long)dims[k]);
    fputs("]\n", f);
}

static void meta_at(const kd_tensors *h, int32_t i, const char **key, const char **value)
{
    *key = *value = "";
    kd_tensors_meta_key(h, i, key);
    kd_tensors_get_meta(h, *key, value);
    if (*value == NULL) *value = "";
}

static void print_text(const char *path, kd_model *m, const kd_tensors *h)
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
    const char *optimizer = NULL;
    if (h != NULL) kd_tensors_get_meta(h, "kd.checkpoint", &optimizer);
    if (optimizer != NULL) { /* kd_trainer_save's file: the student, then the trainer's state */
        const void *data = NULL;
        int64_t step = -1, bytes = 0;
        if (kd_tensors_data(h, "optimizer.step", &data, &bytes) == KD_OK && bytes == 8)
            memcpy(&step, data, 8);
        printf("checkpoint    a training checkpoint: the model below, with %s state after step "
               "%lld (--resume continues it)\n",
               optimizer, (long long)step);
    }
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
    int32_t quantized = 0;
    kd_model_is_quantized(m, &quantized);
    printf("parameters    %s (%s)\n\n", count,
           quantized ? "int8 weights, int32 biases; float32 scales" : "float32");
    printf("layer  kind          params    output\n");
    for (int32_t i = 0; i < layers; i++) {
        const char *kind;
        int64_t p, o;
        if (kd_model_layer_info(m, i, &kind, &p, &o) != KD_OK) break;
        format_count(p, count, sizeof count);
        printf("%5d  %-10s %9s %9lld\n", (int)i, kind, count, (long long)o);
    }
    if (h == NULL) return;
    int32_t nt = 0, nm = 0;
    kd_tensors_count(h, &nt);
    kd_tensors_meta_count(h, &nm);
    printf("\ntensors (%d)\n", (int)nt);
    for (int32_t i = 0; i < nt; i++) print_tensor(stdout, h, i);
    printf("\nmetadata\n");
    for (int32_t i = 0; i < nm; i++) {
        const char *key, *value;
        meta_at(h, i, &key, &value);
        printf("  %-20s %s\n", key, value);
    }
}

static void print_json(const char *path, kd_model *m, const kd_tensors *h)
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
    int32_t nm = 0;
    if (h != NULL) kd_tensors_meta_count(h, &nm);
    for (int32_t i = 0; i < nm; i++) {
        const char *key, *value;
        meta_at(h, i, &key, &value);
        printf("%s", i ? "," : "");
        json_string(stdout, key);
        putchar(':');
        json_string(stdout, value);
    }
    printf("}}\n");
}

int cmd_info(const options *o)
{
    kd_model *m;
    int loaded = load_model(o->positional, &m);
    if (loaded != EXIT_OK) return loaded;
    kd_tensors *h = NULL;
    if (kd_tensors_load(o->positional, &h) != KD_OK) h = NULL; /* the listing is left out */
    if (o->json)
        print_json(o->positional, m, h);
    else
        print_text(o->positional, m, h);
    kd_tensors_destroy(h);
    kd_model_destroy(m);
    return EXIT_OK;
}
