/* Where the data sets are: --train/--test (an IDX prefix, a .npz, .npy or .csv file, or an
 * ImageFolder directory), or the standard IDX names in --data DIR. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
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

/* The one file in dir whose name holds a key and ends like an IDX image file; 1 if found. */
static int scan_dir(const char *dir, const char *const *keys, char *prefix, size_t size)
{
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name, *tail = strstr(name, "-images-idx3-ubyte");
        if (tail == NULL || !(ends_with(name, "-ubyte") || ends_with(name, "-ubyte.gz"))) continue;
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
    /* Kaggle's names, DIR/train-images.idx3-ubyte: kd_dataset_load_idx_prefix reads both */
    snprintf(images, sizeof images, "%s-images.idx3-ubyte", prefix);
    snprintf(labels, sizeof labels, "%s-images.idx3-ubyte.gz", prefix);
    if (exists(images) || exists(labels)) return 1;
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

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int load_user_data(const options *o, const char *path, const char *y_path, int labelled,
                   kd_dataset **out)
{
    kd_status st;
    if (is_dir(path)) {
        st = kd_dataset_load_image_folder(path, o->channels, 0, 0, out);
    } else if (ends_with(path, ".npz")) {
        st = kd_dataset_load_npz(path, o->x_name, labelled ? o->y_name : NULL, out);
    } else if (ends_with(path, ".npy")) {
        if (labelled && y_path == NULL) {
            fail_msg("%s holds the examples; name their labels with --%s-y LABELS.npy", path,
                     path == o->test_prefix ? "test" : "train");
            return EXIT_USAGE;
        }
        st = kd_dataset_load_npy(path, labelled ? y_path : NULL, out);
    } else if (ends_with(path, ".csv")) {
        if (labelled && o->label_column == NULL) {
            fail_msg("%s is a table: name its column of labels with --label-column NAME", path);
            return EXIT_USAGE;
        }
        st = kd_dataset_load_csv(path, o->label_column, out);
    } else if (!labelled && (ends_with(path, "-ubyte") || ends_with(path, "-ubyte.gz"))) {
        st = kd_dataset_load_idx(path, NULL, out); /* an IDX image file alone */
    } else {
        st = kd_dataset_load_idx_prefix(path, out);
    }
    if (st == KD_OK) return EXIT_OK;
    char what[1300];
    snprintf(what, sizeof what, "cannot read %s", path);
    return fail_kd(what, st);
}

static int load_one(const options *o, int train, char *prefix, size_t size, kd_dataset **out)
{
    const char *given = train ? o->train_prefix : o->test_prefix;
    if (given != NULL && (is_dir(given) || ends_with(given, ".npz") || ends_with(given, ".npy") ||
                          ends_with(given, ".csv"))) {
        snprintf(prefix, size, "%s", given);
        return load_user_data(o, given, train ? o->train_y : o->test_y, 1, out);
    }
    if (!find_prefix(o, train, prefix, size)) return missing(o, train, prefix);
    kd_status st = kd_dataset_load_idx_prefix(prefix, out);
    if (st == KD_ERR_IO && given != NULL) {
        fail_msg("no %s set at %s: %s", train ? "training" : "test", prefix, kd_last_error());
        return EXIT_RUNTIME;
    }
    if (st == KD_ERR_IO) return missing(o, train, prefix);
    if (st != KD_OK) {
        char what[1300];
        snprintf(what, sizeof what, "cannot read %s", prefix);
        return fail_kd(what, st);
    }
    return EXIT_OK;
}

/* Classes read as names (CSV, ImageFolder) are numbered per file; both sets must agree. */
static int same_classes(const kd_dataset *a, const kd_dataset *b)
{
    int32_t na = 0, nb = 0;
    kd_dataset_class_count(a, &na);
    kd_dataset_class_count(b, &nb);
    if (na == 0 || nb == 0) return EXIT_OK; /* numbers on one side: taken as they are */
    int ok = na == nb;
    for (int32_t i = 0; ok && i < na; i++) {
        const char *x = NULL, *y = NULL;
        kd_dataset_class_name(a, i, &x);
        kd_dataset_class_name(b, i, &y);
        ok = x != NULL && y != NULL && strcmp(x, y) == 0;
    }
    if (ok) return EXIT_OK;
    fail_msg("the training and test sets name different classes (%d and %d classes, or other "
             "names): labels would not mean the same",
             (int)na, (int)nb);
    return EXIT_RUNTIME;
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
        if (rc == EXIT_OK) rc = same_classes(d->train, d->test);
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
    /* --train/--test name the data when given; --data DIR (Fashion-MNIST's by default) only then */
    const char *names[] = {o->train_prefix, o->test_prefix,
                           o->train_prefix == NULL && o->test_prefix == NULL ? o->data_dir : NULL};
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
    uint64_t x = hash_bytes(HASH_SEED, dims, sizeof dims);
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
    /* Tabular data (c x 1 x 1) are examples of c features, not images. */
    char shape[96];
    if (h == 1 && w == 1)
        snprintf(shape, sizeof shape, "examples of %lld features", (long long)c);
    else
        snprintf(shape, sizeof shape, "images of %lldx%lldx%lld", (long long)c, (long long)h,
                 (long long)w);
    if (d->train != NULL)
        snprintf(out, size, "%s%lld training%s / %lld test %s%s%s", name, (long long)ntrain, val,
                 (long long)ntest, shape, *where ? " from " : "", where);
    else
        snprintf(out, size, "%s%lld test %s (%s)", name, (long long)ntest, shape, d->test_prefix);
}
