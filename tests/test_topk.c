/* Sparse teacher caches (kd_topk_from_logits, kd_topk_soft_targets): the selection against a full
 * sort, k == V against the dense soft targets, each tail's mass, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define R 7
#define V 40

static const float *sort_z;
static int by_rank(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (sort_z[i] != sort_z[j]) return sort_z[i] > sort_z[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

static void logits(float *z)
{
    kdt_fill(z, R * V, 41, -6.0f, 6.0f);
    z[3] = z[4] = z[5] = 7.0f; /* ties in row 0: classes 3, 4, 5 in that order */
}

START_TEST(selection_matches_a_sort)
{
    float z[R * V], val[R * 9], rest[R];
    int32_t idx[R * 9], all[V];
    logits(z);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, 9, idx, val, rest), KD_OK);
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < V; c++) all[c] = c;
        sort_z = z + r * V;
        qsort(all, V, sizeof all[0], by_rank);
        double tail = 0.0;
        for (int i = 0; i < V; i++) {
            if (i < 9) {
                ck_assert_int_eq(idx[r * 9 + i], all[i]);
                ck_assert(val[r * 9 + i] == z[r * V + all[i]]);
            } else {
                tail += exp((double)z[r * V + all[i]]);
            }
        }
        ck_assert_msg(fabs(rest[r] - log(tail)) < 1e-5, "rest %g, want %g", (double)rest[r],
                      log(tail));
    }
    ck_assert_int_eq(idx[0], 3);
    ck_assert_int_eq(idx[1], 4);
    ck_assert_int_eq(idx[2], 5);
    /* rest may be NULL */
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, 9, idx, val, NULL), KD_OK);
}
END_TEST

/* k == V: the cache holds everything, and both tails give the dense soft targets. */
START_TEST(full_k_is_dense)
{
    float z[R * V], val[R * V], rest[R], dense[R * V], p[R * V];
    int32_t idx[R * V];
    logits(z);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, V, idx, val, rest), KD_OK);
    for (int r = 0; r < R; r++) ck_assert(rest[r] == -INFINITY);
    static const float temps[] = {1.0f, 2.5f, 0.5f};
    for (int t = 0; t < 3; t++) {
        ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, R, V, temps[t], dense), KD_OK);
        for (int tail = 0; tail < 2; tail++) {
            ck_assert_int_eq(kd_topk_soft_targets(idx, val, tail ? NULL : rest, R, V, V, temps[t],
                                                  (kd_topk_tail)tail, p),
                             KD_OK);
            for (int i = 0; i < R * V; i++)
                ck_assert_msg(fabsf(p[i] - dense[i]) < 1e-6f, "T %g tail %d [%d]: %g, dense %g",
                              (double)temps[t], tail, i, (double)p[i], (double)dense[i]);
        }
    }
}
END_TEST

/* k < V at T = 1: UNIFORM keeps the top k's dense probabilities and spreads the rest evenly;
 * NONE renormalises over the top k and leaves 0 elsewhere. */
START_TEST(tails)
{
    enum { K = 5 };
    float z[R * V], val[R * K], rest[R], dense[R * V], p[R * V];
    int32_t idx[R * K];
    logits(z);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, K, idx, val, rest), KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, R, V, 1.0f, dense), KD_OK);
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, K, 1.0f, KD_TOPK_TAIL_UNIFORM, p),
                     KD_OK);
    for (int r = 0; r < R; r++) {
        double top = 0.0, sum = 0.0;
        for (int i = 0; i < K; i++) {
            int c = idx[r * K + i];
            ck_assert(fabsf(p[r * V + c] - dense[r * V + c]) < 1e-6f);
            top += dense[r * V + c];
        }
        for (int c = 0; c < V; c++) {
            sum += p[r * V + c];
            ck_assert(p[r * V + c] > 0.0f);
        }
        ck_assert(fabs(sum - 1.0) < 1e-5);
        int other = 0;
        while (other == idx[r * K] || other == idx[r * K + 1] || other == idx[r * K + 2] ||
               other == idx[r * K + 3] || other == idx[r * K + 4])
            other++;
        ck_assert(fabs(p[r * V + other] - (1.0 - top) / (V - K)) < 1e-6);
    }
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, NULL, R, V, K, 2.0f, KD_TOPK_TAIL_NONE, p),
                     KD_OK);
    for (int r = 0; r < R; r++) {
        double norm = 0.0, sum = 0.0;
        for (int i = 0; i < K; i++) norm += exp(val[r * K + i] / 2.0);
        for (int c = 0; c < V; c++) sum += p[r * V + c];
        ck_assert(fabs(sum - 1.0) < 1e-5);
        for (int i = 0; i < K; i++)
            ck_assert(fabs(p[r * V + idx[r * K + i]] - exp(val[r * K + i] / 2.0) / norm) < 1e-6);
        ck_assert(p[r * V + idx[r * K]] > 0.0f);
    }
    int zeros = 0;
    for (int i = 0; i < R * V; i++) zeros += p[i] == 0.0f;
    ck_assert_int_eq(zeros, R * (V - K));
}
END_TEST

