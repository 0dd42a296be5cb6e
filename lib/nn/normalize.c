/* Per-channel input normalisation, part of a model: x' = (x - mean[c]) / std[c] before the first
 * layer (torchvision's transforms.Normalize), so a teacher trained on normalised inputs scores the
 * same in libkd as where it was trained. Kept in the model file's metadata as text. */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "nn/model.h"

void kdi_norm_free(kdi_norm *n)
{
    kdi_free(n->mean);
    kdi_free(n->std);
    kdi_buf_free(&n->buf);
    memset(n, 0, sizeof *n);
}

/* Sets m's normalisation from checked values; nothing changes on failure. */
static kd_status set(kd_model *m, const float *mean, const float *std, int64_t channels)
{
    float *a = NULL, *b = NULL;
    if (channels > 0) {
        a = kdi_malloc(sizeof *a * (size_t)channels);
        b = kdi_malloc(sizeof *b * (size_t)channels);
        if (a == NULL || b == NULL) {
            kdi_free(a);
            kdi_free(b);
            return kdi_fail(KD_ERR_NOMEM, "cannot allocate the normalisation");
        }
        memcpy(a, mean, sizeof *a * (size_t)channels);
        memcpy(b, std, sizeof *b * (size_t)channels);
    }
    kdi_free(m->norm.mean);
    kdi_free(m->norm.std);
    m->norm.mean = a;
    m->norm.std = b;
    m->norm.channels = channels;
    return KD_OK;
}

static kd_status check(const kd_model *m, const float *mean, const float *std, int64_t channels)
{
    if (channels == 0) return KD_OK;
    if (m->seq.vocab > 0 || m->seq.seq_in)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "input normalisation is for models of 'input N' or 'input CxHxW', not "
                        "sequences or tokens");
    if (channels != 1 && channels != m->seq.in.c)
        return kdi_fail(KD_ERR_ARGUMENT,
                        "normalisation has %lld channels; the input (%lldx%lldx%lld) takes 1 or "
                        "%lld",
                        (long long)channels, (long long)m->seq.in.c, (long long)m->seq.in.h,
                        (long long)m->seq.in.w, (long long)m->seq.in.c);
    for (int64_t i = 0; i < channels; i++)
        if (!isfinite(mean[i]) || !isfinite(std[i]) || !(std[i] > 0.0f))
            return kdi_fail(KD_ERR_ARGUMENT,
                            "normalisation channel %lld: mean %g and std %g must be finite and "
                            "std > 0",
                            (long long)i, (double)mean[i], (double)std[i]);
    return KD_OK;
}

kd_status kd_model_set_normalization(kd_model *m, const float *mean, const float *std,
                                     int64_t channels)
{
    KDI_CHECK_NULL(m);
    if (channels < 0)
        return kdi_fail(KD_ERR_ARGUMENT, "channels must be 0 or more, got %lld",
                        (long long)channels);
    if (channels > 0) {
        KDI_CHECK_NULL(mean);
        KDI_CHECK_NULL(std);
    }
    KDI_TRY(check(m, mean, std, channels));
    return set(m, mean, std, channels);
}

kd_status kd_model_get_normalization(const kd_model *m, float *mean, float *std, int64_t *channels)
{
    KDI_CHECK_NULL(m);
    KDI_CHECK_NULL(channels);
    *channels = m->norm.channels;
    for (int64_t i = 0; i < m->norm.channels; i++) {
        if (mean != NULL) mean[i] = m->norm.mean[i];
        if (std != NULL) std[i] = m->norm.std[i];
    }
    return KD_OK;
}

kd_status kdi_model_normalize(kd_model *m, const float *x, int64_t batch, const float **out)
{
    int64_t n = batch * kdi_shape_size(m->seq.in), plane = m->seq.in.h * m->seq.in.w;
    int64_t per = kdi_shape_size(m->seq.in), ch = m->seq.in.c;
    float *dst;
    if (x == m->input.data) {
        dst = m->input.data; /* a training forward's own copy: in place */
    } else {
        KDI_TRY(kdi_buf_reserve(&m->norm.buf, n));
        dst = m->norm.buf.data;
    }
    const float *mean = m->norm.mean, *std = m->norm.std;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = m->norm.channels == 1 ? 0 : ((i % per) / plane) % ch;
        dst[i] = (x[i] - mean[c]) / std[c]; /* a division, as torchvision's Normalize */
    }
    *out = dst;
    return KD_OK;
}

