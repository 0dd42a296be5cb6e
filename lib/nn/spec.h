/* The model spec language: "input 1x28x28 | conv 32 3 pad=1 | relu | flatten | dense 10".
 * Layers are separated by '|'; a layer is a kind, then positional or key=value tokens, then up to two
 * parenthesised bodies for containers: "residual(conv 16 3 pad=1 | relu) (conv 16 1)". */
#ifndef KDI_SPEC_H
#define KDI_SPEC_H

#include <stdint.h>

#include "kd.h"

#define KDI_MAX_ARGS 12
#define KDI_MAX_SPEC 65536
#define KDI_MAX_DEPTH 16

typedef struct kdi_args {
    char kind[32];
    int32_t n;
    char tok[KDI_MAX_ARGS][48];
    const char *body[2]; /* text inside the parentheses, NUL-terminated; NULL when absent */
    int32_t nbody;
    /* Set by the chain builder, not parsed: the layer's input is a sequence [T = in.c,
     * d = in.h * in.w] (per-token layers act on its T rows), and, when vocab > 0, token ids in
     * 0..vocab-1 carried as floats ([T], in.h == in.w == 1). */
    int32_t seq;
    int64_t vocab;
} kdi_args;

/* Splits a spec into layer texts at top-level '|'. *parts is one heap block holding the array and
 * the strings: free it once. KD_ERR_FORMAT on unbalanced parentheses, empty layers, over-long text. */
kd_status kdi_spec_split(const char *spec, char ***parts, int32_t *n);
/* Parses one layer text into args (bodies point into text, which must outlive args). */
kd_status kdi_spec_parse_layer(char *text, kdi_args *args);

/* Reads an integer argument: key=value if present, else positional token pos (pos < 0: key only),
 * else def when has_def, else KD_ERR_FORMAT. Checks lo <= value <= hi. */
kd_status kdi_args_int(const kdi_args *a, int pos, const char *key, int has_def, int64_t def,
                       int64_t lo, int64_t hi, int64_t *out);
kd_status kdi_args_float(const kdi_args *a, int pos, const char *key, int has_def, float def,
                         float lo, float hi, float *out);
/* Rejects tokens beyond max_pos positional ones and keys not in keys (NULL-terminated). */
kd_status kdi_args_check(const kdi_args *a, int max_pos, const char *const *keys, int max_body);
/* 1 when a bare word (such as "causal" or "tied") is among the tokens. */
int kdi_args_flag(const kdi_args *a, const char *word);
/* Parses "784" or "1x28x28" (C x H x W). */
kd_status kdi_parse_dims(const char *text, int64_t *c, int64_t *h, int64_t *w);

#endif
