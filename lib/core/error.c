#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

/* One message per thread, so concurrent handles never see each other's failures. */
static _Thread_local char last_error[512];

kd_status kdi_fail(kd_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *kd_last_error(void) { return last_error; }

const char *kd_strerror(kd_status status)
{
    switch (status) {
    case KD_OK: return "KD_OK: success";
    case KD_ERR_ARGUMENT: return "KD_ERR_ARGUMENT: invalid argument";
    case KD_ERR_SHAPE: return "KD_ERR_SHAPE: sizes do not match";
    case KD_ERR_NOMEM: return "KD_ERR_NOMEM: out of memory";
    case KD_ERR_IO: return "KD_ERR_IO: input/output error";
    case KD_ERR_FORMAT: return "KD_ERR_FORMAT: malformed file or spec";
    case KD_ERR_NUMERIC: return "KD_ERR_NUMERIC: non-finite value";
    case KD_ERR_STATE: return "KD_ERR_STATE: call out of order";
    case KD_ERR_UNSUPPORTED: return "KD_ERR_UNSUPPORTED: not supported";
    }
    return "KD_ERR_UNKNOWN: unknown status";
}
