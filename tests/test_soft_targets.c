/* The teachers' knowledge: softened probabilities from cached logits and from live teachers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define B 5
#define C 4
#define IN 6

START_TEST(rows_sum_to_one)
{
    float z[3 * B * C], p[B * C];
    const float w[3] = {0.5f, 2.0f, 1.0f};
    kdt_fill(z, 3 * B * C, 1, -10.0f, 10.0f);
    for (float t = 0.5f; t < 20.0f; t *= 2.0f) {
        ck_assert_int_eq(kd_soft_targets_from_logits(z, w, 3, B, C, t, p), KD_OK);
        for (int r = 0; r < B; r++) {
            double sum = 0.0;
            for (int c = 0; c < C; c++) {
                ck_assert(p[r * C + c] >= 0.0f);
                sum += p[r * C + c];
            }
            ck_assert_msg(fabs(sum - 1.0) < 1e-5, "T %g row %d sums to %g", (double)t, r, sum);
        }
    }
}
END_TEST

/* softmax([1, 2, 3]) = [0.0900306, 0.2447285, 0.6652410]; at T = 2, softmax([0.5, 1, 1.5]) =
 * [0.1863237, 0.3071959, 0.5064804]. */
START_TEST(hand_computed_three_classes)
{
    const float z[3] = {1.0f, 2.0f, 3.0f};
    const float t1[3] = {0.0900306f, 0.2447285f, 0.6652410f},
                t2[3] = {0.1863237f, 0.3071959f, 0.5064804f};
    float p[3];
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, 1, 3, 1.0f, p), KD_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(p[i], t1[i], 1e-6f);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, 1, 3, 2.0f, p), KD_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(p[i], t2[i], 1e-6f);
    /* shifting the logits changes nothing (max-subtracted softmax, even far from zero) */
    const float shifted[3] = {1001.0f, 1002.0f, 1003.0f};
    ck_assert_int_eq(kd_soft_targets_from_logits(shifted, NULL, 1, 1, 3, 2.0f, p), KD_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(p[i], t2[i], 1e-6f);
}
END_TEST

START_TEST(high_temperature_is_near_uniform)
{
    float z[B * C], p[B * C];
    kdt_fill(z, B * C, 2, -5.0f, 5.0f);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, C, 1e4f, p), KD_OK);
    for (int i = 0; i < B * C; i++) ck_assert_float_eq_tol(p[i], 1.0f / C, 1e-3f);
}
END_TEST

START_TEST(ensemble_is_weighted_average)
{
    float z[3 * B * C], p[B * C], each[3][B * C], eq[B * C];
    const float w[3] = {1.0f, 3.0f, 0.0f}; /* a zero weight takes no part */
    kdt_fill(z, 3 * B * C, 3, -4.0f, 4.0f);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(kd_soft_targets_from_logits(z + i * B * C, NULL, 1, B, C, 3.0f, each[i]),
                         KD_OK);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, w, 3, B, C, 3.0f, p), KD_OK);
    for (int i = 0; i < B * C; i++)
        ck_assert_float_eq_tol(p[i], (1.0f * each[0][i] + 3.0f * each[1][i]) / 4.0f, 1e-6f);
    /* NULL weights: the plain mean */
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 3, B, C, 3.0f, eq), KD_OK);
    for (int i = 0; i < B * C; i++)
        ck_assert_float_eq_tol(eq[i], (each[0][i] + each[1][i] + each[2][i]) / 3.0f, 1e-6f);
    /* one teacher of weight 2 is that teacher's softmax exactly */
    const float w2 = 2.0f;
    ck_assert_int_eq(kd_soft_targets_from_logits(z, &w2, 1, B, C, 3.0f, p), KD_OK);
    ck_assert(memcmp(p, each[0], sizeof p) == 0);
}
END_TEST

static kd_model *teacher(const char *spec, uint64_t seed)
{
    kd_model *m;
    ck_assert_int_eq(kd_model_create(spec, seed, &m), KD_OK);
    return m;
}

