/* The kd tool on text: byte-level language models (kd train/distill/eval --text, kd generate).
 * Its own option table (cmd_text.c), apart from the image commands' (args.c). */
#ifndef KD_TOOL_TEXT_H
#define KD_TOOL_TEXT_H

#include "common.h"

/* The default byte-level language models: a 4-layer pre-norm transformer of width 128 and its
 * student of width 64 and 2 layers (about a tenth of the parameters), context 64 bytes. */
#define TEXT_CONTEXT 64
#define TEXT_TEACHER_WIDTH 128
#define TEXT_TEACHER_LAYERS 4
#define TEXT_TEACHER_HEADS 4
#define TEXT_STUDENT_WIDTH 48
#define TEXT_STUDENT_LAYERS 2
#define TEXT_STUDENT_HEADS 2

typedef struct text_options {
    const char *cmd;
    const char *text, *spec, *teacher_spec, *student_spec, *teacher_file, *out, *log_path;
    const char *model; /* eval, generate: the model file (positional) */
    const char *prompt;
    int64_t steps, teacher_steps, batch, tokens, max_bytes, eval_bytes, log_every;
    float lr, temperature, alpha, top_p, validation;
    int32_t top_k;
    int method; /* a kd_loss_kind */
    /* distill: MiniLM's attention KL as a trainer term (weight 0: none), the attention layers
     * "S:T" (-1 the last) and the heads' pairing "mean" or "matched" */
    float attention_kl;
    const char *attention_layers, *attention_heads;
    int temperature_set, alpha_set, quiet, json, compare;
    uint64_t seed;
} text_options;

/* Whether argv (after the command) asks for text mode: it holds --text. */
int is_text_command(int argc, char **argv);
/* Runs kd train|distill|eval --text ...; returns an exit code. */
int cmd_text(const char *name, int argc, char **argv);
/* kd generate MODEL --prompt "..." [...]. */
int cmd_generate(int argc, char **argv);
/* Parses argv[first..] for command name into o (defaults first); EXIT_USAGE with a message on a
 * bad option, -1 after --help. */
int text_parse(text_options *o, const char *name, int argc, char **argv, int first);
/* "tokens 256 T | embed d | posembed | L x (two residual blocks) | layernorm | lmhead 256" (untied:
 * a tied head starts from N(0, 1) embeddings, logits of size sqrt(d), and a far larger loss) */
void text_lm_spec(int64_t context, int64_t width, int layers, int heads, char *out, size_t size);
/* Loads a model file and checks that it is a byte-level language model (vocabulary 256 in and
 * out); EXIT_RUNTIME with a message otherwise. */
int text_load_model(const char *path, kd_model **out);
void text_help(FILE *f, const char *name);

#endif
