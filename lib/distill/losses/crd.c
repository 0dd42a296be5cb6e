/* Contrastive representation distillation (Tian, Krishnan and Isola, ICLR 2020), in the InfoNCE
 * form of the critic (their eq. 17-18 with the softmax over one positive and K negatives, as the
 * softmax variant of their code): with u_b = s_b / |s_b| (the student's embedding after its
 * projection head, the trainer's regressor), v_b = t_b / |t_b| (the teacher's, identity head) and
 * m_1..m_K unit rows of a memory of past teacher embeddings,
 *   a_b0 = <u_b, v_b> / tau,  a_bk = <u_b, m_k> / tau,
 *   L = 1/B sum_b (logsumexp_j a_bj - a_b0),
 *   dL/du_b = 1/(B tau) (sum_j p_bj w_j - v_b),  p = softmax(a_b.), w_0 = v_b, w_k = m_k,
 *   dL/ds_b = (dL/du_b - <dL/du_b, u_b> u_b) / |s_b|.
 * After a finite forward the memory takes the batch's teacher embeddings, slot by slot in turn:
 * m <- (mu m + (1 - mu) v) / |.| with momentum mu (their nce_m 0.5); mu = 1 freezes it. The
 * memory starts as seeded uniform random unit rows (as their memory bank), rebuilt when the
 * embedding size or K changes. */
#include <math.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "distill/losses/losses.h"
#include "kernels/kernels.h"

#define EPS 1e-12

static kd_status crd_check(kdi_shape s, kdi_shape t)
{
    return kdi_check_same_size("CRD (give the student a regressor to the teacher's size)", s, t);
}

static void unit(float *x, int64_t n)
{
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++) sq += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(sq + EPS);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * inv);
}

kd_status kdi_crd_memory_ready(kd_feature_loss *l, int64_t k, int64_t d)
{
    if (l->crd_k == k && l->crd_dim == d) return KD_OK;
    kd_status st = kdi_buf_reserve(&l->crd_memory, k * d);
    if (st != KD_OK) return st;
    kdi_rng r;
    kdi_rng_seed(&r, (uint64_t)l->opt[KD_FEATURE_CRD_SEED]);
    float *m = l->crd_memory.data;
    for (int64_t i = 0; i < k * d; i++) m[i] = 2.0f * kdi_rng_uniform(&r) - 1.0f;
    for (int64_t i = 0; i < k; i++) unit(m + i * d, d);
    l->crd_k = k;
    l->crd_dim = d;
    l->crd_next = 0;
    return KD_OK;
}

static kd_status crd_forward(kd_feature_loss *l, const float *s, kdi_shape ss, const float *t,
                             kdi_shape ts, int64_t batch, double *loss, float *grad)
{
    (void)ts;
    const float tau = l->opt[KD_FEATURE_CRD_TEMPERATURE];
    const float mu = l->opt[KD_FEATURE_CRD_MOMENTUM];
    const int64_t k = (int64_t)l->opt[KD_FEATURE_CRD_NEGATIVES];
    const int64_t d = kdi_shape_size(ss), kk = k + 1;
    /* ws[0]: u [B, d]; ws[1]: v [B, d]; ws[2]: scores [B, K + 1] (column 0 the positive). */
    KDI_TRY(kdi_buf_reserve(&l->ws[0], batch * d));
    KDI_TRY(kdi_buf_reserve(&l->ws[1], batch * d));
    KDI_TRY(kdi_buf_reserve(&l->ws[2], batch * kk));
    KDI_TRY(kdi_crd_memory_ready(l, k, d));
    const kdi_kernels *kn = kdi_kernels_get();
    float *u = l->ws[0].data, *v = l->ws[1].data, *a = l->ws[2].data, *m = l->crd_memory.data;
    double *norm_s = NULL;
    KDI_TRY(kdi_ws_doubles(&l->ws[3], batch, &norm_s));
    for (int64_t b = 0; b < batch; b++) {
        double ns = sqrt(kn->sum_sq(s + b * d, d) + EPS);
        norm_s[b] = ns;
        for (int64_t i = 0; i < d; i++) u[b * d + i] = (float)(s[b * d + i] / ns);
        double nt = sqrt(kn->sum_sq(t + b * d, d) + EPS);
        for (int64_t i = 0; i < d; i++) v[b * d + i] = (float)(t[b * d + i] / nt);
    }
    /* Negatives: a[b, 1..K] = u_b . m_k, one matrix product. */
    kn->gemm(0, 1, batch, k, d, 1.0f, u, d, m, d, 0.0f, a + 1, kk);
    double sum = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        float *row = a + b * kk;
        row[0] = (float)kn->dot(u + b * d, v + b * d, d);
        double mx = -INFINITY;
        for (int64_t j = 0; j < kk; j++) mx = fmax(mx, row[j] / tau);
        double z = 0.0;
        for (int64_t j = 0; j < kk; j++) z += exp(row[j] / tau - mx);
        sum += mx + log(z) - row[0] / tau;
        for (int64_t j = 0; j < kk; j++) /* dL/da_bj / tau, B folded in below */
            row[j] = (float)((exp(row[j] / tau - mx) / z - (j == 0)) / tau);
    }
    *loss = sum / (double)batch;
    if (!isfinite(*loss)) return KD_OK; /* the caller fails; the memory stays as it was */
    /* dL/du = P M (negatives) + p0 v (positive), into grad. */
    kn->gemm(0, 0, batch, d, k, 1.0f, a + 1, kk, m, d, 0.0f, grad, d);
    for (int64_t b = 0; b < batch; b++) {
        float *g = grad + b * d;
        const float *ub = u + b * d, *vb = v + b * d;
        kn->axpy(g, a[b * kk], vb, d);
        double gu = kn->dot(g, ub, d);
        double scale = 1.0 / ((double)batch * norm_s[b]);
        for (int64_t i = 0; i < d; i++) g[i] = (float)((g[i] - gu * ub[i]) * scale);
    }
    if (mu < 1.0f) { /* the memory takes this batch's teacher embeddings */
        for (int64_t b = 0; b < batch; b++) {
            float *slot = m + l->crd_next * d;
            for (int64_t i = 0; i < d; i++) slot[i] = mu * slot[i] + (1.0f - mu) * v[b * d + i];
            unit(slot, d);
            l->crd_next = (l->crd_next + 1) % k;
        }
    }
    return KD_OK;
}

const kdi_feature_ops kdi_crd_ops = {.name = "CRD", .check = crd_check, .forward = crd_forward};
