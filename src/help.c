/* kd --help and kd help COMMAND: what each command does, its options and examples. */
#include <string.h>

#include "common.h"
#include "text.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- the exit codes, one table for every command (issue 13); docs/kd.1's EXIT STATUS says the
 * same, and tests/cli/run.sh checks that it does. */
static const char exit_codes[] =
    "exit codes (the same in every command):\n"
    "  0  success\n"
    "  1  failure while running: a file missing, unreadable, malformed or unwritable\n"
    "  2  bad command line: an unknown command or option, a bad value, an option that does\n"
    "     not apply, a bad spec, a model that does not fit the data, a checkpoint of other\n"
    "     options or one that would be overwritten\n"
    "  3  training diverged or collapsed: a non-finite or exploding loss, or accuracy at\n"
    "     chance; the run is stopped with what to try, nothing is saved, the last good\n"
    "     checkpoint is kept\n"
    "  130  interrupted (Ctrl-C; 143 for SIGTERM): killed by the signal, as the shell reports\n"
    "     it (128 + the signal); the last checkpoint is kept, saves being atomic\n";

void print_usage(FILE *f)
{
    fputs("usage: kd COMMAND [OPTIONS]\n"
          "\n"
          "Knowledge distillation: train a small student to copy a large teacher, and see what\n"
          "was gained.\n"
          "\n"
          "commands:\n"
          "  distill   distil teachers into a student; with no arguments, the whole demonstration\n"
          "            on Fashion-MNIST: teacher, student alone, distilled student, comparison\n"
          "  train     train one model on labelled data\n"
          "  eval      accuracy, confusion matrix, size, latency and memory of a model file\n"
          "  predict   a model's logits, probabilities or classes on unlabelled examples\n"
          "  info      architecture, per-layer parameters and metadata of a model file\n"
          "  quantize  an int8 copy of a model (post-training), optionally compared on a test set\n"
          "  generate  text from a byte-level language model (train, distill and eval take\n"
          "            --text FILE for language models; see kd help generate)\n"
          "  export    a model as ONNX, for ONNX Runtime and other runtimes\n"
          "  prune     magnitude or channel pruning, then distillation fine-tuning\n"
          "  help      kd help COMMAND shows a command's options and examples\n"
          "\n"
          "examples:\n"
          "  kd distill                                   # the default run, under 10 minutes\n"
          "  kd train --model 784-800-800-10 --epochs 5 --out big.safetensors\n"
          "  kd distill --teacher big.safetensors --student 784-128-10 --out small.safetensors\n"
          "  kd eval small.safetensors\n"
          "  kd train --model 4-16-3 --train iris.csv --test iris.csv --label-column species \\\n"
          "           --normalize --out iris.safetensors\n"
          "\n"
          "kd --version prints the versions of the tool and the library. See also kd(1).\n"
          "\n",
          f);
    fputs(exit_codes, f);
}

static const char data_help[] =
    "data (default: Fashion-MNIST's IDX files in --data DIR):\n"
    "  --data DIR          directory with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
    "                      t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (default\n"
    "                      " DEFAULT_DATA_DIR ", from Debian's dataset-fashion-mnist)\n"
    "  --train DATA        the training set; --test DATA the test set. DATA is one of\n"
    "                      PREFIX      IDX files PREFIX-images-idx3-ubyte(.gz) and\n"
    "                                  PREFIX-labels-idx1-ubyte(.gz), or Kaggle's\n"
    "                                  PREFIX-images.idx3-ubyte, PREFIX-labels.idx1-ubyte\n"
    "                      FILE.npz    arrays x and y (numpy.savez)\n"
    "                      FILE.npy    examples; labels in --train-y / --test-y FILE.npy\n"
    "                      FILE.csv    a table; labels in --label-column NAME\n"
    "                      DIR/        an ImageFolder: DIR/CLASS/IMAGE.png|jpg, all one size\n"
    "  --x-name, --y-name  the arrays of a .npz (x, y)\n"
    "  --channels 1|3      an ImageFolder read as gray or RGB (3)\n"
    "  --normalize         store the training set's per-channel mean and std in the model,\n"
    "                      which then normalises its inputs everywhere (eval, predict)\n\n";

