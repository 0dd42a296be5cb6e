#!/usr/bin/python3
"""Reference values for the CRD test in tests/test_losses_feature.c (Tian et al., ICLR 2020,
the InfoNCE form of the critic), computed with PyTorch autograd in float64.

The features are sin(0.37 i + offset) * scale rounded to float32, as the C test builds them. Three
forwards through one memory of K = 4 slots (d = 5, tau = 0.2): A (4 rows, momentum 0: the memory
becomes A's unit teacher rows), B (3 rows, momentum 0.5; loss and gradient compared), C (2 rows,
the memory then holds normalise(0.5 vA + 0.5 vB) in slots 0-2 and vA_3 in slot 3).
Run with Debian's python3-torch: /usr/bin/python3 tests/reference/crd_reference.py
"""
import math

import torch

D, K, TAU = 5, 4, 0.2


def feat(rows, offset, scale):
    x = [math.sin(0.37 * i + offset) * scale for i in range(rows * D)]
    return torch.tensor(x, dtype=torch.float32).double().reshape(rows, D)


def unit(x):
    return x / torch.sqrt((x * x).sum(1, keepdim=True) + 1e-12)


def crd(s, t, memory):
    u, v = unit(s), unit(t)
    pos = (u * v).sum(1, keepdim=True) / TAU
    neg = u @ memory.t() / TAU
    logits = torch.cat([pos, neg], 1)
    return (torch.logsumexp(logits, 1) - logits[:, 0]).mean()


sa, ta = feat(4, 0.0, 1.5), feat(4, 1.0, 2.0)
sb, tb = feat(3, 2.0, 1.0), feat(3, 3.0, 0.7)
sc, tc = feat(2, 4.0, 2.5), feat(2, 5.0, 1.2)
memory = unit(ta)  # momentum 0: A's teacher rows
sb.requires_grad_(True)
lb = crd(sb, tb, memory)
lb.backward()
print("loss B %.10f" % lb.item())
print("grad B", ", ".join("%.10f" % g for g in sb.grad.flatten().tolist()))
vb = unit(tb)
memory = memory.clone()
for i in range(3):
    memory[i] = unit((0.5 * memory[i] + 0.5 * vb[i]).unsqueeze(0))[0]
lc = crd(sc, tc, memory)
print("loss C %.10f" % lc.item())
