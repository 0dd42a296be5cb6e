/* Saves are atomic: path holds the old file or the whole new one, never a part. */
#ifndef KDI_ATOMIC_H
#define KDI_ATOMIC_H

#include <stdio.h>

#include "kd.h"

/* Creates a temporary file beside path (the same file system, so rename is atomic), lets write
 * fill it (it returns 1 on success, 0 with errno set on failure), flushes it to disk and renames
 * it over path. Any failure removes the temporary file and leaves path as it was: KD_ERR_IO with
 * the system's reason. A path that is (or links to) anything but a regular file -- a pipe, a
 * device -- is refused (KD_ERR_IO) and left as it is: the rename would replace it. */
kd_status kdi_write_atomic(const char *path, int (*write)(FILE *fp, const void *ctx),
                           const void *ctx);

/* Removes the temporary files (PATH.tmp.XXXXXX) that a killed save of path left: only regular
 * files of this user older than this process's first save or resume, never another saver's file
 * in flight. Quiet: a file it cannot remove stays. kdi_write_atomic calls it first. */
void kdi_clean_stale_temps(const char *path);

#endif