/* clang-format off: the STR() macros make clang-format scatter these lines */
static const char
    protocol_help
        [] =
            "training (defaults: the protocol of the libkd benchmarks):\n"
            "  --epochs N          passes over the training set (train " STR(DEFAULT_TRAIN_EPOCHS) ", distill " STR(
                DEFAULT_STUDENT_EPOCHS) ", the main job " STR(DEFAULT_MAIN_JOB_EPOCHS) ")\n"
                                        "  --batch B           examples per step (128)\n"
                                        "  --optimizer O       sgd (default), adam or adamw\n"
                                        "  --lr LR             base learning rate (0.05 for SGD, "
                                        "0.001 for Adam and AdamW)\n"
                                        "  --schedule S        cosine (default) or constant\n"
                                        "  --min-lr LR         where the cosine decay ends (0)\n"
                                        "  --warmup-epochs N   linear warm-up from 0 over N epochs "
                                        "(0; for the\n"
                                        "                      students of distill " STR(
                                            DEFAULT_DISTILL_WARMUP_EPOCHS) ", at most half the "
                                                                           "run)\n"
                                                                           "  --clip-norm C       "
                                                                           "clip the gradients' "
                                                                           "global norm to C (0: "
                                                                           "off; 5 for the students "
                                                                           "of --method dist)\n"
                                                                           "  --momentum M        "
                                                                           "SGD momentum in [0, 1) "
                                                                           "(0.9)\n"
                                                                           "  --nesterov          "
                                                                           "SGD with Nesterov "
                                                                           "momentum\n"
                                                                           "  --weight-decay WD   "
                                                                           "weight decay (0; 0.01 "
                                                                           "for AdamW, which "
                                                                           "decouples it)\n"
                                                                           "  --seed S            "
                                                                           "initial weights and "
                                                                           "batch order (1); same "
                                                                           "seed, same model\n\n";
/* clang-format on */

static const char output_help[] =
    "output:\n"
    "  --out FILE          where to save the model (safetensors, PyTorch names)\n"
    "  --checkpoint FILE   save the training state after every epoch (atomically)\n"
    "  --resume            continue from --checkpoint; ends with the same model as an\n"
    "                      uninterrupted run with the same options\n"
    "  --log FILE.jsonl    one JSON object per epoch\n"
    "  --report DIR        DIR/index.html with plots of loss and accuracy per epoch\n"
    "  --quiet, -q         no progress, only results and errors\n"
    "  --force             start again over an existing --checkpoint (else refused)\n"
    "Outputs (--out, --checkpoint, --log, --report) are checked before any data is read:\n"
    "a directory, a missing or unwritable directory is one line, exit 1, nothing trained.\n"
    "--resume may give another --epochs: more extend the run (the schedule is stretched from\n"
    "where it stopped); any other option that differs is named and refused (exit 2).\n"
    "\n"
    "run:\n"
    "  --config FILE       INI options, key = value, the long options without dashes\n"
    "                      (epochs = 5, lr = 0.1, drop-last = true); keys outside a section\n"
    "                      for every command that takes them, in [train], [distill], [eval],\n"
    "                      [predict] for that one. The command line overrides the file\n"
    "  --threads N         threads of libkd's loops and matrix products, 0 for every core\n"
    "                      (default: KD_THREADS, else OMP_NUM_THREADS, else\n"
    "                      OPENBLAS_NUM_THREADS, else every core, shared by the MPI ranks\n"
    "                      of a host)\n"
    "  --drop-last         leave out each epoch's short last batch (default: only a last\n"
    "                      batch of one example, when the model has batch norm; said)\n"
    "  --augment LIST      transform each training batch: translate=N (shift by up to N\n"
    "                      pixels), crop=N (pad N, crop back), hflip; e.g. crop=4,hflip.\n"
    "                      Images only; the teachers then run on every augmented batch\n"
    "Options that the chosen --method, --optimizer or --schedule would ignore are refused by\n"
    "name (exit 2): --temperature with mse, --beta with kd, --momentum with adam, ...\n";

static const char spec_help[] =
    "A SPEC is a libkd layer spec, \"input 784 | dense 256 | relu | dense 10\", or the short form\n"
    "784-256-10 for a ReLU MLP. Layers include input N (or CxHxW), dense N, relu, leakyrelu\n"
    "[slope], gelu, tanh, sigmoid, dropout P; kd.h lists them all.\n";

