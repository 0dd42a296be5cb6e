"""libkd and PyTorch side by side on the same shapes, batch and thread count (issue 11).

Run through bench/compare.sh, which picks Debian's /usr/bin/python3 (the one with python3-torch):
    bench/compare.sh [BUILD_DIR] [quick|full]
For each OpenBLAS setting (OPENBLAS_CORETYPE=Haswell and unset) and each thread count (1, 2) it
times every workload of build/bench/bench_compare (one process a row) and the same workload in
PyTorch (one process a setting), and prints ms a call, images/s, GFLOP/s, the share of the FMA
peak (one core's, measured by `bench_compare peak` or KD_PEAK_GFLOPS, times the threads) and libkd / PyTorch (time: below 1, libkd
is faster). FLOPs count 2 a multiply-add of the conv and dense layers (x3 for a training step:
forward, input and weight gradients; a live teacher's forward x1); the rest is not counted.
quick: about 0.3 s a measurement (a minute or two in all); full: 3 s a measurement.
memory: peak resident memory (the child's ru_maxrss) of `kd train` of the ResNet teacher and of
`kd distill` of the small CNN from it on Fashion-MNIST, one epoch each (minutes: real training).
"""
import os
import subprocess
import sys
import time

# One core's FP32 FMA peak in GFLOP/s: KD_PEAK_GFLOPS if set, else measured by `bench_compare peak`
# (an FMA loop at the widest ISA), else the Zen 5 of bench/RESULTS.md (2 FMA units x 16 floats x 2
# x ~3.5 GHz, AVX-512). A Zen 3 without AVX-512 measures about 90.
PEAK_ZEN5 = 224.0


def peak_per_core(prog):
    """(GFLOP/s, how it was found)."""
    if os.environ.get("KD_PEAK_GFLOPS"):
        try:
            v = float(os.environ["KD_PEAK_GFLOPS"])
        except ValueError:
            v = 0.0
        if not v > 0:
            sys.exit(f"KD_PEAK_GFLOPS={os.environ['KD_PEAK_GFLOPS']}: not a positive number")
        return v, "KD_PEAK_GFLOPS"
    r = subprocess.run([prog, "peak"], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.startswith("peak "):
        f = r.stdout.split()
        return float(f[1]), f"measured, {f[2]} FMA loop"
    return PEAK_ZEN5, "assumed: Zen 5's"

WORKLOADS = [
    # name, what, examples a call (images/s), training step?
    ("resnet", "ResNet teacher train step, batch 128", 128),
    ("cnn", "small CNN train step, batch 128", 128),
    ("mlp_live", "MLP 784-1200-1200-10 -> 784-800-800-10, live teacher, batch 128", 128),
    ("mlp_cached", "same, cached teacher logits", 128),
    ("eval", "kd eval 784-256-10, batch 256 (10240 images a call)", 10240),
    ("lat_mlp", "batch-1 latency, 784-256-10 student", 1),
    ("lat_cnn", "batch-1 latency, small CNN", 1),
]


# ------------------------------------------------------------------ PyTorch side

def torch_models():
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    def resnet():
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                                   nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(32))), nn.ReLU(),
            Residual(nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(64), nn.ReLU(),
                                   nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
                     nn.Sequential(nn.Conv2d(32, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64))),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def cnn():
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 7 * 7, 10))

    def mlp(*d):
        layers = []
        for i in range(len(d) - 1):
            layers.append(nn.Linear(d[i], d[i + 1]))
            if i + 2 < len(d):
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    return {"resnet": resnet, "cnn": cnn, "mlp_teacher": lambda: mlp(784, 1200, 1200, 10),
            "mlp_student": lambda: mlp(784, 800, 800, 10), "small": lambda: mlp(784, 256, 10)}


