/* Budgets against hostile input: a file or spec may not make the library allocate more than these. */
#include "core/limits.h"

#include <stdatomic.h>

#include "core/error.h"

static _Atomic int64_t limits[2] = {1LL << 28, 1LL << 33};

static int known(kd_limit key)
{
    return key == KD_LIMIT_MODEL_VALUES || key == KD_LIMIT_FILE_BYTES;
}

kd_status kd_set_limit(kd_limit key, int64_t value)
{
    if (!known(key)) return kdi_fail(KD_ERR_ARGUMENT, "kd_set_limit: unknown key %d", (int)key);
    if (value < 1)
        return kdi_fail(KD_ERR_ARGUMENT, "kd_set_limit: value %lld, expected 1 or more",
                        (long long)value);
    atomic_store_explicit(&limits[key], value, memory_order_relaxed);
    return KD_OK;
}

kd_status kd_get_limit(kd_limit key, int64_t *value)
{
    KDI_CHECK_NULL(value);
    if (!known(key)) return kdi_fail(KD_ERR_ARGUMENT, "kd_get_limit: unknown key %d", (int)key);
    *value = atomic_load_explicit(&limits[key], memory_order_relaxed);
    return KD_OK;
}

int64_t kdi_limit(kd_limit key) { return atomic_load_explicit(&limits[key], memory_order_relaxed); }

/* Per thread: builds on distinct threads never share a budget. */
static _Thread_local struct {
    int depth;
    int64_t left, total, cap;
    int capped;
} build;

void kdi_budget_cap(int64_t values) { build.cap = values; }

void kdi_budget_enter(void)
{
    if (build.depth++ > 0) return;
    int64_t limit = kdi_limit(KD_LIMIT_MODEL_VALUES);
    build.capped = build.cap > 0 && build.cap < limit;
    build.total = build.left = build.capped ? build.cap : limit;
    build.cap = 0;
}

void kdi_budget_leave(void) { build.depth--; }

kd_status kdi_budget_take(int64_t count, const char *what)
{
    int64_t left = build.depth > 0 ? build.left : kdi_limit(KD_LIMIT_MODEL_VALUES);
    if (count > left) {
        if (build.depth > 0 && build.capped)
            return kdi_fail(KD_ERR_FORMAT,
                            "%s would take the model past the %lld values its file holds data for",
                            what, (long long)build.total);
        return kdi_fail(KD_ERR_FORMAT,
                        "%s would take the model past %lld values (KD_LIMIT_MODEL_VALUES)", what,
                        (long long)(build.depth > 0 ? build.total : left));
    }
    if (build.depth > 0) build.left -= count;
    return KD_OK;
}