static void train_help(FILE *f)
{
    fputs("usage: kd train --model SPEC --out MODEL.safetensors [OPTIONS]\n"
          "\n"
          "Trains one model on labelled data with cross-entropy, reporting test accuracy after\n"
          "every epoch. Default " STR(DEFAULT_TRAIN_EPOCHS) " epochs.\n\n",
          f);
    fputs(spec_help, f);
    fputc('\n', f);
    fputs(data_help, f);
    fputs("model:\n  --model SPEC        the architecture (required)\n\n", f);
    fputs(protocol_help, f);
    fputs(output_help, f);
    fputs("\nexamples:\n"
          "  kd train --model 784-1200-1200-10 --epochs 20 --out teacher.safetensors\n"
          "  kd train --model \"input 784 | dense 512 | gelu | dropout 0.2 | dense 10\" \\\n"
          "           --data ~/mnist --lr 0.1 --log train.jsonl --out m.safetensors\n"
          "  kd train --model 784-256-10 --out m.safetensors --checkpoint m.ckpt   # killed?\n"
          "  kd train --model 784-256-10 --out m.safetensors --checkpoint m.ckpt --resume\n",
          f);
}

static void distill_help(FILE *f)
{
    fputs("usage: kd distill [--teacher T.safetensors ...] [--student SPEC] [OPTIONS]\n"
          "\n"
          "Trains a student on the teachers' softened outputs and the labels with Hinton's loss,\n"
          "alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, label). The\n"
          "teachers' logits on the training set are computed once and reused every epoch.\n"
          "\n"
          "With no --teacher, kd trains the teacher itself (" DEFAULT_TEACHER_SPEC ", " STR(
              DEFAULT_TEACHER_EPOCHS) " epochs) or reuses\n"
                                      "the one it trained before from its cache directory "
                                      "($XDG_CACHE_HOME/kd or ~/.cache/kd),\n"
                                      "then distils the student (" DEFAULT_STUDENT_SPEC ", " STR(
                                          DEFAULT_MAIN_JOB_EPOCHS) " epochs with DIST, unless "
                                                                   "--epochs or --method say "
                                                                   "otherwise), trains the same "
                                                                   "student "
                                                                   "alone\n"
                                                                   "with the same protocol, and "
                                                                   "prints a comparison: test "
                                                                   "accuracy, parameters, file "
                                                                   "size,\n"
                                                                   "latency per image and speed-up "
                                                                   "over the teacher. With no "
                                                                   "arguments at all this is the\n"
                                                                   "default demonstration on "
                                                                   "Fashion-MNIST.\n\n",
          f);
    fputs(spec_help, f);
    fputc('\n', f);
    fputs(data_help, f);
    fputs("distillation:\n"
          "  --teacher FILE      a trained teacher (repeat for an ensemble)\n"
          "  --teacher-weight W  ensemble weight of the --teacher before it (1)\n"
          "  --student SPEC      the student (" DEFAULT_STUDENT_SPEC ")\n"
          "  --method M          the loss: kd (Hinton's; the default with --teacher,\n"
          "                      --teacher-logits or --alpha), mse (the teachers' logits\n"
          "                      regressed, Ba and Caruana 2014), dkd (decoupled KD, Zhao et\n"
          "                      al. 2022), dist (Pearson correlations, Huang et al. 2022; the\n"
          "                      default of the main job, without them, for 5 epochs),\n"
          "                      kd-ls, dkd-ls (kd, dkd with logit standardisation, Sun et\n"
          "                      al. 2024)\n"
          /* ---- wins (issue 12): feature methods */
          "                      or a feature loss on hidden layers, added to cross-entropy\n"
          "                      (and to kd's soft term with --alpha): hint (FitNets), attention\n"
          "                      (attention transfer), rkd, sp (similarity preserving), pkt,\n"
          "                      cosine, crd (contrastive, Tian et al. 2020)\n"
          "  --student-layer I, --teacher-layer J  the layers a feature method connects, by\n"
          "                      index in the spec as kd info lists them (the penultimate);\n"
          "                      their shapes are checked before training\n"
          "  --feature-weight W  the feature term's weight (hint 1, attention 1000, rkd 1,\n"
          "                      sp 3000, pkt 30000, cosine 1, crd 0.8)\n"
          "  --auto              search the method (kd, kd-ls, dkd, dist), T, alpha and lr by\n"
          "                      successive halving on the validation split (short runs, the\n"
          "                      best half kept, epochs doubled), the best left and the\n"
          "                      default settings compared at --epochs; distil with the winner\n"
          "  --auto-trials N     trials, the default settings included (8)\n"
          "  --auto-budget E     student epochs the search may spend (8 x --epochs); the cost\n"
          "                      is printed before it starts\n"
          /* ---- end wins */
          /* ---- qat (issue 14) */
          "  --quantize int8     quantisation-aware: train with fake int8 quantisation (weights\n"
          "                      per channel, activations with tracked ranges; straight-through\n"
          "                      gradients) and write the int8 model (as kd quantize's) to --out\n"
          "  --init FILE         with --quantize: fine-tune this trained float student instead of\n"
          "                      a new one (its spec and normalisation are kept)\n"
          "  --temperature T     softmax temperature (4; 2 for kd-ls, dkd-ls; unused by mse)\n"
          "  --alpha A           weight of the teacher term in [0, 1] (0.9 for kd, 1 for mse;\n"
          "                      for dkd the TCKD weight, 1)\n"
          "  --beta B            dkd: the NCKD weight (8); dist: the inter-class weight (2)\n"
          "  --gamma G           dist: the intra-class weight (2)\n"
          "  --soft-targets-cache FILE  keep the teachers' logits in FILE and reuse them when\n"
          "                      the teachers and training set are the same\n"
          "  --teacher-spec SPEC, --teacher-epochs N  the teacher kd trains with no --teacher;\n"
          "                      with --teacher, the architecture of a plain PyTorch state dict\n"
          "  --teacher-logits FILE  the teachers' logits on the training set, computed\n"
          "                      elsewhere: .npy [n, classes] or [teachers, n, classes], or a\n"
          "                      safetensors tensor logits; replaces --teacher (no --val split)\n"
          "  --compare, --no-compare  also train the student alone (default: only when kd\n"
          "                      trains the teacher itself)\n"
          "  --cache-dir DIR     where trained teachers and logits are kept\n"
          "  --val F             hold out a seeded fraction F of the training set for\n"
          "                      validation, where per-epoch accuracy is measured (0.1; 0: none,\n"
          "                      epochs are measured on the test set)\n"
          "  --keep best|last    keep each student's best epoch on validation, or its last\n"
          "                      (last)\n"
          "  --seeds N           train the students with seeds S .. S+N-1 and report the mean\n"
          "                      and sample standard deviation of their test accuracy (1)\n\n",
          f);
    fputs(protocol_help, f);
    fputs(output_help, f);
    fputs("  (without --out the student goes to the cache directory; the path is printed)\n", f);
    fputs("\nexamples:\n"
          "  kd distill                         # teacher, student alone, distilled, comparison\n"
          "  kd distill --report report/        # the same, with report/index.html\n"
          "  kd distill --teacher t.safetensors --student 784-128-10 --temperature 2 \\\n"
          "             --alpha 0.5 --out s.safetensors\n"
          "  kd distill --teacher a.safetensors --teacher b.safetensors --teacher-weight 2 \\\n"
          "             --soft-targets-cache ab.logits --out s.safetensors\n"
          "  kd distill --train x.npy --train-y y.npy --test tx.npy --test-y ty.npy \\\n"
          "             --teacher-logits logits.npy --student 784-128-10 --out s.safetensors\n",
          f);
}