/* Dense logits from a cache: their softmax at any T is the cache's soft targets, and with k == V
 * they are the logits themselves. */
START_TEST(logits_for_the_trainer)
{
    enum { K = 6 };
    float z[R * V], val[R * V], rest[R], dense[R * V], p[R * V], q[R * V];
    int32_t idx[R * V];
    logits(z);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, V, idx, val, rest), KD_OK);
    ck_assert_int_eq(kd_topk_logits(idx, val, rest, R, V, V, dense), KD_OK);
    ck_assert(memcmp(dense, z, sizeof z) == 0);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, K, idx, val, rest), KD_OK);
    ck_assert_int_eq(kd_topk_logits(idx, val, rest, R, V, K, dense), KD_OK);
    for (int t = 1; t <= 3; t++) {
        ck_assert_int_eq(kd_soft_targets_from_logits(dense, NULL, 1, R, V, (float)t, p), KD_OK);
        ck_assert_int_eq(
            kd_topk_soft_targets(idx, val, rest, R, V, K, (float)t, KD_TOPK_TAIL_UNIFORM, q),
            KD_OK);
        for (int i = 0; i < R * V; i++) ck_assert(fabsf(p[i] - q[i]) < 1e-6f);
    }
    rest[3] = -INFINITY;
    ck_assert_int_eq(kd_topk_logits(idx, val, rest, R, V, K, dense), KD_ERR_NUMERIC);
    ck_assert_int_eq(kd_topk_logits(idx, val, NULL, R, V, K, dense), KD_ERR_ARGUMENT);
}
END_TEST

START_TEST(bad_input)
{
    float z[R * V], val[R * 3], rest[R], p[R * V];
    int32_t idx[R * 3];
    logits(z);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, 0, idx, val, rest), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, V + 1, idx, val, rest), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_topk_from_logits(z, 0, V, 3, idx, val, rest), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_topk_from_logits(NULL, R, V, 3, idx, val, rest), KD_ERR_ARGUMENT);
    z[17] = NAN;
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, 3, idx, val, rest), KD_ERR_NUMERIC);
    z[17] = 0.0f;
    ck_assert_int_eq(kd_topk_from_logits(z, R, V, 3, idx, val, rest), KD_OK);
    memset(p, 0, sizeof p);
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, NULL, R, V, 3, 1.0f, KD_TOPK_TAIL_UNIFORM, p),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 0.0f, KD_TOPK_TAIL_UNIFORM, p),
                     KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 1.0f, (kd_topk_tail)2, p),
                     KD_ERR_ARGUMENT);
    int32_t saved = idx[4];
    idx[4] = idx[3]; /* row 1 holds a class twice */
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 1.0f, KD_TOPK_TAIL_UNIFORM, p),
                     KD_ERR_ARGUMENT);
    idx[4] = V;
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 1.0f, KD_TOPK_TAIL_NONE, p),
                     KD_ERR_ARGUMENT);
    idx[4] = saved;
    rest[2] = NAN;
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 1.0f, KD_TOPK_TAIL_UNIFORM, p),
                     KD_ERR_NUMERIC);
    for (int i = 0; i < R * V; i++) ck_assert(p[i] == 0.0f); /* failures wrote nothing */
    ck_assert_int_eq(kd_topk_soft_targets(idx, val, rest, R, V, 3, 1.0f, KD_TOPK_TAIL_NONE, p),
                     KD_OK);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("topk");
    TCase *t = tcase_create("core");
    tcase_add_test(t, selection_matches_a_sort);
    tcase_add_test(t, full_k_is_dense);
    tcase_add_test(t, tails);
    tcase_add_test(t, logits_for_the_trainer);
    tcase_add_test(t, bad_input);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return kdt_run(suite()); }
