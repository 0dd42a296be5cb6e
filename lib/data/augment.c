/* Image augmentation on a batch, in place and allocation-free: random translation (equivalently a
 * random crop of a zero-padded image) and horizontal flips, each image from its own seeded stream. */
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"

/* y[i][j] = x[i - dy][j - dx], 0 outside; in place, so rows and columns are visited away from the
 * direction of the shift and every source is read before it is overwritten. */
static void shift_plane(float *p, int64_t h, int64_t w, int64_t dy, int64_t dx)
{
    for (int64_t a = 0; a < h; a++) {
        int64_t i = dy > 0 ? h - 1 - a : a, si = i - dy;
        for (int64_t b = 0; b < w; b++) {
            int64_t j = dx > 0 ? w - 1 - b : b, sj = j - dx;
            p[i * w + j] = si >= 0 && si < h && sj >= 0 && sj < w ? p[si * w + sj] : 0.0f;
        }
    }
}

static void flip_plane(float *p, int64_t h, int64_t w)
{
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w / 2; j++) {
            float t = p[i * w + j];
            p[i * w + j] = p[i * w + w - 1 - j];
            p[i * w + w - 1 - j] = t;
        }
}

kd_status kd_augment_images(float *x, int64_t batch, int64_t c, int64_t h, int64_t w,
                            kd_augment_kind kind, int32_t amount, uint64_t seed)
{
    KDI_CHECK_NULL(x);
    int64_t plane, image;
    if (batch < 1 || c < 1 || h < 1 || w < 1 || !kdi_mul_ok(h, w, &plane) ||
        !kdi_mul_ok(plane, c, &image) || !kdi_mul_ok(image, batch, &image))
        return kdi_fail(KD_ERR_ARGUMENT, "augment: batch, c, h and w must be 1 or more");
    if (kind != KD_AUGMENT_TRANSLATE && kind != KD_AUGMENT_CROP && kind != KD_AUGMENT_HFLIP)
        return kdi_fail(KD_ERR_ARGUMENT, "augment: unknown kind %d", (int)kind);
    if (kind != KD_AUGMENT_HFLIP && (amount < 0 || amount >= h || amount >= w))
        return kdi_fail(KD_ERR_ARGUMENT, "augment: shift %d must be in 0..%lld", (int)amount,
                        (long long)(h < w ? h : w) - 1);
    for (int64_t n = 0; n < batch; n++) {
        kdi_rng r;
        kdi_rng_seed(&r, kdi_rng_derive(seed, (uint64_t)n));
        float *img = x + n * c * plane;
        if (kind == KD_AUGMENT_HFLIP) {
            if (kdi_rng_below(&r, 2) == 0) continue;
            for (int64_t k = 0; k < c; k++) flip_plane(img + k * plane, h, w);
            continue;
        }
        int64_t dy = (int64_t)kdi_rng_below(&r, 2 * (uint64_t)amount + 1) - amount;
        int64_t dx = (int64_t)kdi_rng_below(&r, 2 * (uint64_t)amount + 1) - amount;
        for (int64_t k = 0; k < c; k++) shift_plane(img + k * plane, h, w, dy, dx);
    }
    return KD_OK;
}
