/* Atomic file writes: a temporary file beside the destination, flushed to disk, renamed over it. */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static kd_status io_fail(const char *what, const char *path, int err)
{
    char msg[128] = "unknown error";
    if (strerror_r(err, msg, sizeof msg) != 0) snprintf(msg, sizeof msg, "error %d", err);
    return kdi_fail(KD_ERR_IO, "%s %s: %s", what, path, msg);
}

/* Makes the rename itself durable; a failure here loses nothing already written, so it is not
 * reported. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? NULL : malloc((size_t)(slash - path) + 2);
    if (slash != NULL && dir == NULL) return;
    if (dir != NULL) {
        size_t k = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, k);
        dir[k] = '\0';
    }
    int fd = open(dir != NULL ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* A temporary file beside path (same file system, so rename is atomic), written, flushed to disk,
 * renamed over path. Any failure removes the temporary file and leaves path as it was. */
kd_status kdi_write_atomic(const char *path, int (*write)(FILE *fp, const void *ctx),
                           const void *ctx)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (tmp == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a file name");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kd_status st = io_fail("cannot create a temporary file beside", path, errno);
        free(tmp);
        return st;
    }
    (void)fchmod(fd, 0644); /* mkstemp's 0600 would hide a file from its other readers */
    int err = 0;
    FILE *fp = fdopen(fd, "wb");
    if (fp == NULL) {
        err = errno;
        close(fd);
    } else {
        errno = 0;
        if (!write(fp, ctx) || fflush(fp) != 0 || fsync(fileno(fp)) != 0) err = errno ? errno : EIO;
        if (fclose(fp) != 0 && err == 0) err = errno ? errno : EIO;
    }
    if (err == 0 && rename(tmp, path) != 0) err = errno;
    if (err != 0)
        unlink(tmp);
    else
        sync_dir(path);
    free(tmp);
    return err != 0 ? io_fail("cannot write", path, err) : KD_OK;
}
