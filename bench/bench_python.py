"""The Python bindings' cost per training step: the kd package (NumPy, no copies) against
examples/python/kd.py (standard library: labels copied each step) and the C library's own time.

Trains a 784-128-10 student from cached teacher logits (batch 128, Fashion-MNIST subset), and a
4-3 one on a batch of 8 (where the binding's own cost shows), interleaving the two bindings
round by round; prints the median microseconds per step of each.

    PYTHONPATH=python KD_LIBRARY=build/libkd.so /usr/bin/python3 bench/bench_python.py [ROUNDS]
"""
import array
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

import kd

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load_stdlib_binding():
    spec = importlib.util.spec_from_file_location(
        "kd_stdlib", os.path.join(ROOT, "examples", "python", "kd.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.lib(kd.capi.path())
    return mod


def run(old, rounds, spec, inputs, classes, batch, steps):
    d = kd.Dataset.load_idx_prefix(os.path.join(ROOT, "tests", "data", "fmnist-train-2000"))
    x = np.ascontiguousarray(np.array(d.images[:batch]).reshape(batch, 784)[:, :inputs])
    y = np.array(d.labels[:batch]) % classes
    z = np.sin(np.arange(batch * classes, dtype=np.float32)).reshape(batch, classes)
    xa, ya, za = array.array("f", x.tobytes()), y.tolist(), array.array("f", z.tobytes())

    def new_binding():
        s = kd.Model(spec, seed=2)
        t = kd.Trainer(s, kd.Loss(), kd.Optimizer(s, learning_rate=0.01))
        return lambda: t.step(x, y, teacher_logits=z)

    def old_binding():
        s = old.Model(spec, seed=2)
        t = old.Trainer(s, old.Loss(), old.Optimizer(s, learning_rate=0.01))
        return lambda: t.step(xa, ya, batch, teacher_logits=za)

    times = {"kd package (NumPy)": [], "examples/python/kd.py": []}
    for _ in range(rounds):
        for name, make in (("kd package (NumPy)", new_binding), ("examples/python/kd.py",
                                                                  old_binding)):
            step = make()
            step()  # warm-up: the trainer's buffers
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps * 1e6)
    print("%s, batch %d:" % (spec, batch))
    for name, v in times.items():
        print("  %-24s median %8.1f us/step (min %.1f, %d rounds of %d steps)"
              % (name, statistics.median(v), min(v), rounds, steps))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    old = load_stdlib_binding()
    print("load: %s" % open("/proc/loadavg").read().strip())
    run(old, rounds, "input 784 | dense 128 | relu | dense 10", 784, 10, 128, 15)
    run(old, rounds, "input 4 | dense 3", 4, 3, 8, 2000)


if __name__ == "__main__":
    main()