static void eval_help(FILE *f)
{
    fputs("usage: kd eval MODEL.safetensors [MODEL...] [--data DIR | --test PREFIX] [--json]\n"
          "\n"
          "Test accuracy, per-class accuracy and confusion matrix, parameter count, file size,\n"
          "latency per image at batch 1, throughput at batch 256 (--batch B to change) and the\n"
          "peak memory of the process. Several models (float, int8, pruned; up to 16): one\n"
          "table side by side, with accuracy, file size, latency and throughput.\n\n",
          f);
    fputs("data:\n"
          "  --data DIR          directory with t10k-images-idx3-ubyte.gz and\n"
          "                      t10k-labels-idx1-ubyte.gz (default " DEFAULT_DATA_DIR ")\n"
          "  --test DATA         an IDX PREFIX, FILE.npz, FILE.npy (labels: --test-y FILE.npy),\n"
          "                      FILE.csv (labels: --label-column NAME) or an ImageFolder DIR/,\n"
          "                      as for kd train (--x-name, --y-name, --channels too)\n\n",
          f);
    fputs("output:\n"
          "  --batch B           batch of the throughput measurement (256)\n"
          "  --json              one JSON object (several models: an array) instead of the table\n"
          "  --seconds S         time each latency and throughput measurement for S seconds (1)\n"
          "  --report DIR        also write DIR/index.html with the side-by-side table\n"
          "  --quiet, -q         accuracy only\n"
          "  --threads N         threads of libkd (default: every core; see kd help train)\n"
          "  --config FILE       options from an INI file (see kd help train)\n"
          "\nexamples:\n"
          "  kd eval student.safetensors\n"
          "  kd eval m.safetensors --test ~/mnist/t10k --json\n"
          "  kd eval float.safetensors int8.safetensors sparse.safetensors --report cmp\n",
          f);
}

