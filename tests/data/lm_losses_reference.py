#!/usr/bin/env python3
"""Reference values of the token-level losses (tests/test_losses_token.c), in double precision with
the standard library only: forward KL, reverse KL (MiniLLM), generalised JSD (GKD, as TRL's
generalized_jsd_loss), skew KL and skew reverse KL (DistiLLM), total variation distance.

Rows zs (student) and zt (teacher) of 4 classes, labels [2, -1, 1], temperature 2, alpha 0.5:
    L = alpha T^2 mean_rows D(softmax(zt/T), softmax(zs/T)) + (1 - alpha) mean_labelled CE(zs, y)
with the rows labelled -1 left out (mask 1, the default) or counted in the soft term (mask 0).
When PyTorch is importable, the divergences are also computed the way TRL and DistiLLM write them
(F.kl_div with log_target, logsumexp mixtures) and compared.
Run: python3 tests/data/lm_losses_reference.py (Debian's python3-torch is in /usr/bin/python3)
"""
import math

ZS = [[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.0, 1.5], [-2.0, 0.5, 0.25, 0.0]]
ZT = [[2.0, 0.0, 1.0, -1.0], [0.5, -0.3, 0.0, 2.5], [-1.0, 1.5, 0.5, 0.2]]
Y = [2, -1, 1]
T, ALPHA, BETA, LAM = 2.0, 0.5, 0.5, 0.1


def softmax(z, t):
    m = max(z)
    e = [math.exp((v - m) / t) for v in z]
    s = sum(e)
    return [v / s for v in e]


def kl(a, b):
    return sum(x * (math.log(x) - math.log(y)) for x, y in zip(a, b) if x > 0)


def mix(a, b, w):
    return [w * x + (1 - w) * y for x, y in zip(a, b)]


DIVERGENCES = {
    "forward_kl": lambda p, q: kl(p, q),
    "reverse_kl": lambda p, q: kl(q, p),
    "jsd": lambda p, q: BETA * kl(p, mix(p, q, BETA)) + (1 - BETA) * kl(q, mix(p, q, BETA)),
    "skew_kl": lambda p, q: kl(p, mix(p, q, LAM)),
    "skew_reverse_kl": lambda p, q: kl(q, mix(p, q, 1 - LAM)),
    "tvd": lambda p, q: 0.5 * sum(abs(x - y) for x, y in zip(p, q)),
}


def ce(z, y):
    m = max(z)
    return -(z[y] - m - math.log(sum(math.exp(v - m) for v in z)))


def loss(name, mask):
    rows = [r for r in range(3) if Y[r] >= 0 or not mask]
    d = sum(DIVERGENCES[name](softmax(ZT[r], T), softmax(ZS[r], T)) for r in rows) / len(rows)
    labelled = [r for r in range(3) if Y[r] >= 0]
    hard = sum(ce(ZS[r], Y[r]) for r in labelled) / len(labelled)
    return ALPHA * T * T * d, (1 - ALPHA) * hard


def torch_check():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("# PyTorch not importable: cross-check skipped")
        return
    zs = torch.tensor(ZS, dtype=torch.float64) / T
    zt = torch.tensor(ZT, dtype=torch.float64) / T
    ls, lt = F.log_softmax(zs, -1), F.log_softmax(zt, -1)
    b = torch.tensor(BETA, dtype=torch.float64)
    lm = torch.logsumexp(torch.stack([ls + torch.log1p(-b), lt + torch.log(b)]), dim=0)
    jsd = b * F.kl_div(lm, lt, reduction="none", log_target=True) + \
        (1 - b) * F.kl_div(lm, ls, reduction="none", log_target=True)
    ps, pt = ls.exp(), lt.exp()
    ref = {
        "forward_kl": F.kl_div(ls, lt, reduction="none", log_target=True).sum(-1),
        "reverse_kl": F.kl_div(lt, ls, reduction="none", log_target=True).sum(-1),
        "jsd": jsd.sum(-1),
        "skew_kl": (pt * (lt - torch.log(LAM * pt + (1 - LAM) * ps))).sum(-1),
        "skew_reverse_kl": (ps * (ls - torch.log((1 - LAM) * pt + LAM * ps))).sum(-1),
        "tvd": 0.5 * (pt - ps).abs().sum(-1),
    }
    for name, fn in DIVERGENCES.items():
        for r in range(3):
            mine = fn(softmax(ZT[r], T), softmax(ZS[r], T))
            assert abs(mine - ref[name][r].item()) < 1e-12, (name, r)
    # the hard term is F.cross_entropy with ignore_index=-1, reduction "mean"
    hard = F.cross_entropy(torch.tensor(ZS, dtype=torch.float64), torch.tensor(Y),
                           ignore_index=-1)
    assert abs((1 - ALPHA) * hard.item() - loss("jsd", 1)[1]) < 1e-12
    print("# PyTorch %s agrees to 1e-12" % torch.__version__)
    # d total / d zs by autograd, JSD with the -1 row masked (the C test checks these)
    z = torch.tensor(ZS, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([r for r in range(3) if Y[r] >= 0])
    ls, lt = F.log_softmax(z[keep] / T, -1), F.log_softmax(zt[keep], -1)
    lm = torch.logsumexp(torch.stack([ls + torch.log1p(-b), lt + torch.log(b)]), dim=0)
    jsd = (b * F.kl_div(lm, lt, reduction="none", log_target=True) +
           (1 - b) * F.kl_div(lm, ls, reduction="none", log_target=True)).sum(-1).mean()
    total = ALPHA * T * T * jsd + (1 - ALPHA) * F.cross_entropy(z, torch.tensor(Y),
                                                                ignore_index=-1)
    total.backward()
    print("# jsd mask 1 gradient: " + ", ".join("%.9g" % v for v in z.grad.flatten().tolist()))


if __name__ == "__main__":
    torch_check()
    for name in DIVERGENCES:
        for mask in (1, 0):
            soft, hard = loss(name, mask)
            print("%-16s mask %d  soft %.10g  hard %.10g  total %.10g" %
                  (name, mask, soft, hard, soft + hard))
