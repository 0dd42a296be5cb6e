/* kd help for the text commands: kd train|distill|eval --text, kd generate. */
#include <string.h>

#include "text.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char train_text[] =
    "usage: kd train --text FILE --out MODEL.safetensors [--spec SPEC] [options]\n"
    "\n"
    "Trains a byte-level language model (one token a byte, vocabulary 256) on a UTF-8 text: the\n"
    "first 90% of its bytes, random windows of the model's context. Prints the validation\n"
    "cross-entropy, perplexity and bits per byte on the last 10%.\n"
    "\n"
    "  --text FILE         the corpus (UTF-8, non-empty; else exit 1)\n"
    "  --spec SPEC         the model (default: context " STR(TEXT_CONTEXT) ", width " STR(
        TEXT_TEACHER_WIDTH) ", " STR(TEXT_TEACHER_LAYERS) " pre-norm\n"
                                                          "                      transformer "
                                                          "blocks of " STR(
                                                              TEXT_TEACHER_HEADS) " heads; 'tokens "
                                                                                  "256 T | ... | "
                                                                                  "lmhead 256')\n";

static const char common_text[] =
    "  --steps N           optimizer steps (2000)\n"
    "  --batch B           windows a step (16)\n"
    "  --lr LR             AdamW peak rate (0.003), cosine decay to a tenth, warm-up, clip 1\n"
    "  --validation F      the held-out fraction at the end of the text (0.1)\n"
    "  --max-bytes N       refuse a larger text (default 1 GiB)\n"
    "  --eval-bytes N      evaluate the first N held-out bytes only (0: all)\n"
    "  --seed S            initialisation and batches (1)\n"
    "  --log FILE          JSON lines: run, step, loss, seconds\n"
    "  --log-every N       progress every N steps (100)\n"
    "  --quiet, -q         the result line only\n"
    "  --threads N         libkd's threads (default: every core; see kd help train)\n";

/* The STR() macros make clang-format scatter these lines. */
/* clang-format off */
static const char distill_text[] =
    "usage: kd distill --text FILE --out STUDENT.safetensors [--teacher MODEL | --teacher-spec "
    "SPEC]\n"
    "                  [--student SPEC] [--method NAME] [options]\n"
    "\n"
    "Distils a byte-level language model into a smaller one, token by token. Without --teacher,\n"
    "trains the teacher first (--teacher-steps). Prints teacher and student validation\n"
    "cross-entropy, perplexity and bits per byte.\n"
    "\n"
    "  --teacher FILE      a trained teacher (kd train --text); its context and vocabulary must\n"
    "                      be the student's (else exit 2)\n"
    "  --teacher-spec SPEC the teacher to train (default as kd train --text)\n"
    "  --teacher-steps N   its steps (2000)\n"
    "  --student SPEC      default: width " STR(TEXT_STUDENT_WIDTH) ", " STR(TEXT_STUDENT_LAYERS)
    " blocks of " STR(TEXT_STUDENT_HEADS) " heads, context " STR(TEXT_CONTEXT) "\n"
    "  --method NAME       (or --loss NAME) forward-kl (default, Hinton's KD per token),\n"
    "                      reverse-kl (MiniLLM), jsd (GKD), skew-kl, skew-reverse-kl\n"
    "                      (DistiLLM), tvd, logit-mse\n"
    "  --jsd-beta B        jsd: the mixture weight beta in [0, 1] (0.5, TRL's GKD)\n"
    "  --skew L            skew-kl, skew-reverse-kl: lambda in [0, 1] (0.1, DistiLLM)\n"
    "  --alpha A           weight of the teacher term; 1 - A on the next-byte labels (0.5)\n"
    "  --temperature T     softening of both distributions (1)\n"
    "  --compare           also train the student alone, for comparison\n"
    "  --attention-kl W    adds W x MiniLM's attention KL between a student attention layer's\n"
    "                      probabilities and the teacher's (0: none)\n"
    "  --attention-layers S:T  which attention layers, counted from 0 (-1: the last; -1:-1)\n"
    "  --attention-heads H mean (each side's mean over heads, default) or matched (equal heads)\n";
/* clang-format on */

static const char hidden_text[] =
    "  --hidden-cosine W   adds W x DistilBERT's cosine loss on hidden states, token by token,\n"
    "                      1 - cos(student, teacher) (0: none); a student width other than the\n"
    "                      teacher's is projected per token by a learned dense layer\n"
    "  --hidden-layers S:T[,S:T...]  the layers compared, as kd info lists them (-1: the last;\n"
    "                      default the last transformer block of each)\n";

static const char checkpoint_text[] =
    "  --checkpoint FILE   save the run's state every --log-every steps and at its end (kd\n"
    "                      distill: the teacher it trains in FILE.teacher, the student alone\n"
    "                      in FILE.alone), atomically, with FILE.run (the run's options);\n"
    "                      a checkpoint is a model file too: --teacher FILE.teacher reuses it\n"
    "  --resume            continue from --checkpoint: a run killed at any point ends with\n"
    "                      the uninterrupted run's model, byte for byte; a checkpoint of\n"
    "                      other options is refused, naming the first that differs\n"
    "  --force             start again over an existing --checkpoint (else refused)\n"
    "Not on text yet: --config.\n";

static const char report_text[] =
    "  --report DIR        DIR/index.html: held-out bits per byte along the run, the training\n"
    "                      objective, a table (bits per byte, perplexity, parameters, file size,\n"
    "                      tokens/s) and a generated sample of every model\n"
    "  --eval-every N      held-out bits per byte every N steps, on the first --eval-bytes (64 "
    "KiB\n"
    "                      by default) held-out bytes (default with --report: ten points a run)\n";

static const char eval_text[] =
    "usage: kd eval MODEL.safetensors --text FILE [--validation F] [--batch B] [--json]\n"
    "\n"
    "The validation cross-entropy (nats per byte), perplexity and bits per byte of a byte-level\n"
    "language model on the last --validation fraction (0.1) of FILE, in consecutive windows\n"
    "(--eval-bytes N: its first N bytes only). -q prints the bits per byte alone; --threads N\n"
    "as kd train.\n";

static const char generate_text[] =
    "usage: kd generate MODEL.safetensors [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                   [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
    "\n"
    "Writes the prompt and N generated bytes (200), then a newline, to stdout, from a byte-level\n"
    "language model with cached keys and values. --temperature 0.8 (0: greedy), --top-k 0 (no\n"
    "limit), --top-p 1 (nucleus sampling when < 1), --seed 1. The prompt (default a newline) must\n"
    "fit the model's context T (else exit 2); the first byte is predicted from the prompt's last\n"
    "T - 1 bytes at most, and when the context is full it slides to its last T/2 bytes. Speed\n"
    "goes to stderr.\n"
    "\n"
    "example:\n"
    "  kd train --text /usr/share/games/fortunes/fortunes --out lm.safetensors\n"
    "  kd generate lm.safetensors --prompt 'The ' --tokens 300 --top-p 0.9\n";

void text_help(FILE *f, const char *name)
{
    if (strcmp(name, "train") == 0) {
        fputs(train_text, f);
        fputs(common_text, f);
        fputs(report_text, f);
        fputs(checkpoint_text, f);
    } else if (strcmp(name, "distill") == 0) {
        fputs(distill_text, f);
        fputs(hidden_text, f);
        fputs(common_text, f);
        fputs(report_text, f);
        fputs(checkpoint_text, f);
    } else if (strcmp(name, "eval") == 0) {
        fputs(eval_text, f);
    } else {
        fputs(generate_text, f);
    }
}
