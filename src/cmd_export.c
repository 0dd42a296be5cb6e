/* kd export MODEL --format onnx --out FILE: a model file in a deployment format, through the
 * library's exporters (kd_model_export_onnx). Parses its own few options. */
#include <string.h>

#include "common.h"

void export_help(FILE *f)
{
    fputs("usage: kd export MODEL.safetensors --format onnx --out FILE.onnx\n"
          "\n"
          "Writes the model as ONNX (IR 8, operator set 17) for ONNX Runtime and other\n"
          "runtimes: one input \"input\" ([N, C, H, W], [N, F], [N, T, D] or token ids as\n"
          "floats [N, T]), one output \"logits\", the model's input normalisation inside\n"
          "the graph: the same numbers as kd predict. The file is written atomically.\n"
          "\noptions:\n"
          "  --format onnx   the format (onnx, the only one so far)\n"
          "  --out FILE      where to write it (required)\n"
          "\nexamples:\n"
          "  kd export student.safetensors --format onnx --out student.onnx\n",
          f);
}

int cmd_export(int argc, char **argv)
{
    const char *model = NULL, *format = "onnx", *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            export_help(stdout);
            return EXIT_OK;
        }
        if (strcmp(a, "--format") == 0 || strcmp(a, "--out") == 0) {
            if (i + 1 == argc) {
                fail_msg("%s needs a value", a);
                return EXIT_USAGE;
            }
            *(strcmp(a, "--format") == 0 ? &format : &out) = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fail_msg("unknown option '%s' (see 'kd help export')", a);
            return EXIT_USAGE;
        } else if (model == NULL) {
            model = a;
        } else {
            fail_msg("one model at a time: '%s' after '%s'", a, model);
            return EXIT_USAGE;
        }
    }
    if (model == NULL || out == NULL) {
        fail_msg("usage: kd export MODEL.safetensors --format onnx --out FILE.onnx");
        return EXIT_USAGE;
    }
    if (strcmp(format, "onnx") != 0) {
        fail_msg("--format %s: the formats are onnx", format);
        return EXIT_USAGE;
    }
    const char *in[] = {model};
    int rc = check_not_input("--out", out, in, 1);
    if (rc == EXIT_OK) rc = check_output(out);
    if (rc != EXIT_OK) return rc;
    kd_model *m;
    int loaded = load_model(model, &m);
    if (loaded != EXIT_OK) return loaded;
    kd_status st = kd_model_export_onnx(m, out);
    kd_model_destroy(m);
    if (st != KD_OK) {
        char what[4200];
        snprintf(what, sizeof what, "cannot export %s", model);
        return fail_kd(what, st);
    }
    char size[32];
    format_bytes((double)file_size(out), size, sizeof size);
    printf("wrote %s (%s, ONNX opset 17)\n", out, size);
    return EXIT_OK;
}
