#!/bin/sh
# The folders of lib/ are layers (docs/ARCHITECTURE.md): each may include its own headers and those
# of the layers below it, never those above. The tool and the examples use only the public kd.h.
# usage: tests/layout/check.sh [SOURCE_DIR]
set -u
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top" || exit 1

# One grep for every include, one awk for the rules, so the check takes milliseconds.
{
    find lib -name '*.[ch]' -exec grep -H '^#include "' /dev/null {} +
    find src examples \( -name '*.c' -o -name '*.cpp' -o -name '*.h' \) \
        -exec grep -H '^#include "' /dev/null {} +
    # Files without any quoted include still need a folder the rules name.
    find lib -name '*.[ch]' | sed 's/$/:#include "kd.h"/'
} | awk -F: '
BEGIN {
    # folder: the folders its files may include (besides kd.h and the system headers)
    allow["core"] = "core"
    allow["kernels"] = "kernels"
    allow["io"] = "core io"
    allow["data"] = "core io data"
    allow["nn"] = "core kernels io nn"
    allow["optim"] = "core kernels nn optim"
    allow["quant"] = "core kernels io nn quant"
    allow["distill"] = "core kernels io data nn optim distill"
    allow["mpi"] = "" # kd_mpi: a host of the public API, like the tool (kd.h, kd_mpi.h)
    bad = 0
}
{
    file = $1
    inc = $0; sub(/^[^:]*:#include "/, "", inc); sub(/".*/, "", inc)
    n = split(file, part, "/")
    if (part[1] == "lib") {
        folder = part[2]
        if (!(folder in allow)) {
            if (!(file in told)) print "layout: " file " is in lib/" folder ", which docs/ARCHITECTURE.md does not name"
            told[file] = 1; bad = 1; next
        }
        if (inc == "kd.h" || (folder == "mpi" && inc == "kd_mpi.h")) next
        if (index(inc, "/") == 0) {
            print "layout: " file " includes \"" inc "\"; internal includes name their folder (\"core/error.h\")"
            bad = 1; next
        }
        dir = inc; sub(/\/.*/, "", dir)
        if (index(" " allow[folder] " ", " " dir " ") == 0) {
            print "layout: " file " (lib/" folder ") includes \"" inc "\"; lib/" folder " may include only: " allow[folder]
            bad = 1
        }
    } else {
        # kd.h (kd_mpi.h), or a header in the same folder as the program (src/common.h)
        if (inc == "kd.h" || inc == "kd_mpi.h" || index(inc, "/") == 0) next
        print "layout: " file " includes \"" inc "\"; the tool and the examples use only kd.h"
        bad = 1
    }
}
END {
    if (!bad) print "layout: every include of lib/, src/ and examples/ follows docs/ARCHITECTURE.md"
    exit bad
}'