START_TEST(cached_logits_equal_live_teachers)
{
    kd_model *ts[3] = {teacher("input 6 | dense 8 | relu | dense 4", 1),
                       teacher("input 6 | dense 5 | tanh | dense 4", 2),
                       teacher("input 6 | dropout 0.5 | dense 4", 3)};
    float x[B * IN], logits[3 * B * C], live[B * C], cached[B * C];
    const float w[3] = {0.2f, 0.5f, 0.3f};
    kdt_fill(x, B * IN, 4, -1.0f, 1.0f);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(kd_model_predict(ts[i], x, B, logits + i * B * C), KD_OK);
    for (int n = 1; n <= 3; n++) {
        ck_assert_int_eq(kd_teacher_soft_targets(ts, w, n, x, B, 2.5f, live), KD_OK);
        ck_assert_int_eq(kd_soft_targets_from_logits(logits, w, n, B, C, 2.5f, cached), KD_OK);
        ck_assert(memcmp(live, cached, sizeof live) == 0);
        ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, n, x, B, 2.5f, live), KD_OK);
        ck_assert_int_eq(kd_soft_targets_from_logits(logits, NULL, n, B, C, 2.5f, cached), KD_OK);
        ck_assert(memcmp(live, cached, sizeof live) == 0);
    }
    for (int i = 0; i < 3; i++) kd_model_destroy(ts[i]);
}
END_TEST

START_TEST(bad_input)
{
    kd_model *ts[2] = {teacher("input 6 | dense 4", 1), teacher("input 6 | dense 4", 2)};
    kd_model *wide = teacher("input 6 | dense 5", 3), *other_in = teacher("input 7 | dense 4", 4);
    float x[B * IN], z[2 * B * C], p[B * C];
    kdt_fill(x, B * IN, 5, -1.0f, 1.0f);
    kdt_fill(z, 2 * B * C, 6, -1.0f, 1.0f);
    const float neg[2] = {1.0f, -1.0f}, zero[2] = {0.0f, 0.0f}, nan[2] = {1.0f, NAN};
    const float inf[2] = {1.0f, INFINITY};

    /* from logits */
    ck_assert_int_eq(kd_soft_targets_from_logits(NULL, NULL, 1, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, C, 1.0f, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 0, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, -1, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, 0, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, 0, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, INT64_MAX / 2, C, 1.0f, p),
                     KD_ERR_ARGUMENT);
    const float bad_t[] = {0.0f, -2.0f, NAN, INFINITY, 1e-45f};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 1, B, C, bad_t[i], p),
                         KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, neg, 2, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, zero, 2, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, nan, 2, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_soft_targets_from_logits(z, inf, 2, B, C, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert(strstr(kd_last_error(), "weight") != NULL);
    z[B * C + 3] = NAN;
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 2, B, C, 1.0f, p), KD_ERR_NUMERIC);
    z[B * C + 3] = -INFINITY;
    ck_assert_int_eq(kd_soft_targets_from_logits(z, NULL, 2, B, C, 1.0f, p), KD_ERR_NUMERIC);

    /* live teachers */
    ck_assert_int_eq(kd_teacher_soft_targets(NULL, NULL, 1, x, B, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 2, NULL, B, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 2, x, B, 1.0f, NULL), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 0, x, B, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 2, x, 0, 1.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 2, x, B, 0.0f, p), KD_ERR_ARGUMENT);
    ck_assert_int_eq(kd_teacher_soft_targets(ts, neg, 2, x, B, 1.0f, p), KD_ERR_ARGUMENT);
    kd_model *with_null[2] = {ts[0], NULL};
    ck_assert_int_eq(kd_teacher_soft_targets(with_null, NULL, 2, x, B, 1.0f, p), KD_ERR_ARGUMENT);
    kd_model *mixed[2] = {ts[0], wide};
    ck_assert_int_eq(kd_teacher_soft_targets(mixed, NULL, 2, x, B, 1.0f, p), KD_ERR_SHAPE);
    mixed[1] = other_in;
    ck_assert_int_eq(kd_teacher_soft_targets(mixed, NULL, 2, x, B, 1.0f, p), KD_ERR_SHAPE);
    x[4] = NAN;
    ck_assert_int_eq(kd_teacher_soft_targets(ts, NULL, 2, x, B, 1.0f, p), KD_ERR_NUMERIC);
    for (int i = 0; i < 2; i++) kd_model_destroy(ts[i]);
    kd_model_destroy(wide);
    kd_model_destroy(other_in);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("soft_targets");
    TCase *t = tcase_create("soft_targets");
    tcase_add_test(t, rows_sum_to_one);
    tcase_add_test(t, hand_computed_three_classes);
    tcase_add_test(t, high_temperature_is_near_uniform);
    tcase_add_test(t, ensemble_is_weighted_average);
    tcase_add_test(t, cached_logits_equal_live_teachers);
    tcase_add_test(t, bad_input);
    suite_add_tcase(s, t);
    return kdt_run(s);
}
