/* Datasets from folders of images in torchvision's ImageFolder layout: ROOT/CLASS/IMAGE, classes
 * and files sorted by name, PNG decoded by libpng and JPEG by libjpeg(-turbo). Both libraries
 * report errors through longjmp; their handlers here record a sentence and never print. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* After stdio.h, which jpeglib.h needs and does not include. */
#include <jpeglib.h>
#include <png.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/tensor.h"
#include "data/dataset.h"

#define MAX_SIDE 65536
/* Per image, checked from the header before the pixels are allocated: 16.7 M pixels (4096 x 4096),
 * so a small hostile file cannot ask for more than 48 MB. */
#define MAX_PIXELS (UINT64_C(1) << 24)
#define MAX_VALUES (INT64_C(1) << 31)

/* ---------------------------------------------------------------- listing */

typedef struct names {
    char **v;
    int64_t n, cap;
} names;

static void names_free(names *s)
{
    for (int64_t i = 0; i < s->n; i++) kdi_free(s->v[i]);
    kdi_free(s->v);
    memset(s, 0, sizeof *s);
}

static int names_add(names *s, const char *name)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 32;
        char **v = kdi_realloc(s->v, sizeof *v * (size_t)cap);
        if (v == NULL) return 0;
        s->v = v;
        s->cap = cap;
    }
    size_t len = strlen(name) + 1;
    if ((s->v[s->n] = kdi_malloc(len)) == NULL) return 0;
    memcpy(s->v[s->n++], name, len);
    return 1;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = kdi_malloc(a + b + 2);
    if (p == NULL) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcasecmp(dot + 1, "png") == 0 || strcasecmp(dot + 1, "jpg") == 0 ||
                           strcasecmp(dot + 1, "jpeg") == 0);
}

/* Entries of dir (not starting with '.') that are directories (dirs) or image files, sorted. */
static kd_status list(const char *dir, int dirs, names *out)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return kdi_fail(KD_ERR_IO, "cannot open the directory %s: %s", dir, strerror(errno));
    kd_status st = KD_OK;
    for (struct dirent *e; st == KD_OK && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char *p = join(dir, e->d_name);
        struct stat sb;
        if (p == NULL) {
            st = kdi_fail(KD_ERR_NOMEM, "cannot allocate a path");
            break;
        }
        int keep = stat(p, &sb) == 0 &&
                   (dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode) && has_image_ext(e->d_name));
        kdi_free(p);
        if (keep && !names_add(out, e->d_name)) st = kdi_fail(KD_ERR_NOMEM, "cannot list %s", dir);
    }
    closedir(d);
    if (st == KD_OK && out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_name);
    return st;
}

/* ---------------------------------------------------------------- decoding */

/* An image as bytes [h, w, channels], channels 1 (gray) or 3 (RGB). On entry h and w are the size
 * wanted (0: any), checked from the header before anything is allocated. */
typedef struct image {
    int64_t w, h;
    unsigned char *px;
} image;

/* 1, and a sentence, when an image of h x w is not the wanted size of im. */
static int size_check(const image *im, uint64_t h, uint64_t w, char *msg, size_t cap)
{
    if (im->h == 0 || (h == (uint64_t)im->h && w == (uint64_t)im->w)) return 0;
    snprintf(msg, cap,
             "is %llux%llu (height x width); every image must be %lldx%lld (resize them "
             "first)",
             (unsigned long long)h, (unsigned long long)w, (long long)im->h, (long long)im->w);
    return 1;
}

typedef struct png_err {
    jmp_buf jb;
    int shape; /* the failure is a size other than the one wanted */
    char msg[160];
} png_err;

static void png_on_error(png_structp p, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(p);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg)
{
    (void)p;
    (void)msg; /* the library never prints */
}

