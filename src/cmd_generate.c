/* kd generate MODEL --prompt TEXT: bytes from a byte-level language model, through
 * kd_model_generate (KV-cached decoding; temperature, top-k, top-p, seeded). Longer than the
 * context, it slides: each chunk restarts from the last half-context of what is written. */
#include <stdlib.h>
#include <string.h>

#include "text.h"

int cmd_generate(int argc, char **argv)
{
    text_options o;
    int rc = text_parse(&o, "generate", argc, argv, 2);
    if (rc == -1) return EXIT_OK;
    if (rc != EXIT_OK) return rc;
    if (o.model == NULL) {
        fail_msg("a model file is required: kd generate MODEL.safetensors --prompt TEXT");
        return EXIT_USAGE;
    }
    const char *prompt = o.prompt != NULL ? o.prompt : "\n";
    int64_t plen = (int64_t)strlen(prompt);
    if (plen == 0) {
        fail_msg("--prompt is empty; give at least one byte");
        return EXIT_USAGE;
    }
    kd_model *m;
    if ((rc = text_load_model(o.model, &m)) != EXIT_OK) return rc;
    int64_t T = 0;
    kd_model_tokens(m, NULL, &T);
    if (T < 2) { /* a prompt of 1 and a byte after it do not fit */
        fail_msg("%s has a context of %lld token: generation needs at least 2", o.model,
                 (long long)T);
        kd_model_destroy(m);
        return EXIT_USAGE;
    }
    if (plen > T) {
        fail_msg("the prompt is %lld bytes, longer than the model's context of %lld",
                 (long long)plen, (long long)T);
        kd_model_destroy(m);
        return EXIT_USAGE;
    }
    int64_t total = plen + o.tokens;
    int32_t *all = malloc(sizeof *all * (size_t)total);
    if (all == NULL) {
        kd_model_destroy(m);
        fail_msg("cannot allocate %lld tokens", (long long)total);
        return EXIT_RUNTIME;
    }
    for (int64_t i = 0; i < plen; i++) all[i] = (unsigned char)prompt[i];
    int64_t len = plen;
    kd_status st = KD_OK;
    double start = now_seconds();
    for (uint64_t chunk = 0; st == KD_OK && len < total; chunk++) {
        /* the context a chunk starts from: the whole prompt, less its first byte when it fills
         * the context (a full prompt had lost its first half); then the last T/2 bytes, so that
         * each re-read of the context yields T/2 new bytes */
        int64_t keep = len < T ? len : chunk == 0 ? T - 1 : T / 2;
        int64_t n = total - len < T - keep ? total - len : T - keep;
        st = kd_model_generate(m, all + len - keep, keep, n, o.temperature, o.top_k, o.top_p,
                               o.seed + chunk * 0x9E3779B97F4A7C15ULL, all + len);
        if (st == KD_OK) len += n;
    }
    double seconds = now_seconds() - start;
    kd_model_destroy(m);
    if (st != KD_OK) {
        free(all);
        char what[4200];
        snprintf(what, sizeof what, "generation from %s failed", o.model);
        return fail_kd(what, st);
    }
    char *out = malloc((size_t)total + 1);
    for (int64_t i = 0; out != NULL && i < total; i++) out[i] = (char)all[i];
    if (out != NULL) {
        fwrite(out, 1, (size_t)total, stdout);
        fputc('\n', stdout);
    }
    fprintf(stderr, "kd generate: %lld tokens in %.3f s (%.0f tokens/s)\n", (long long)o.tokens,
            seconds, seconds > 0 ? (double)o.tokens / seconds : 0.0);
    free(out);
    free(all);
    return EXIT_OK;
}
