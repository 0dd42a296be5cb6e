/* Atomic file writes: a temporary file beside the destination, flushed to disk, renamed over it;
 * and the removal of the temporary files a killed save left behind. */
#include "io/atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"

static kd_status io_fail(const char *what, const char *path, int err)
{
    char msg[128] = "unknown error";
    if (strerror_r(err, msg, sizeof msg) != 0) snprintf(msg, sizeof msg, "error %d", err);
    return kdi_fail(KD_ERR_IO, "%s %s: %s", what, path, msg);
}

/* The directory of path into out (size bytes); 0 when it does not fit. No allocation, so the
 * quiet steps below (directory sync, stale files) cannot be what an allocation failure hits. */
static int dir_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    size_t k = slash == NULL ? 1 : slash == path ? 1 : (size_t)(slash - path);
    if (k + 1 > size) return 0;
    memcpy(out, slash == NULL ? "." : path, k);
    out[k] = '\0';
    return 1;
}

/* Makes the rename itself durable; a failure here loses nothing already written, so it is not
 * reported. */
static void sync_dir(const char *path)
{
    char dir[4096];
    int fd = dir_of(path, dir, sizeof dir) ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* A rename would replace whatever path names with a regular file: a pipe, a device or a socket
 * there would be lost (a symlink to one is followed, as a writer of it would). Absent, or a regular
 * file (or a symlink to one, which the rename replaces as before): KD_OK. */
static kd_status check_replaceable(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || S_ISREG(sb.st_mode)) return KD_OK;
    return kdi_fail(KD_ERR_IO,
                    "cannot write %s: it is %s, not a regular file, and a save would replace it",
                    path,
                    S_ISDIR(sb.st_mode)                          ? "a directory"
                    : S_ISFIFO(sb.st_mode)                       ? "a pipe (FIFO)"
                    : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                    : S_ISSOCK(sb.st_mode)                       ? "a socket"
                                                                 : "a special file");
}

/* ---------------------------------------------------------------- stale temporary files */

/* The time of this process's first save or resume, on the clock file systems stamp files with
 * (the coarse one on Linux): every temporary file this process makes is at least as new. */
static struct timespec first_use;
static pthread_once_t first_use_once = PTHREAD_ONCE_INIT;

static void note_first_use(void)
{
#ifdef CLOCK_REALTIME_COARSE
    if (clock_gettime(CLOCK_REALTIME_COARSE, &first_use) == 0) return;
#endif
    (void)clock_gettime(CLOCK_REALTIME, &first_use);
}

/* NAME.tmp.XXXXXX, the X from mkstemp's letters and digits. */
static int is_temp_of(const char *entry, const char *base, size_t blen)
{
    if (strncmp(entry, base, blen) != 0 || strncmp(entry + blen, ".tmp.", 5) != 0) return 0;
    const char *x = entry + blen + 5;
    for (int i = 0; i < 6; i++)
        if (!((x[i] >= 'a' && x[i] <= 'z') || (x[i] >= 'A' && x[i] <= 'Z') ||
              (x[i] >= '0' && x[i] <= '9')))
            return 0;
    return x[6] == '\0';
}

void kdi_clean_stale_temps(const char *path)
{
    pthread_once(&first_use_once, note_first_use);
    const char *slash = strrchr(path, '/'), *base = slash != NULL ? slash + 1 : path;
    size_t blen = strlen(base);
    char dir[4096];
    if (blen == 0 || !dir_of(path, dir, sizeof dir)) return;
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (!is_temp_of(e->d_name, base, blen)) continue;
        struct stat sb;
        /* Only plain files of this user made before this process first saved: never another
         * saver's file in flight in this process, nor a link, nor someone else's file. */
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
            sb.st_uid != geteuid())
            continue;
        if (sb.st_mtim.tv_sec < first_use.tv_sec ||
            (sb.st_mtim.tv_sec == first_use.tv_sec && sb.st_mtim.tv_nsec < first_use.tv_nsec))
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d != NULL) closedir(d);
}

kd_status kdi_write_atomic(const char *path, int (*write)(FILE *fp, const void *ctx),
                           const void *ctx)
{
    kd_status st = check_replaceable(path);
    if (st != KD_OK) return st;
    kdi_clean_stale_temps(path);
    size_t plen = strlen(path);
    char *tmp = kdi_malloc(plen + 16);
    if (tmp == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate a file name");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = io_fail("cannot create a temporary file beside", path, errno);
        kdi_free(tmp);
        return st;
    }
    (void)fchmod(fd, 0644); /* mkstemp's 0600 would hide a model from its other readers */
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
    /* again at the rename: the node may have appeared while the file was written */
    if (err == 0 && (st = check_replaceable(path)) == KD_OK && rename(tmp, path) != 0) err = errno;
    if (err != 0 || st != KD_OK)
        unlink(tmp);
    else
        sync_dir(path);
    kdi_free(tmp);
    return err != 0 ? io_fail("cannot write", path, err) : st;
}