static kd_status decode_png(FILE *fp, const char *path, int channels, image *im)
{
    png_err err = {.msg = ""};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
    png_infop info = png != NULL ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return kdi_fail(KD_ERR_NOMEM, "cannot start libpng for %s", path);
    }
    /* volatile: read after a longjmp back into this frame. */
    unsigned char *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(err.jb)) {
        kdi_free(px);
        kdi_free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (err.shape) return kdi_fail(KD_ERR_SHAPE, "%s %s", path, err.msg);
        return kdi_fail(KD_ERR_FORMAT, "%s is not a readable PNG: %s", path, err.msg);
    }
    png_init_io(png, fp);
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    err.shape = size_check(im, h, w, err.msg, sizeof err.msg);
    if (err.shape) longjmp(err.jb, 1);
    if ((uint64_t)w * h > MAX_PIXELS) png_error(png, "more than 2^24 pixels");
    int color = png_get_color_type(png, info);
    /* Everything to 8-bit gray or RGB, alpha dropped (composited on nothing, as PIL's convert). */
    png_set_strip_16(png);
    png_set_packing(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    int gray = color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA;
    if (channels == 3 && gray) png_set_gray_to_rgb(png);
    /* ITU-R BT.601 luma, as PIL's convert("L"): 0.299 R + 0.587 G + 0.114 B. */
    if (channels == 1 && !gray) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != channels)
        png_error(png, "unexpected channel count after conversion");
    size_t stride = (size_t)w * (size_t)channels;
    px = kdi_malloc(stride * h);
    rows = kdi_malloc(sizeof *rows * h);
    if (px == NULL || rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = px + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    kdi_free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    im->w = w;
    im->h = h;
    im->px = px;
    return KD_OK;
}

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    int shape;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    e->mgr.format_message(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr c) { (void)c; /* warnings: never printed */ }

static void jpeg_fail(jpeg_err *e, const char *msg)
{
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static kd_status decode_jpeg(FILE *fp, const char *path, int channels, image *im)
{
    struct jpeg_decompress_struct j;
    jpeg_err err;
    j.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_on_error;
    err.mgr.output_message = jpeg_on_message;
    unsigned char *volatile px = NULL;
    if (setjmp(err.jb)) {
        kdi_free(px);
        jpeg_destroy_decompress(&j);
        if (err.shape) return kdi_fail(KD_ERR_SHAPE, "%s %s", path, err.msg);
        return kdi_fail(KD_ERR_FORMAT, "%s is not a readable JPEG: %s", path, err.msg);
    }
    jpeg_create_decompress(&j);
    jpeg_stdio_src(&j, fp);
    jpeg_read_header(&j, TRUE);
    err.shape = size_check(im, j.image_height, j.image_width, err.msg, sizeof err.msg);
    if (err.shape) longjmp(err.jb, 1);
    if ((uint64_t)j.image_width * j.image_height > MAX_PIXELS)
        jpeg_fail(&err, "more than 2^24 pixels");
    j.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&j);
    if (j.output_components != channels) jpeg_fail(&err, "cannot convert its colour space");
    size_t stride = (size_t)j.output_width * (size_t)channels;
    px = kdi_malloc(stride * j.output_height);
    if (px == NULL) jpeg_fail(&err, "out of memory");
    while (j.output_scanline < j.output_height) {
        JSAMPROW row = px + (size_t)j.output_scanline * stride;
        jpeg_read_scanlines(&j, &row, 1);
    }
    jpeg_finish_decompress(&j);
    im->w = j.output_width;
    im->h = j.output_height;
    jpeg_destroy_decompress(&j);
    im->px = px;
    return KD_OK;
}

/* By content, not name: PNG's signature or JPEG's SOI marker. */
static kd_status decode(const char *path, int channels, image *im)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return kdi_fail(KD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, fp);
    rewind(fp);
    kd_status st;
    if (got == 8 && png_sig_cmp(sig, 0, 8) == 0)
        st = decode_png(fp, path, channels, im);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        st = decode_jpeg(fp, path, channels, im);
    else
        st = kdi_fail(KD_ERR_FORMAT, "%s is neither a PNG nor a JPEG file (by its first bytes)",
                      path);
    fclose(fp);
    return st;
}

/* ---------------------------------------------------------------- the dataset */

typedef struct entry {
    char *path;
    int32_t label;
} entry;

static kd_status collect(const char *root, names *classes, entry **files, int64_t *n)
{
    KDI_TRY(list(root, 1, classes));
    if (classes->n == 0)
        return kdi_fail(KD_ERR_FORMAT, "%s has no class sub-folders (ROOT/CLASS/IMAGE.png)", root);
    if (classes->n > INT32_MAX) return kdi_fail(KD_ERR_FORMAT, "%s has too many classes", root);
    int64_t cap = 0;
    kd_status st = KD_OK;
    for (int64_t c = 0; st == KD_OK && c < classes->n; c++) {
        char *dir = join(root, classes->v[c]);
        names f = {0};
        st = dir == NULL ? kdi_fail(KD_ERR_NOMEM, "cannot allocate a path") : list(dir, 0, &f);
        for (int64_t i = 0; st == KD_OK && i < f.n; i++) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                entry *e = kdi_realloc(*files, sizeof *e * (size_t)cap);
                if (e == NULL) {
                    st = kdi_fail(KD_ERR_NOMEM, "cannot list the images");
                    break;
                }
                *files = e;
            }
            (*files)[*n].path = join(dir, f.v[i]);
            (*files)[*n].label = (int32_t)c;
            if ((*files)[*n].path == NULL)
                st = kdi_fail(KD_ERR_NOMEM, "cannot allocate a path");
            else
                (*n)++;
        }
        names_free(&f);
        kdi_free(dir);
    }
    if (st == KD_OK && *n == 0)
        st = kdi_fail(KD_ERR_FORMAT, "%s holds no .png, .jpg or .jpeg file in its class folders",
                      root);
    return st;
}