kd_status kdi_model_copy_normalization(kd_model *dst, const kd_model *src)
{
    return set(dst, src->norm.mean, src->norm.std, src->norm.channels);
}

/* ---------------------------------------------------------------- metadata */

/* strtod and printf follow the program's LC_NUMERIC; the text here always has a '.' decimal point,
 * so it is read (and written) in the C locale, on this thread only, whatever the host set. */
static locale_t c_numeric(locale_t *old)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    *old = c != (locale_t)0 ? uselocale(c) : (locale_t)0;
    return c;
}

static void host_numeric(locale_t c, locale_t old)
{
    if (c == (locale_t)0) return;
    uselocale(old);
    freelocale(c);
}

char *kdi_norm_format(const float *v, int64_t n)
{
    size_t cap = (size_t)n * 18 + 1;
    char *s = kdi_malloc(cap), *p = s;
    if (s == NULL) return NULL;
    s[0] = '\0';
    /* %.9g: every float32 reads back exactly. */
    locale_t old, c = c_numeric(&old);
    for (int64_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - s), "%s%.9g", i ? "," : "", (double)v[i]);
    host_numeric(c, old);
    return s;
}

kd_status kdi_norm_meta(const kd_model *m, const char **keys, const char **values, int32_t *n,
                        char **mean, char **std)
{
    *mean = *std = NULL;
    if (m->norm.channels <= 0) return KD_OK;
    *mean = kdi_norm_format(m->norm.mean, m->norm.channels);
    *std = kdi_norm_format(m->norm.std, m->norm.channels);
    if (*mean == NULL || *std == NULL)
        return kdi_fail(KD_ERR_NOMEM, "cannot format the normalisation");
    keys[*n] = KDI_NORM_MEAN_KEY;
    values[(*n)++] = *mean;
    keys[*n] = KDI_NORM_STD_KEY;
    values[(*n)++] = *std;
    return KD_OK;
}

/* "a,b,c" into at most max floats; the count, or -1 when malformed. */
static int64_t parse_list(const char *s, float *out, int64_t max)
{
    int64_t n = 0;
    for (const char *p = s;;) {
        char *end;
        if (n == max || *p == '\0' || *p == ',' || *p == ' ') return -1;
        out[n++] = strtof(p, &end);
        if (end == p) return -1;
        if (*end == '\0') return n;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

kd_status kdi_norm_parse(kd_model *m, const char *mean_s, const char *std_s, const char *path)
{
    if (mean_s == NULL && std_s == NULL) return KD_OK;
    if (mean_s == NULL || std_s == NULL)
        return kdi_fail(KD_ERR_FORMAT,
                        "%s has only one of " KDI_NORM_MEAN_KEY " and " KDI_NORM_STD_KEY, path);
    int64_t max = m->seq.in.c > 0 ? m->seq.in.c : 1;
    float *a = kdi_malloc(sizeof *a * (size_t)max), *b = kdi_malloc(sizeof *b * (size_t)max);
    kd_status st =
        a == NULL || b == NULL ? kdi_fail(KD_ERR_NOMEM, "cannot read normalisation") : KD_OK;
    locale_t old, c = c_numeric(&old);
    int64_t na = st == KD_OK ? parse_list(mean_s, a, max) : 0;
    int64_t nb = st == KD_OK ? parse_list(std_s, b, max) : 0;
    host_numeric(c, old);
    if (st == KD_OK && (na < 1 || na != nb))
        st = kdi_fail(KD_ERR_FORMAT,
                      "%s: " KDI_NORM_MEAN_KEY " and " KDI_NORM_STD_KEY
                      " should be lists of 1 or %lld numbers, as many of each",
                      path, (long long)max);
    if (st == KD_OK && check(m, a, b, na) != KD_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", kd_last_error()); /* kdi_fail rewrites that buffer */
        st = kdi_fail(KD_ERR_FORMAT, "%s: bad normalisation: %s", path, why);
    }
    if (st == KD_OK) st = set(m, a, b, na);
    kdi_free(a);
    kdi_free(b);
    return st;
}
