#!/bin/sh
# Every allocation of the library goes through lib/core/alloc.c (kd_set_allocator): no other object
# of the static library may call libc's allocator directly.
# usage: alloc_check.sh path/to/libkd.a
set -eu
bad=$(nm -A -u "$1" | grep -vE '(^|/|:)alloc\.c\.o:' |
    grep -E ' U (malloc|calloc|realloc|free|aligned_alloc|posix_memalign|memalign|valloc|strdup|strndup|reallocarray)$' || true)
if [ -n "$bad" ]; then
    echo "alloc_check: these objects call libc's allocator instead of lib/core/alloc.h:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "alloc_check: every allocation goes through lib/core/alloc.c"