/* Bytes [h, w, c] into floats [c, h, w] in [0, 1] (as ToTensor). */
static void to_chw(const image *im, int64_t c, float *out)
{
    int64_t plane = im->h * im->w;
    for (int64_t p = 0; p < plane; p++)
        for (int64_t k = 0; k < c; k++) out[k * plane + p] = (float)im->px[p * c + k] / 255.0f;
}

static kd_status fill(const entry *files, int64_t n, const names *classes, int64_t channels,
                      int64_t height, int64_t width, kd_dataset **out)
{
    image im = {.h = height, .w = width};
    KDI_TRY(decode(files[0].path, (int)channels, &im));
    if (height == 0) height = im.h;
    if (width == 0) width = im.w;
    int64_t values;
    kd_dataset *d = NULL;
    kd_status st = KD_OK;
    if (!kdi_mul_ok(n, channels * height * width, &values) || values > MAX_VALUES)
        st = kdi_fail(KD_ERR_FORMAT, "%lld images of %lldx%lld hold more than 2^31 values",
                      (long long)n, (long long)height, (long long)width);
    if (st == KD_OK) st = kdi_dataset_new(n, channels, height, width, 1, &d);
    for (int64_t i = 0; st == KD_OK && i < n; i++) {
        if (i > 0) {
            im = (image){.h = height, .w = width}; /* the previous pixels were freed below */
            st = decode(files[i].path, (int)channels, &im);
        }
        if (st != KD_OK) break;
        if (im.h != height || im.w != width)
            st = kdi_fail(KD_ERR_SHAPE,
                          "%s is %lldx%lld (height x width); every image must be %lldx%lld "
                          "(resize them first)",
                          files[i].path, (long long)im.h, (long long)im.w, (long long)height,
                          (long long)width);
        else
            to_chw(&im, channels, d->images + i * channels * height * width);
        d->labels[i] = files[i].label;
        kdi_free(im.px);
        im.px = NULL;
    }
    kdi_free(im.px);
    if (st == KD_OK) {
        d->classes = kdi_calloc((size_t)classes->n, sizeof *d->classes);
        if (d->classes == NULL) st = kdi_fail(KD_ERR_NOMEM, "cannot allocate the class names");
        for (int64_t c = 0; st == KD_OK && c < classes->n; c++) {
            d->classes[c] = classes->v[c];
            classes->v[c] = NULL; /* moved */
            d->nclasses = (int32_t)c + 1;
        }
    }
    if (st != KD_OK) {
        kd_dataset_destroy(d);
        return st;
    }
    *out = d;
    return KD_OK;
}

kd_status kd_dataset_load_image_folder(const char *root, int64_t channels, int64_t height,
                                       int64_t width, kd_dataset **out)
{
    KDI_CHECK_NULL(root);
    KDI_CHECK_NULL(out);
    if (channels != 1 && channels != 3)
        return kdi_fail(KD_ERR_ARGUMENT, "channels must be 1 (gray) or 3 (RGB), got %lld",
                        (long long)channels);
    if (height < 0 || width < 0 || height > MAX_SIDE || width > MAX_SIDE ||
        (height == 0) != (width == 0))
        return kdi_fail(KD_ERR_ARGUMENT,
                        "height and width must both be 0 (the first image's) or both in 1..%d",
                        MAX_SIDE);
    names classes = {0};
    entry *files = NULL;
    int64_t n = 0;
    kd_status st = collect(root, &classes, &files, &n);
    if (st == KD_OK) st = fill(files, n, &classes, channels, height, width, out);
    for (int64_t i = 0; i < n; i++) kdi_free(files[i].path);
    kdi_free(files);
    names_free(&classes);
    return st;
}