static void predict_help(FILE *f)
{
    fputs("usage: kd predict MODEL.safetensors --input DATA [--out FILE.npy|FILE.csv]\n"
          "                  [--output logits|probs|classes]\n"
          "\n"
          "The model's outputs on unlabelled examples, one row an example in their order: its\n"
          "logits (default), softmax probabilities, or the class of the largest logit. The\n"
          "model's stored normalisation (--normalize) is applied.\n\n"
          "  --input DATA        FILE.npy, FILE.npz (array --x-name, x), FILE.csv (every column\n"
          "                      but --label-column NAME, if given), an IDX image file\n"
          "                      (...-images-idx3-ubyte.gz), an IDX prefix, or an ImageFolder\n"
          "                      DIR/ (--channels 1|3)\n"
          "  --out FILE          .npy: float32 [n, classes], or int64 [n] for classes; .csv: a\n"
          "                      header line, then a row an example. Without --out: CSV on the\n"
          "                      standard output\n"
          "  --batch B           examples per call (128)\n"
          "  --threads N         threads of libkd (default: every core; see kd help train)\n"
          "  --config FILE       options from an INI file (see kd help train)\n"
          "\nexamples:\n"
          "  kd predict m.safetensors --input new.npy --output probs --out probs.npy\n"
          "  kd predict m.safetensors --input table.csv --output classes > classes.csv\n",
          f);
}

static void info_help(FILE *f)
{
    fputs("usage: kd info MODEL.safetensors [--json]\n"
          "\n"
          "The model's spec, input and output sizes, each layer's kind, parameters and output\n"
          "size, the tensors in the file and its metadata. Reads no data set.\n"
          "\nexamples:\n"
          "  kd info student.safetensors\n",
          f);
}

int print_command_help(FILE *f, const char *name)
{
    if (strcmp(name, "info") == 0)
        info_help(f);
    else if (strcmp(name, "predict") == 0)
        predict_help(f);
    else if (strcmp(name, "generate") == 0)
        text_help(f, name);
    else if (strcmp(name, "export") == 0)
        export_help(f);
    else if (strcmp(name, "prune") == 0)
        prune_help(f);
    else if (strcmp(name, "quantize") == 0)
        quantize_help(f);
    else if (strcmp(name, "help") == 0)
        print_usage(f);
    else if (strcmp(name, "train") != 0 && strcmp(name, "distill") != 0 &&
             strcmp(name, "eval") != 0)
        return -1;
    else { /* train, distill and eval work on images and, with --text, on text */
        if (strcmp(name, "train") == 0) train_help(f);
        if (strcmp(name, "distill") == 0) distill_help(f);
        if (strcmp(name, "eval") == 0) eval_help(f);
        fputs("\non text (byte-level language models):\n", f);
        text_help(f, name);
    }
    if (strcmp(name, "help") != 0) {
        fputc('\n', f);
        fputs(exit_codes, f);
    }
    return 0;
}