def forward_flops(model, shape):
    """2 x the multiply-adds of conv and dense layers for one example of `shape`."""
    import torch
    from torch import nn
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += 2 * out.numel() * (mod.in_channels // mod.groups) * \
                mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features
    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()
        model(torch.zeros((1,) + shape))
    for h in hooks:
        h.remove()
    return total[0]


def torch_setup(name):
    """(callable of one call, FLOPs of one call)."""
    import torch
    import torch.nn.functional as F
    mk = torch_models()
    img = (1, 28, 28)
    if name in ("resnet", "cnn"):
        m = mk[name]()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(128, *img), torch.arange(128) % 10
        m.train()

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        return step, 3 * 128 * forward_flops(m, img)
    if name in ("mlp_live", "mlp_cached"):
        s, t = mk["mlp_student"](), mk["mlp_teacher"]()
        t.eval()
        opt = torch.optim.SGD(s.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(128, 784), torch.arange(128) % 10
        cached = torch.randn(128, 10) * 3
        temp, alpha = 4.0, 0.5
        live = name == "mlp_live"

        def step():
            if live:
                with torch.no_grad():
                    tl = t(x)
            else:
                tl = cached
            opt.zero_grad(set_to_none=True)
            z = s(x)
            kl = F.kl_div(F.log_softmax(z / temp, 1), F.softmax(tl / temp, 1),
                          reduction="batchmean")
            loss = alpha * F.cross_entropy(z, y) + (1 - alpha) * temp * temp * kl
            loss.backward()
            opt.step()
        flops = 3 * 128 * forward_flops(s, (784,))
        if live:
            flops += 128 * forward_flops(t, (784,))
        return step, flops
    if name == "eval":
        m = mk["small"]()
        m.eval()
        x, y = torch.randn(10240, 784), torch.arange(10240) % 10

        def ev():
            with torch.inference_mode():
                correct = 0
                for i in range(0, 10240, 256):
                    correct += int((m(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum())
        return ev, 10240 * forward_flops(m, (784,))
    if name in ("lat_mlp", "lat_cnn"):
        m = mk["small"]() if name == "lat_mlp" else mk["cnn"]()
        m.eval()
        shape = (784,) if name == "lat_mlp" else img
        x = torch.randn(1, *shape)

        def pred():
            with torch.inference_mode():
                m(x)
        return pred, forward_flops(m, shape)
    raise SystemExit("unknown workload " + name)


def best_time(fn, seconds):
    """The best mean of rounds of about 2 ms (or one call), for about `seconds`: a short call is
    timed between two preemptions on a loaded machine (as bench_compare.c does)."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    per_round = int(0.002 / (one + 1e-9)) + 1
    rounds = min(10000, max(5, int(seconds / (one * per_round + 1e-9))))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            fn()
        best = min(best, (time.perf_counter() - t0) / per_round)
    return best


def torch_main(seconds, threads, names):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for name in names:
        fn, flops = torch_setup(name)
        print(name, best_time(fn, seconds), flops, flops, flush=True)


# ------------------------------------------------------------------ the driver

def flops_of(names):
    """FLOPs a call, from PyTorch's models (the same shapes as libkd's)."""
    out = {}
    for name in names:
        _, flops = torch_setup(name)
        out[name] = flops
    return out


RESNET_SPEC = ("input 1x28x28 | conv 32 3 pad=1 bias=0 | bn | relu | maxpool 2 | "
               "residual(conv 32 3 pad=1 bias=0 | bn | relu | conv 32 3 pad=1 bias=0 | bn) | relu | "
               "residual(conv 64 3 stride=2 pad=1 bias=0 | bn | relu | conv 64 3 pad=1 bias=0 | bn)"
               "(conv 64 1 stride=2 bias=0 | bn) | relu | gap | flatten | dense 10")
CNN_SPEC = ("input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu | "
            "maxpool 2 | flatten | dense 10")


def peak_mb(cmd):
    """(peak resident MB, seconds) of one run of cmd."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("failed: " + " ".join(cmd))
    return ru.ru_maxrss / 1024.0, time.perf_counter() - t0


def memory(build):
    import tempfile
    kd = os.path.join(build, "kd")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = os.path.join(tmp, "resnet.safetensors")
        runs = [("kd train, ResNet teacher, 1 epoch",
                 [kd, "train", "--model", RESNET_SPEC, "--epochs", "1", "-q", "--out", teacher]),
                ("kd distill, small CNN from it, 1 epoch",
                 [kd, "distill", "--teacher", teacher, "--student", CNN_SPEC, "--epochs", "1",
                  "-q", "--out", os.path.join(tmp, "s.safetensors"), "--cache-dir",
                  os.path.join(tmp, "cache")])]
        print(f"# peak resident memory on Fashion-MNIST; load {os.getloadavg()[0]:.2f}")
        for what, cmd in runs:
            mb, sec = peak_mb(cmd)
            print(f"{what:<42} {mb:8.0f} MB {sec:8.1f} s", flush=True)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    mode = sys.argv[2] if len(sys.argv) > 2 else "quick"
    if mode == "memory":
        return memory(build)
    seconds = 0.3 if mode == "quick" else 3.0
    names = [w[0] for w in WORKLOADS]
    examples = {w[0]: w[2] for w in WORKLOADS}
    what = {w[0]: w[1] for w in WORKLOADS}
    prog = os.path.join(build, "bench", "bench_compare")
    import torch
    flops = flops_of(names)
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    peak_core, how = peak_per_core(prog)
    print(f"# {model}, {os.cpu_count()} logical CPUs; peak {peak_core:.0f} GFLOP/s a core ({how}); "
          f"PyTorch {torch.__version__}; load {os.getloadavg()[0]:.2f}; mode {mode}")
    for name in names:
        print(f"#   {name}: {what[name]}, {flops[name] / 1e9:.4f} GFLOP a call")
    hdr = (f"{'workload':<11} {'OPENBLAS_CORETYPE':<17} {'thr':>3} {'libkd ms':>10} "
           f"{'torch ms':>10} {'libkd img/s':>12} {'torch img/s':>12} {'libkd GF/s':>10} "
           f"{'torch GF/s':>10} {'libkd %pk':>9} {'torch %pk':>9} {'kd/torch':>8}")
    print(hdr)
    for core in ("Haswell", None):
        for threads in (1, 2):
            env = dict(os.environ)
            env.pop("OPENBLAS_CORETYPE", None)
            if core:
                env["OPENBLAS_CORETYPE"] = core
            env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
            env["KD_THREADS"] = str(threads)
            tp = subprocess.run([sys.executable, __file__, "--torch", str(seconds), str(threads)]
                                + names, env=env, capture_output=True, text=True)
            if tp.returncode != 0:
                sys.exit("PyTorch side failed:\n" + tp.stderr)
            ttimes = {l.split()[0]: float(l.split()[1]) for l in tp.stdout.splitlines()}
            for name in names:
                kp = subprocess.run([prog, name, str(seconds), str(threads)], env=env,
                                    capture_output=True, text=True)
                if kp.returncode != 0:
                    sys.exit("libkd side failed:\n" + kp.stderr)
                kt, tt = float(kp.stdout.split()[1]), ttimes[name]
                peak = peak_core * threads
                n, fl = examples[name], flops[name]
                print(f"{name:<11} {core or '(unset)':<17} {threads:>3} {kt * 1e3:>10.4f} "
                      f"{tt * 1e3:>10.4f} {n / kt:>12.0f} {n / tt:>12.0f} {fl / kt * 1e-9:>10.1f} "
                      f"{fl / tt * 1e-9:>10.1f} {100 * fl / kt * 1e-9 / peak:>8.1f}% "
                      f"{100 * fl / tt * 1e-9 / peak:>8.1f}% {kt / tt:>8.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--torch":
        torch_main(float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    else:
        main()
