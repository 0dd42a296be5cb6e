/* Where the data sets are: --train/--test prefixes, or the standard IDX names in --data DIR. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static int exists(const char *path) { return access(path, R_OK) == 0; }

/* PREFIX-images-idx3-ubyte(.gz) and PREFIX-labels-idx1-ubyte(.gz), gzip preferred. */
static int files_of(const char *prefix, char *images, char *labels, size_t size)
{
    snprintf(images, size, "%s-images-idx3-ubyte.gz", prefix);
    if (!exists(images)) snprintf(images, size, "%s-images-idx3-ubyte", prefix);
    snprintf(labels, size, "%s-labels-idx1-ubyte.gz", prefix);
    if (!exists(labels)) snprintf(labels, size, "%s-labels-idx1-ubyte", prefix);
    return exists(images) && exists(labels);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The one file in dir whose name holds a key and ends like an IDX image file; 1 if found. */
static int scan_dir(const char *dir, const char *const *keys, char *prefix, size_t size)
{
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name, *tail = strstr(name, "-images-idx3-ubyte");
        if (tail == NULL || !(has_suffix(name, "-ubyte") || has_suffix(name, "-ubyte.gz")))
            continue;
        int match = 0;
        for (int k = 0; keys[k] != NULL; k++) match |= strstr(name, keys[k]) != NULL;
        if (!match) continue;
        if (++found == 1) snprintf(prefix, size, "%s/%.*s", dir, (int)(tail - name), name);
    }
    closedir(d);
    return found == 1;
}

static int find_prefix(const options *o, int train, char *prefix, size_t size)
{
    const char *given = train ? o->train_prefix : o->test_prefix;
    if (given != NULL) {
        snprintf(prefix, size, "%s", given);
        return 1;
    }
    static const char *const train_keys[] = {"train", NULL}, *const test_keys[] = {"t10k", "test",
                                                                                   NULL};
    snprintf(prefix, size, "%s/%s", o->data_dir, train ? "train" : "t10k");
    char images[1200], labels[1200];
    if (files_of(prefix, images, labels, sizeof images)) return 1;
    return scan_dir(o->data_dir, train ? train_keys : test_keys, prefix, size);
}

static int missing(const options *o, int train, const char *prefix)
{
    const char *set = train ? "training" : "test";
    if ((train ? o->train_prefix : o->test_prefix) != NULL) {
        fail_msg("no %s set at %s: expected %s-images-idx3-ubyte.gz and %s-labels-idx1-ubyte.gz",
                 set, prefix, prefix, prefix);
    } else if (strcmp(o->data_dir, DEFAULT_DATA_DIR) == 0) {
        fail_msg("Fashion-MNIST is not in %s; install it with 'apt-get install "
                 "dataset-fashion-mnist', or pass --data DIR",
                 DEFAULT_DATA_DIR);
    } else {
        fail_msg("no %s set in %s: expected %s-images-idx3-ubyte.gz and its labels file (or pass "
                 "--%s PREFIX)",
                 set, o->data_dir, train ? "train" : "t10k", train ? "train" : "test");
    }
    return EXIT_RUNTIME;
}

static int load_one(const options *o, int train, char *prefix, size_t size, kd_dataset **out)
{
    char images[1200], labels[1200];
    if (!find_prefix(o, train, prefix, size) || !files_of(prefix, images, labels, sizeof images))
        return missing(o, train, prefix);
    kd_status st = kd_dataset_load_idx(images, labels, out);
    if (st != KD_OK) {
        char what[1300];
        snprintf(what, sizeof what, "cannot read %s", images);
        return fail_kd(what, st);
    }
    return EXIT_OK;
}

int load_data(const options *o, int want_train, int want_test, dataset_pair *d)
{
    memset(d, 0, sizeof *d);
    int rc = EXIT_OK;
    if (want_train) rc = load_one(o, 1, d->train_prefix, sizeof d->train_prefix, &d->train);
    if (rc == EXIT_OK && want_test)
        rc = load_one(o, 0, d->test_prefix, sizeof d->test_prefix, &d->test);
    if (rc == EXIT_OK && d->train != NULL && d->test != NULL) {
        int64_t a[3], b[3];
        kd_dataset_shape(d->train, &a[0], &a[1], &a[2]);
        kd_dataset_shape(d->test, &b[0], &b[1], &b[2]);
        if (a[0] * a[1] * a[2] != b[0] * b[1] * b[2]) {
            fail_msg("the training images are %lldx%lldx%lld but the test images %lldx%lldx%lld",
                     (long long)a[0], (long long)a[1], (long long)a[2], (long long)b[0],
                     (long long)b[1], (long long)b[2]);
            rc = EXIT_RUNTIME;
        }
    }
    if (rc != EXIT_OK) free_data(d);
    return rc;
}

void free_data(dataset_pair *d)
{
    kd_dataset_destroy(d->train);
    kd_dataset_destroy(d->test);
    kd_dataset_destroy(d->val);
    d->train = d->test = d->val = NULL;
}

int data_is_fashion(const options *o)
{
    const char *names[] = {o->data_dir, o->train_prefix, o->test_prefix};
    for (int i = 0; i < 3; i++)
        if (names[i] != NULL && (strstr(names[i], "fashion") || strstr(names[i], "fmnist")))
            return 1;
    return 0;
}

uint64_t dataset_hash(const kd_dataset *d)
{
    int64_t n, c, h, w;
    kd_dataset_size(d, &n);
    kd_dataset_shape(d, &c, &h, &w);
    int64_t dims[4] = {n, c, h, w};
    uint64_t x = hash_bytes(0xcbf29ce484222325ULL, dims, sizeof dims);
    x = hash_bytes(x, kd_dataset_images(d), sizeof(float) * (size_t)(n * c * h * w));
    const int32_t *labels = kd_dataset_labels(d);
    return labels != NULL ? hash_bytes(x, labels, sizeof(int32_t) * (size_t)n) : x;
}

void describe_data(const options *o, const dataset_pair *d, char *out, size_t size)
{
    int64_t ntrain = 0, ntest = 0, c = 0, h = 0, w = 0;
    const kd_dataset *any = d->train != NULL ? d->train : d->test;
    if (d->train != NULL) kd_dataset_size(d->train, &ntrain);
    if (d->test != NULL) kd_dataset_size(d->test, &ntest);
    kd_dataset_shape(any, &c, &h, &w);
    const char *where = o->train_prefix != NULL || o->test_prefix != NULL ? "" : o->data_dir;
    const char *name = data_is_fashion(o) ? "Fashion-MNIST, " : "";
    int64_t nval = 0;
    if (d->val != NULL) kd_dataset_size(d->val, &nval);
    char val[64] = "";
    if (nval > 0) snprintf(val, sizeof val, " / %lld validation", (long long)nval);
    if (d->train != NULL)
        snprintf(out, size, "%s%lld training%s / %lld test images of %lldx%lldx%lld%s%s", name,
                 (long long)ntrain, val, (long long)ntest, (long long)c, (long long)h, (long long)w,
                 *where ? " from " : "", where);
    else
        snprintf(out, size, "%s%lld test images of %lldx%lldx%lld (%s)", name, (long long)ntest,
                 (long long)c, (long long)h, (long long)w, d->test_prefix);
}
