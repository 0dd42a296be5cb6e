"""PyTorch and libkd, both ways: a teacher trained in PyTorch, a student distilled by libkd from
the teacher's logits, the student back in PyTorch with the same outputs.

1. PyTorch (Debian's python3-torch) trains a 784-256-10 MLP teacher on the first 1,000 images
   of the Fashion-MNIST subset in tests/data (cut from Debian's dataset-fashion-mnist), and its
   logits are saved with NumPy (teacher_logits.npy, float32 [1000, 10]).
2. libkd, through the kd package, distils a 784-64-10 student from those logits alone (the
   teacher never runs in libkd: Trainer.step(x, labels, teacher_logits=...)), Hinton's loss at
   T = 4, alpha = 0.9, and saves it as safetensors.
3. PyTorch loads the student's tensors (a plain nn.Sequential state dict) and gives the same
   logits as libkd on the test subset.

    PYTHONPATH=python KD_LIBRARY=build/libkd.so /usr/bin/python3 examples/python/torch_roundtrip.py

Without PyTorch (CI): --reference tests/data/torch_roundtrip distils from the teacher logits
committed there (made by --write-reference DIR, which needs PyTorch), and checks step 3 with
NumPy's x @ W.T + b, PyTorch's Linear formula, against the teacher's committed accuracy.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# This directory holds kd.py, the standard-library binding; the kd package (python/kd) is meant.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
import kd  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "tests", "data")
N_TRAIN, SEED = 1000, 1
STUDENT = "input 784 | dense 64 | relu | dense 10"


def load(prefix, n=None):
    """(x float32 [n, 784], labels int32 [n]) of an IDX pair, as NumPy views of libkd's memory."""
    d = kd.Dataset.load_idx_prefix(prefix)
    x, y = d.images.reshape(len(d), -1), d.labels
    return (x, y) if n is None else (x[:n], y[:n])


def train_teacher(x, y, epochs=15):
    """A PyTorch MLP teacher trained on x, y; returns the model (eval mode)."""
    import torch
    torch.manual_seed(SEED)
    teacher = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                  torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(teacher(xt[idx]), yt[idx]).backward()
            opt.step()
    return teacher.eval()


def torch_logits(model, x):
    import torch
    with torch.no_grad():
        return model(torch.from_numpy(np.array(x))).numpy()


def distil(x, y, teacher_logits, epochs=20):
    """A libkd student distilled from cached teacher logits float32 [n, 10]."""
    student = kd.Model(STUDENT, seed=SEED)
    with kd.Trainer(student, kd.Loss(temperature=4.0, alpha=0.9),
                    kd.Optimizer(student, learning_rate=0.05, momentum=0.9)) as trainer:
        rng = np.random.default_rng(SEED)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                # fancy indexing makes new contiguous arrays; the trainer reads them in place
                trainer.step(x[idx], y[idx], teacher_logits=teacher_logits[idx])
    return student


def student_in_torch(path):
    """The saved student as a PyTorch nn.Sequential, its state dict read by kd.Tensors."""
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with kd.Tensors.load(path) as t:
        state = {name: torch.from_numpy(t[name]) for name in t.keys()}
    model.load_state_dict(state)
    return model.eval()


def student_in_numpy(path, x):
    """The same forward in NumPy: PyTorch's Linear is x @ W.T + b."""
    with kd.Tensors.load(path) as t:
        h = np.maximum(x @ t["0.weight"].T + t["0.bias"], 0.0)
        return h @ t["2.weight"].T + t["2.bias"]


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", metavar="DIR", help="use committed teacher logits; no torch")
    ap.add_argument("--write-reference", metavar="DIR", help="write those files (needs torch)")
    args = ap.parse_args()

    x, y = load(os.path.join(DATA, "fmnist-train-2000"), N_TRAIN)
    xt, yt = load(os.path.join(DATA, "fmnist-test-500"))

    if args.reference:
        logits = np.load(os.path.join(args.reference, "teacher_logits.npy"))
        with open(os.path.join(args.reference, "reference.json")) as f:
            ref = json.load(f)
        teacher_acc = ref["teacher_test_accuracy"]
    else:
        teacher = train_teacher(x, y)
        logits = torch_logits(teacher, x).astype(np.float32)
        teacher_acc = accuracy(torch_logits(teacher, xt), yt)
    print("teacher (PyTorch): test accuracy %.3f" % teacher_acc)

    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "teacher_logits.npy"), logits)  # what a user would hand over
        logits = np.load(os.path.join(tmp, "teacher_logits.npy"))
        assert logits.dtype == np.float32 and logits.shape == (N_TRAIN, 10)
        student = distil(x, y, logits)
        kd_out = student.predict(xt)
        student_acc = accuracy(kd_out, yt)
        print("student (libkd, from the teacher's logits): test accuracy %.3f" % student_acc)
        path = os.path.join(tmp, "student.safetensors")
        student.save(path)
        if args.reference:
            back = student_in_numpy(path, xt)
            where = "NumPy (PyTorch's Linear formula)"
        else:
            back = torch_logits(student_in_torch(path), xt)
            where = "PyTorch"
    diff = float(np.abs(back - kd_out).max())
    print("student in %s: max |logit difference| %.2g, same predictions: %s"
          % (where, diff, bool((back.argmax(1) == kd_out.argmax(1)).all())))

    if args.write_reference:
        os.makedirs(args.write_reference, exist_ok=True)
        np.save(os.path.join(args.write_reference, "teacher_logits.npy"), logits)
        with open(os.path.join(args.write_reference, "reference.json"), "w") as f:
            json.dump({"teacher_test_accuracy": round(teacher_acc, 4),
                       "student_test_accuracy": round(student_acc, 4),
                       "torch": __import__("torch").__version__}, f, indent=1)
            f.write("\n")

    ok = diff < 1e-4 and student_acc > 0.6 and student_acc > teacher_acc - 0.15
    if args.reference:  # another kernel variant (ref, AVX2, AVX-512) rounds otherwise: near
        ok = ok and abs(student_acc - ref["student_test_accuracy"]) <= 0.03
    if not ok:
        print("FAILED: expected equal outputs and a student within 0.15 of its teacher (and "
              "within 0.03 of the reference run's)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
