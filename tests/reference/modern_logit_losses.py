#!/usr/bin/env python3
"""Reference values for tests/test_losses_modern.c: logit standardisation (Sun et al. 2024),
DIST (Huang et al. 2022), DKD from a confident teacher's logits (Zhao et al. 2022, as
mdistiller), and the hard term's ignore_index mean.

Each function follows the authors' PyTorch code line by line. With PyTorch installed
(python3-torch) the same quantities are also computed with torch and compared; without it the
pure-Python values are printed alone. The printed numbers are committed in the C test, so CI needs
neither. Run: python3 tests/reference/modern_logit_losses.py
"""
import math

ZS = [[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.0, 1.5], [-2.0, 0.5, 0.25, 0.0]]
ZT = [[2.0, 0.0, 1.0, -1.0], [0.5, -0.3, 0.0, 2.5], [-1.0, 1.5, 0.5, 0.2]]
Y = [2, -1, 1]


def log_softmax(row, t=1.0):
    u = [v / t for v in row]
    m = max(u)
    lse = m + math.log(sum(math.exp(v - m) for v in u))
    return [v - lse for v in u]


def softmax(row, t=1.0):
    return [math.exp(v) for v in log_softmax(row, t)]


def normalize(row):
    """Sun et al.'s normalize(): (z - mean) / (1e-7 + std), std unbiased (torch.std)."""
    n = len(row)
    mean = sum(row) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / (n - 1))
    return [(v - mean) / (1e-7 + std) for v in row]


def kd_ls(zs, zt, t, stand):
    """Their kd_loss: batch mean of KL(softmax(zt'/T) || softmax(zs'/T)) * T^2."""
    total = 0.0
    for s, te in zip(zs, zt):
        if stand:
            s, te = normalize(s), normalize(te)
        lq, lp = log_softmax(s, t), log_softmax(te, t)
        total += sum(math.exp(b) * (b - a) for a, b in zip(lq, lp))
    return total / len(zs) * t * t


def ce_ignore_index(zs, y):
    """F.cross_entropy(zs, y, ignore_index=-1): the mean over the labelled rows."""
    terms = [-log_softmax(s)[c] for s, c in zip(zs, y) if c >= 0]
    return sum(terms) / len(terms)


def pearson(a, b, eps=1e-8):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    a, b = [v - ma for v in a], [v - mb for v in b]
    na, nb = math.sqrt(sum(v * v for v in a)), math.sqrt(sum(v * v for v in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb + eps)


def dist(zs, zt, beta, gamma, tau):
    """The authors' DIST: tau^2 (beta inter + gamma intra)."""
    ys = [softmax(r, tau) for r in zs]
    yt = [softmax(r, tau) for r in zt]
    inter = 1 - sum(pearson(a, b) for a, b in zip(ys, yt)) / len(ys)
    cols = range(len(ys[0]))
    intra = 1 - sum(pearson([r[j] for r in ys], [r[j] for r in yt]) for j in cols) / len(cols)
    return tau * tau * (beta * inter + gamma * intra), inter, intra


def dkd_nckd(zs, zt, target, t):
    """mdistiller's NCKD: softmax of logits / T - 1000 at the target, KL, times T^2."""
    s = [v / t - (1000.0 if j == target else 0.0) for j, v in enumerate(zs)]
    te = [v / t - (1000.0 if j == target else 0.0) for j, v in enumerate(zt)]
    lq, lp = log_softmax(s), log_softmax(te)
    return sum(math.exp(b) * (b - a) for a, b in zip(lq, lp) if math.exp(b) > 0) * t * t


def main():
    print("KD, T 2, no LS:          %.9f" % kd_ls(ZS, ZT, 2.0, False))
    print("KD + LS, T 2:            %.9f" % kd_ls(ZS, ZT, 2.0, True))
    print("KD + LS, T 1:            %.9f" % kd_ls(ZS, ZT, 1.0, True))
    print("CE, ignore_index -1:     %.9f" % ce_ignore_index(ZS, Y))
    v, inter, intra = dist(ZS, ZT, 1.0, 1.0, 1.0)
    print("DIST b1 g1 tau1:         %.9f (inter %.9f, intra %.9f)" % (v, inter, intra))
    v, inter, intra = dist(ZS, ZT, 2.0, 2.0, 4.0)
    print("DIST b2 g2 tau4:         %.9f" % v)
    print("DKD confident 8 * NCKD:  %.9f" % (8 * dkd_nckd([2, 1, 0, -1], [120, 10, 5, 0], 0, 1)))
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("(PyTorch not installed: no cross-check)")
        return
    zs, zt = torch.tensor(ZS, dtype=torch.float64), torch.tensor(ZT, dtype=torch.float64)
    y = torch.tensor(Y)
    ce = F.cross_entropy(zs, y, ignore_index=-1).item()
    print("torch CE ignore_index:   %.9f" % ce)
    n = lambda z: (z - z.mean(-1, keepdim=True)) / (1e-7 + z.std(-1, keepdim=True))
    kl = F.kl_div(F.log_softmax(n(zs) / 2, 1), F.softmax(n(zt) / 2, 1), reduction="none")
    print("torch KD + LS, T 2:      %.9f" % (kl.sum(1).mean().item() * 4))


if __name__ == "__main__":
    main()
