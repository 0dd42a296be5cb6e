#!/usr/bin/python3
"""bench_lm.py: the transformer of bench/bench_lm.c in PyTorch, timed the same way, and the ratio.

One training step (forward, cross-entropy over batch * T tokens, backward, clip_grad_norm_ 1,
AdamW) and batch-1 greedy generation with a key/value cache, at the same shapes and thread count
as libkd's bench_lm (which this script runs), then libkd / PyTorch for each. Medians over --steps
steps and 3 generations, after one warm-up each; the step's CPU time (all threads) beside its wall
time. Threads: OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and KD_THREADS for libkd, torch.set_num_threads
for PyTorch. Not a test. Timings on a shared machine are noisy.

    /usr/bin/python3 bench/bench_lm.py build/bench/bench_lm [--threads 1] [--width 128] ...

Use Debian's python3-torch (/usr/bin/python3).
"""
import argparse
import ctypes
import math
import os
import subprocess
import time

# Debian's torch runs its matrix products on OpenBLAS, which reads its thread count when it loads
# and which torch.set_num_threads leaves alone: without this, "--threads 1" timed PyTorch's
# products on every core.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(
    _pre.parse_known_args()[0].threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def openblas_threads():
    """The thread count of the OpenBLAS this process loaded, or None."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in path and path.endswith(".so") or "libopenblas" in path:
            try:
                return ctypes.CDLL(path).openblas_get_num_threads()
            except (OSError, AttributeError):
                pass
    return None


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))

    def step(self, x, cache):
        """One token x [1, d] with the cached keys and values (a list [k, v] of [heads, t, dh])."""
        d = x.shape[-1]
        dh = d // self.heads
        h = self.ln1(x)
        q, k, v = F.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias).split(d, dim=-1)
        q, k, v = (z.view(self.heads, 1, dh) for z in (q, k, v))
        cache[0] = k if cache[0] is None else torch.cat([cache[0], k], dim=1)
        cache[1] = v if cache[1] is None else torch.cat([cache[1], v], dim=1)
        p = torch.softmax(q @ cache[0].transpose(1, 2) / math.sqrt(dh), dim=-1)
        a = (p @ cache[1]).reshape(1, d)
        x = x + self.attn.out_proj(a)
        return x + self.mlp(self.ln2(x))


class LM(nn.Module):
    def __init__(self, T, d, layers, heads):
        super().__init__()
        self.embed = nn.Embedding(256, d)
        self.pos = nn.Parameter(torch.zeros(T, d))
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 256, bias=False)
        self.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))

    def forward(self, ids):
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, self.mask)
        return self.head(self.ln(x))

    @torch.no_grad()
    def generate(self, first, count):
        caches = [[None, None] for _ in self.blocks]
        tok, out = first, []
        for pos in range(count):
            x = self.embed.weight[tok].view(1, -1) + self.pos[pos]
            for b, c in zip(self.blocks, caches):
                x = b.step(x, c)
            tok = int(self.head(self.ln(x)).argmax())
            out.append(tok)
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_lm", help="libkd's bench_lm binary")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    shape = ["--width", a.width, "--layers", a.layers, "--heads", a.heads, "--context", a.context,
             "--batch", a.batch, "--steps", a.steps]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               KD_THREADS=str(a.threads))
    out = subprocess.run([a.bench_lm] + [str(s) for s in shape], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    kd = dict(zip(out[1::2], map(float, out[2::2])))

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    m = LM(a.context, a.width, a.layers, a.heads)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (a.batch, a.context))
    y = torch.randint(0, 256, (a.batch * a.context,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x).view(-1, 256), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    step()
    times, cpu = [], []
    for _ in range(a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    pt_step = 1e3 * sorted(times)[len(times) // 2]
    pt_cpu = 1e3 * sorted(cpu)[len(cpu) // 2]
    m.eval()
    m.generate(ord("T"), a.context - 1)
    gen = []
    for _ in range(3):
        t0 = time.perf_counter()
        m.generate(ord("T"), a.context - 1)
        gen.append((a.context - 1) / (time.perf_counter() - t0))
    pt_gen = sorted(gen)[1]
    params = sum(p.numel() for p in m.parameters())
    print(f"shape: width {a.width}, {a.layers} blocks, {a.heads} heads, context {a.context}, "
          f"batch {a.batch}; {a.threads} thread(s); torch {torch.__version__}, its OpenBLAS on "
          f"{openblas_threads()} thread(s)")
    print(f"parameters: libkd {int(kd['params'])}, PyTorch {params}")
    print(f"training step (ms, lower is better): libkd {kd['step_ms']:.2f}, PyTorch {pt_step:.2f}, "
          f"libkd/PyTorch {kd['step_ms'] / pt_step:.2f}")
    print(f"training step, CPU time of all threads (ms; steadier on a loaded machine): "
          f"libkd {kd['step_cpu_ms']:.2f}, PyTorch {pt_cpu:.2f}, "
          f"libkd/PyTorch {kd['step_cpu_ms'] / pt_cpu:.2f}")
    print(f"generation, batch 1 (tokens/s, higher is better): libkd {kd['gen_tok_s']:.0f}, "
          f"PyTorch {pt_gen:.0f}, libkd/PyTorch {kd['gen_tok_s'] / pt_gen:.2f}")


if __name__ == "__main__":
    main()
