"""Distillation from Python through the ctypes binding, on a small synthetic task.

A teacher learns to tell three interleaved spirals apart from labels alone; a small student then
learns from the teacher's soft targets at T = 2 and the labels, alpha = 0.5 (Hinton et al. 2015),
next to the same student trained on the labels alone. Runs in seconds:

    KD_LIBRARY=build/libkd.so python3 examples/python/distill.py
"""
import array
import math
import random

import kd

CLASSES, BATCH = 3, 64


def spirals(n, seed):
    rng = random.Random(seed)
    x, labels = array.array("f"), []
    for _ in range(n):
        c, t = rng.randrange(CLASSES), rng.uniform(0.2, 1.0)
        angle = 4.0 * math.pi * t + 2.0 * math.pi * c / CLASSES
        x.extend([t * math.cos(angle) + rng.gauss(0, 0.04),
                  t * math.sin(angle) + rng.gauss(0, 0.04)])
        labels.append(c)
    return x, labels


def accuracy(model, x, labels):
    logits = model.predict(x, len(labels))
    right = 0
    for i, y in enumerate(labels):
        row = logits[i * CLASSES:(i + 1) * CLASSES]
        right += row.index(max(row)) == y
    return 100.0 * right / len(labels)


def train(model, x, labels, steps, teacher=None, temperature=4.0, alpha=0.0):
    loss = kd.Loss(temperature=temperature, alpha=alpha)
    opt = kd.Optimizer(model, learning_rate=0.1, momentum=0.9)
    trainer = kd.Trainer(model, loss, opt)
    if teacher is not None:
        trainer.add_teacher(teacher)
    n = len(labels)
    for step in range(steps):
        s = (step * BATCH) % (n - BATCH)
        value = trainer.step(x[2 * s:2 * (s + BATCH)], labels[s:s + BATCH], BATCH)
    trainer.close()
    return value


def main():
    print("libkd", kd.version())
    x, labels = spirals(4096, seed=1)
    tx, tlabels = spirals(1024, seed=2)

    teacher = kd.Model("input 2 | dense 64 | relu | dense 64 | relu | dense 3", seed=1)
    train(teacher, x, labels, steps=4000)
    print("teacher %5d parameters: test %.1f%%"
          % (teacher.param_count, accuracy(teacher, tx, tlabels)))

    spec = "input 2 | dense 16 | relu | dense 16 | relu | dense 3"
    alone = kd.Model(spec, seed=2)
    train(alone, x, labels, steps=1500)
    print("student %5d parameters, alone: test %.1f%%"
          % (alone.param_count, accuracy(alone, tx, tlabels)))

    student = kd.Model(spec, seed=2)
    train(student, x, labels, steps=1500, teacher=teacher, temperature=2.0, alpha=0.5)
    print("student %5d parameters, distilled: test %.1f%%"
          % (student.param_count, accuracy(student, tx, tlabels)))


if __name__ == "__main__":
    main()
