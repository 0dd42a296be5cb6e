/* Per-thread error detail behind kd_last_error(). */
#ifndef KDI_ERROR_H
#define KDI_ERROR_H

#include "kd.h"

/* Records a sentence for kd_last_error() on this thread and returns status, so a failing path
 * reads `return kdi_fail(KD_ERR_SHAPE, "dense expects %lld inputs, got %lld", a, b);`. */
kd_status kdi_fail(kd_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Fails with KD_ERR_ARGUMENT naming the NULL argument, and the function when it is a public one
 * (an internal helper's name would mean nothing to the caller). */
#define KDI_CHECK_NULL(p)                                                                          \
    do {                                                                                           \
        if ((p) == NULL) {                                                                         \
            int kdi_pub_ = __func__[0] == 'k' && __func__[1] == 'd' && __func__[2] == '_';         \
            return kdi_fail(KD_ERR_ARGUMENT, "%s%s%s is NULL", kdi_pub_ ? __func__ : "",           \
                            kdi_pub_ ? ": " : "", #p);                                             \
        }                                                                                          \
    } while (0)

/* Propagates a non-OK status. */
#define KDI_TRY(expr)                                                                              \
    do {                                                                                           \
        kd_status kdi_try_status_ = (expr);                                                        \
        if (kdi_try_status_ != KD_OK) return kdi_try_status_;                                      \
    } while (0)

#endif
