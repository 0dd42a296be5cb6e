"""The ctypes binding (examples/python/kd.py) against a built libkd.so.

ctest runs it with KD_LIBRARY pointing at the library (and PYTHONPATH at examples/python); by hand:
    KD_LIBRARY=build/libkd.so python3 -m unittest discover -s tests/python
"""
import array
import gc
import itertools
import gzip
import math
import os
import re
import sys
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))
import kd  # noqa: E402

BATCH, IN, CLASSES = 8, 6, 3
HEADER = os.path.join(ROOT, "include", "kd.h")
DATA = os.path.join(ROOT, "tests", "data")
TRAIN_IMAGES = os.path.join(DATA, "fmnist-train-2000-images-idx3-ubyte.gz")
TRAIN_LABELS = os.path.join(DATA, "fmnist-train-2000-labels-idx1-ubyte.gz")
TEST_IMAGES = os.path.join(DATA, "fmnist-test-500-images-idx3-ubyte.gz")
TEST_LABELS = os.path.join(DATA, "fmnist-test-500-labels-idx1-ubyte.gz")
PIXELS, FCLASSES = 784, 10


def batch_data():
    x = array.array("f", [math.sin(0.7 * i) for i in range(BATCH * IN)])
    labels = [i % CLASSES for i in range(BATCH)]
    return x, labels


class Versions(unittest.TestCase):
    def test_version_matches_the_number(self):
        major, minor, patch = (int(p) for p in kd.version().split("."))
        self.assertEqual(kd.lib().kd_version_number(), major * 10000 + minor * 100 + patch)

    def test_kernels_name(self):
        self.assertIn(kd.lib().kd_kernels_name().decode(), ("ref", "avx2", "avx512"))


class Limits(unittest.TestCase):
    def test_a_spec_over_the_budget_is_refused(self):
        old = kd.get_limit(kd.LIMIT_MODEL_VALUES)
        kd.set_limit(kd.LIMIT_MODEL_VALUES, 100)
        try:
            with self.assertRaises(kd.KdError) as e:
                kd.Model("input 10 | dense 10", seed=1)
            self.assertEqual(e.exception.status, kd.ERR_FORMAT)
        finally:
            kd.set_limit(kd.LIMIT_MODEL_VALUES, old)
        self.assertEqual(kd.get_limit(kd.LIMIT_MODEL_VALUES), old)

    def test_an_int_out_of_its_c_range_is_refused(self):
        # ctypes would pass seed -1 as 2^64 - 1 without a word
        for seed in (-1, 2**64):
            with self.assertRaises(ValueError):
                kd.Model("input 4 | dense 2", seed=seed)

    def test_libc_allocator_again(self):
        kd.set_allocator()  # back to libc's, as it already is
        kd.Model("input 4 | dense 2", seed=1).close()

    def test_some_allocator_functions_are_refused(self):
        for given in ((lambda u, n: None,), (None, None, None, lambda u, p: None)):
            with self.assertRaises(kd.KdError) as err:
                kd.set_allocator(*given)
            self.assertEqual(err.exception.status, kd.ERR_ARGUMENT)
            self.assertIn("missing", str(err.exception))
        kd.Model("input 4 | dense 2", seed=1).close()  # libc's still


class Distillation(unittest.TestCase):
    def setUp(self):
        self.teacher = kd.Model("input %d | dense 32 | relu | dense %d" % (IN, CLASSES), seed=1)
        self.student = kd.Model("input %d | dense 8 | tanh | dense %d" % (IN, CLASSES), seed=2)

    def test_model_sizes(self):
        self.assertEqual(self.student.input_size, IN)
        self.assertEqual(self.student.output_size, CLASSES)
        self.assertEqual(self.student.param_count, IN * 8 + 8 + 8 * CLASSES + CLASSES)
        self.assertTrue(self.student.spec.startswith("input %d" % IN))

    def test_soft_targets_are_probabilities(self):
        x, _ = batch_data()
        probs = kd.soft_targets([self.teacher], x, BATCH, 4.0)
        self.assertEqual(len(probs), BATCH * CLASSES)
        for r in range(BATCH):
            row = probs[r * CLASSES:(r + 1) * CLASSES]
            self.assertTrue(all(p > 0 for p in row))
            self.assertAlmostEqual(sum(row), 1.0, places=5)

    def test_soft_targets_refuses_short_buffers(self):
        # the library reads batch * input_size values of x and one weight a teacher
        x, _ = batch_data()
        with self.assertRaises(ValueError):
            kd.soft_targets([self.teacher], x, 2000000, 2.0)
        with self.assertRaises(ValueError):
            kd.soft_targets([self.teacher, self.teacher], x, BATCH, 2.0, [1.0])
        probs = kd.soft_targets([self.teacher, self.teacher], x, BATCH, 2.0, [1.0, 3.0])
        self.assertEqual(len(probs), BATCH * CLASSES)

    def test_a_higher_temperature_is_softer(self):
        x, _ = batch_data()
        sharp = kd.soft_targets([self.teacher], x, BATCH, 1.0)
        soft = kd.soft_targets([self.teacher], x, BATCH, 8.0)
        self.assertLess(max(soft), max(sharp))

    def test_trainer_steps_lower_the_loss(self):
        x, labels = batch_data()
        loss = kd.Loss(temperature=4.0, alpha=0.9)
        opt = kd.Optimizer(self.student, learning_rate=0.05, momentum=0.9)
        trainer = kd.Trainer(self.student, loss, opt)
        trainer.add_teacher(self.teacher)
        values = [trainer.step(x, labels, BATCH) for _ in range(20)]
        self.assertTrue(all(math.isfinite(v) for v in values))
        self.assertLess(values[-1], 0.8 * values[0], values)
        self.assertAlmostEqual(loss.value(kd.LOSS_PART_TOTAL),
                               loss.value(kd.LOSS_PART_SOFT) + loss.value(kd.LOSS_PART_HARD),
                               places=4)
        self.assertEqual(opt.get_int(kd.OPT_STEP), 20)

    def lone_and_parallel(self, attach):
        """Three steps of a lone trainer, then of one that attach(trainer) joins to a stand-in for
        two identical processes: both lists of losses."""
        x, labels = batch_data()
        steps = []
        for parallel in (False, True):
            student = kd.Model("input 6 | dense 5 | relu | dense 3", seed=3)
            opt = kd.Optimizer(student, learning_rate=0.05)
            trainer = kd.Trainer(student, kd.Loss(temperature=2.0, alpha=0.5), opt)
            trainer.add_teacher(self.teacher)
            if parallel:
                attach(trainer)
            steps.append([trainer.step(x, labels, BATCH) for _ in range(3)])
        return steps

    def test_data_parallel_with_a_python_allreduce(self):
        # Two identical processes stood for by one: the sum doubles, the step is the lone one.
        def double(data, count):
            for i in range(count):
                data[i] *= 2.0
            return 0

        lone, parallel = self.lone_and_parallel(lambda t: t.set_allreduce(double, 0, 2))
        for a, b in zip(lone, parallel):
            self.assertAlmostEqual(a, b, places=5)

    def test_data_parallel_with_a_non_blocking_allreduce(self):
        # The sums are doubled at wait, in small buckets: still the lone steps.
        pending, tags = {}, []

        def start(data, count, tag):
            pending[tag] = (data, count)
            tags.append(tag)
            return 0

        def wait(tag):
            data, count = pending.pop(tag)
            for i in range(count):
                data[i] *= 2.0
            return 0

        def attach(trainer):
            trainer.set_allreduce_async(start, wait, 0, 2)
            trainer.set_int(kd.TRAINER_BUCKET_FLOATS, 4)
            self.assertEqual(trainer.get_int(kd.TRAINER_BUCKET_FLOATS), 4)

        lone, parallel = self.lone_and_parallel(attach)
        for a, b in zip(lone, parallel):
            self.assertAlmostEqual(a, b, places=5)
        self.assertIn(kd.ALLREDUCE_TAG_NOW, tags)
        self.assertGreater(max(t for t in tags if t < kd.ALLREDUCE_MAX_BUCKETS), 0)
        self.assertLess(max(tags), kd.ALLREDUCE_TAGS)

    def test_schedules_and_clipping(self):
        opt = kd.Optimizer(self.student, learning_rate=0.1)
        opt.set_int(kd.OPT_SCHEDULE, kd.SCHEDULE_MULTISTEP)
        opt.set_milestones([2, 5])
        self.assertEqual(opt.get_milestones(), [2, 5])
        opt.set_int(kd.OPT_STEP, 3)
        self.assertAlmostEqual(opt.get_float(kd.OPT_CURRENT_LR), 0.01, places=7)
        with self.assertRaises(kd.KdError) as caught:
            opt.set_milestones([5, 2])
        self.assertEqual(caught.exception.status, kd.ERR_ARGUMENT)
        opt.set_float(kd.OPT_CLIP_NORM, 1.0)
        self.assertEqual(opt.get_float(kd.OPT_CLIP_NORM), 1.0)

    def test_predict_and_files(self):
        x, _ = batch_data()
        before = self.student.predict(x, BATCH)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "student.safetensors")
            self.student.save(path)
            loaded = kd.Model.load(path)
            self.assertEqual(loaded.spec, self.student.spec)
            self.assertEqual(list(loaded.predict(x, BATCH)), list(before))
            loaded.close()


class KdTestCase(unittest.TestCase):
    def assertFailsWith(self, status, call, *args):
        with self.assertRaises(kd.KdError) as caught:
            call(*args)
        err = caught.exception
        self.assertEqual(err.status, status, str(err))
        # the exception carries the library's own sentence, which is also kd_last_error()
        self.assertTrue(err.message)
        self.assertEqual(err.message, kd.lib().kd_last_error().decode())
        self.assertIn(err.message, str(err))
        return err


class Quantize(KdTestCase):
    def test_int8_model_predicts_close_to_float(self):
        m = kd.Model("input 6 | dense 8 | relu | dense 3", seed=2)
        x = array.array("f", [math.sin(0.3 * i) for i in range(32 * IN)])
        q = m.quantize(x, 32, kd.CALIBRATION_PERCENTILE, 99.9)
        self.assertTrue(q.quantized)
        self.assertFalse(m.quantized)
        self.assertIn("qdense", q.spec)
        a, b = m.predict(x, 32), q.predict(x, 32)
        spread = max(a) - min(a)
        self.assertLess(max(abs(u - v) for u, v in zip(a, b)), 0.05 * spread)


class Errors(KdTestCase):
    def test_null_spec(self):
        err = self.assertFailsWith(kd.ERR_ARGUMENT, kd.Model, None)
        self.assertIn("spec", err.message)

    def test_bad_spec(self):
        err = self.assertFailsWith(kd.ERR_FORMAT, kd.Model, "input 4 | bogus 3")
        self.assertIn("bogus", err.message)

    def test_bad_option(self):
        loss = kd.Loss()
        self.assertFailsWith(kd.ERR_ARGUMENT, loss.set, kd.LOSS_TEMPERATURE, -1.0)
        self.assertAlmostEqual(loss.get(kd.LOSS_TEMPERATURE), 4.0)  # unchanged: the default

    def test_wrong_input_size_is_refused(self):
        m = kd.Model("input 4 | dense 2", seed=3)
        with self.assertRaises(ValueError):
            m.predict([0.0] * 3, 1)  # the binding checks lengths before calling C

    def test_missing_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertFailsWith(kd.ERR_IO, kd.Model.load, os.path.join(tmp, "absent.safetensors"))


def header():
    """kd.h without its comments."""
    with open(HEADER) as f:
        return re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)


class Completeness(unittest.TestCase):
    """kd.py binds every function and enum of kd.h, so the binding cannot fall behind."""

    def test_every_function_is_bound(self):
        decls = re.findall(r"KD_API\s+([^;()]*?)\b(kd_\w+)\s*\(([^)]*)\)\s*;", header())
        self.assertGreaterEqual(len(decls), 71)
        with open(kd.__file__) as f:
            source = f.read()
        missing = [name for _, name, _ in decls if name not in kd._STATUS and name not in kd._OTHER]
        self.assertEqual(missing, [], "kd.h functions that kd.py does not bind")
        for ret, name, params in decls:
            ret = ret.strip()
            nargs = 0 if params.strip() in ("", "void") else params.count(",") + 1
            if ret == "kd_status":
                self.assertIn(name, kd._STATUS, "%s returns kd_status" % name)
                argtypes = kd._STATUS[name]
            else:
                self.assertIn(name, kd._OTHER, "%s does not return kd_status" % name)
                restype, argtypes = kd._OTHER[name]
                self.assertEqual(restype is None, ret == "void", name)
            self.assertEqual(len(argtypes), nargs, "%s takes %d arguments" % (name, nargs))
            # declared once in a table and called (or named as a destructor) at least once
            self.assertGreaterEqual(len(re.findall(r"\b%s\b" % name, source)), 2,
                                    "%s is declared but nothing in kd.py calls it" % name)
            self.assertTrue(hasattr(kd.lib(), name))

    def test_every_enum_value_is_there(self):
        values = re.findall(r"\bKD_([A-Z0-9_]+)\s*=\s*(\d+)", header())
        values += re.findall(r"#define\s+KD_([A-Z0-9_]+)\s+(\d+)\s*$", header(), flags=re.M)
        self.assertGreater(len(values), 50)
        missing = [n for n, _ in values if not hasattr(kd, n)]
        self.assertEqual(missing, [], "kd.h constants that kd.py lacks (as KD_ without the KD_)")
        for name, value in values:
            self.assertEqual(getattr(kd, name), int(value), name)


def softmax(row, temperature=1.0):
    top = max(row)
    e = [math.exp((v - top) / temperature) for v in row]
    return [v / sum(e) for v in e]


def train_set():
    return kd.Dataset(TRAIN_IMAGES, TRAIN_LABELS)


class Data(KdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.train = train_set()

    def test_loads_the_subset(self):
        d = self.train
        self.assertEqual((d.size, len(d), d.shape, d.example_size), (2000, 2000, (1, 28, 28), 784))
        # the same figures as tests/test_dataset.c
        self.assertEqual(list(d.labels[:10]), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
        counts = [0] * FCLASSES
        for y in d.labels:
            counts[y] += 1
        self.assertEqual(counts, [194, 216, 202, 195, 186, 200, 194, 215, 198, 200])
        images = d.images
        self.assertEqual((images.format, len(images)), ("f", 2000 * PIXELS))
        self.assertEqual(sum(round(v * 255) for v in images[:PIXELS]), 76247)
        # pixels are byte / 255 exactly, as the gzip file's bytes say (16 bytes of IDX header)
        with gzip.open(TRAIN_IMAGES) as f:
            raw = f.read(16 + 3 * PIXELS)[16:]
        self.assertEqual(list(images[:3 * PIXELS]), [array.array("f", [b / 255.0])[0] for b in raw])

    def test_views_are_borrowed_read_only_and_keep_the_dataset(self):
        images, labels = train_set().images, train_set().labels  # the datasets are gone
        gc.collect()
        self.assertTrue(images.readonly and labels.readonly)
        with self.assertRaises(TypeError):
            images[0] = 1.0
        self.assertEqual(labels[0], 9)
        self.assertEqual(sum(round(v * 255) for v in images[:PIXELS]), 76247)
        d = train_set()
        view = d.images
        d.close()  # deferred: the view still reads the library's memory
        self.assertIsNotNone(d.handle)
        self.assertEqual(view[PIXELS * 2000 - 1], self.train.images[PIXELS * 2000 - 1])
        del view
        self.assertIsNone(d.handle)  # freed once the last view went

    def test_unlabelled(self):
        d = kd.Dataset.load_idx(TEST_IMAGES)
        self.assertEqual((d.size, d.labels), (500, None))
        x, labels = kd.Batcher(d, 64, seed=1).next()
        self.assertEqual((len(x), list(labels)), (64 * PIXELS, [-1] * 64))

    def test_batches_cover_an_epoch_in_a_seeded_order(self):
        d = self.train
        images, labels = d.images, d.labels
        batcher = kd.Batcher(d, 512, seed=7)
        self.assertEqual(batcher.indices(), [])
        seen, sizes = [], []
        for x, y in batcher:
            idx = batcher.indices()
            sizes.append(len(y))
            self.assertEqual(len(x), len(y) * PIXELS)
            self.assertEqual(list(y), [labels[i] for i in idx])
            self.assertEqual(x[PIXELS:2 * PIXELS].tobytes(),
                             images[idx[1] * PIXELS:(idx[1] + 1) * PIXELS].tobytes())
            seen += idx
        self.assertEqual(sizes, [512, 512, 512, 464])
        self.assertEqual(sorted(seen), list(range(2000)))
        self.assertNotEqual(seen, list(range(2000)))
        # the next epoch has another order; the same seed gives the same batches
        batcher.next()
        self.assertNotEqual(batcher.indices(), seen[:512])
        again = kd.Batcher(d, 512, seed=7)
        again.next()
        self.assertEqual(again.indices(), seen[:512])

    def test_augment(self):
        x = array.array("f", self.train.images[:8 * PIXELS])
        original = array.array("f", x)
        self.assertIs(kd.augment_images(x, 8, 1, 28, 28, kd.AUGMENT_TRANSLATE, 0, seed=3), x)
        self.assertEqual(x, original)
        kd.augment_images(x, 8, 1, 28, 28, kd.AUGMENT_HFLIP, seed=3)
        flipped = 0
        for i in range(8):
            img, src = x[i * PIXELS:(i + 1) * PIXELS], original[i * PIXELS:(i + 1) * PIXELS]
            mirror = array.array("f", [src[r * 28 + 27 - c] for r in range(28) for c in range(28)])
            self.assertIn(img, (src, mirror))
            flipped += img == mirror
        self.assertTrue(0 < flipped < 8, flipped)
        kd.augment_images(x, 8, 1, 28, 28, kd.AUGMENT_HFLIP, seed=3)  # the same flips undo it
        self.assertEqual(x, original)
        a, b = array.array("f", original), array.array("f", original)
        kd.augment_images(a, 8, 1, 28, 28, kd.AUGMENT_TRANSLATE, 2, seed=5)
        kd.augment_images(b, 8, 1, 28, 28, kd.AUGMENT_TRANSLATE, 2, seed=5)
        self.assertEqual(a, b)
        self.assertNotEqual(a, original)
        self.assertLessEqual(sum(a), sum(original))  # shifted out, zeros in
        kd.augment_images(b, 8, 1, 28, 28, kd.AUGMENT_CROP, 2, seed=6)
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.augment_images, a, 8, 1, 28, 28,
                             kd.AUGMENT_TRANSLATE, 28, 0)
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.augment_images, a, 8, 1, 28, 28, 7, 1, 0)
        with self.assertRaises(TypeError):
            kd.augment_images(list(original), 8, 1, 28, 28, kd.AUGMENT_HFLIP)  # not in place
        with self.assertRaises(ValueError):
            kd.augment_images(a, 9, 1, 28, 28, kd.AUGMENT_HFLIP)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertFailsWith(kd.ERR_IO, kd.Dataset, os.path.join(tmp, "absent.gz"))
        self.assertFailsWith(kd.ERR_FORMAT, kd.Dataset, TRAIN_LABELS)  # labels as images
        self.assertFailsWith(kd.ERR_SHAPE, kd.Dataset, TRAIN_IMAGES, TEST_LABELS)
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.Batcher, self.train, 0)


class ByHand(KdTestCase):
    """Models, losses and optimizers called step by step, checked against the formulas."""

    def logits_and_targets(self):
        z = [math.sin(1.3 * i) * 2 for i in range(BATCH * CLASSES)]
        t = [math.cos(0.9 * i) * 2 for i in range(BATCH * CLASSES)]
        labels = [(3 * i + 1) % CLASSES for i in range(BATCH)]
        return z, t, labels

    def test_hinton_soft_term(self):
        z, t, _ = self.logits_and_targets()
        temp = 2.0
        probs = array.array("f")
        for r in range(BATCH):
            probs.extend(softmax(t[r * CLASSES:(r + 1) * CLASSES], temp))
        loss = kd.Loss(temperature=temp, alpha=1.0)
        value = loss.forward(z, probs, None, BATCH, CLASSES)
        want, grad_want = 0.0, []
        for r in range(BATCH):
            p, q = probs[r * CLASSES:(r + 1) * CLASSES], softmax(z[r * CLASSES:(r + 1) * CLASSES],
                                                                 temp)
            want += temp * temp * sum(a * math.log(a / b) for a, b in zip(p, q)) / BATCH
            grad_want += [temp * (b - a) / BATCH for a, b in zip(p, q)]
        self.assertAlmostEqual(value, want, places=5)
        self.assertAlmostEqual(loss.value(kd.LOSS_PART_SOFT), want, places=5)
        for g, w in zip(loss.backward(), grad_want):
            self.assertAlmostEqual(g, w, places=6)

    def test_hard_term(self):
        z, _, labels = self.logits_and_targets()
        loss = kd.Loss(alpha=0.0)
        value = loss.forward(z, None, labels, BATCH, CLASSES)
        want, grad_want = 0.0, []
        for r, y in enumerate(labels):
            q = softmax(z[r * CLASSES:(r + 1) * CLASSES])
            want -= math.log(q[y]) / BATCH
            grad_want += [(q[c] - (c == y)) / BATCH for c in range(CLASSES)]
        self.assertAlmostEqual(value, want, places=5)
        self.assertAlmostEqual(loss.value(kd.LOSS_PART_HARD), want, places=5)
        self.assertEqual(loss.value(kd.LOSS_PART_SOFT), 0.0)
        for g, w in zip(loss.backward(), grad_want):
            self.assertAlmostEqual(g, w, places=6)

    def test_logit_mse(self):
        z, t, _ = self.logits_and_targets()
        loss = kd.Loss(kd.LOSS_LOGIT_MSE)
        self.assertEqual(loss.get(kd.LOSS_ALPHA), 1.0)
        n = BATCH * CLASSES
        self.assertAlmostEqual(loss.forward(z, t, None, BATCH, CLASSES),
                               sum((a - b) ** 2 for a, b in zip(z, t)) / n, places=5)
        for g, a, b in zip(loss.backward(), z, t):
            self.assertAlmostEqual(g, 2 * (a - b) / n, places=6)

    def test_dkd_gradient_matches_finite_differences(self):
        z, t, labels = self.logits_and_targets()
        loss = kd.Loss(kd.LOSS_DKD, temperature=2.0, beta=4.0, ce_weight=0.5)
        self.assertEqual((loss.get(kd.LOSS_BETA), loss.get(kd.LOSS_CE_WEIGHT)), (4.0, 0.5))
        probs = array.array("f")
        for r in range(BATCH):
            probs.extend(softmax(t[r * CLASSES:(r + 1) * CLASSES], 2.0))
        value = loss.forward(z, probs, labels, BATCH, CLASSES)
        self.assertAlmostEqual(value, loss.value(kd.LOSS_PART_SOFT) +
                               loss.value(kd.LOSS_PART_HARD), places=5)
        grad = loss.backward()
        eps = 1e-2
        for i in range(0, BATCH * CLASSES, 5):
            up, down = list(z), list(z)
            up[i] += eps
            down[i] -= eps
            numeric = (loss.forward(up, probs, labels, BATCH, CLASSES) -
                       loss.forward(down, probs, labels, BATCH, CLASSES)) / (2 * eps)
            self.assertAlmostEqual(grad[i], numeric, delta=2e-3 + 1e-2 * abs(numeric))

    def test_reverse_kl_by_hand(self):
        z, t, labels = self.logits_and_targets()
        loss = kd.Loss(kd.LOSS_REVERSE_KL, jsd_beta=0.25, skew=0.5, mask_unlabelled=0)
        self.assertEqual((loss.get(kd.LOSS_JSD_BETA), loss.get(kd.LOSS_SKEW),
                          loss.get(kd.LOSS_MASK_UNLABELLED)), (0.25, 0.5, 0.0))
        probs, want = array.array("f"), 0.0
        for r in range(BATCH):
            p = softmax(t[r * CLASSES:(r + 1) * CLASSES], 1.0)
            q = softmax(z[r * CLASSES:(r + 1) * CLASSES], 1.0)
            probs.extend(p)
            want += sum(b * (math.log(b) - math.log(a)) for a, b in zip(p, q)) / BATCH
        self.assertAlmostEqual(loss.forward(z, probs, labels, BATCH, CLASSES), want, places=5)

    def test_topk_cache(self):
        z, _, _ = self.logits_and_targets()
        idx, val, rest = kd.topk_from_logits(z, BATCH, CLASSES, CLASSES)
        self.assertEqual(idx[:CLASSES].tolist(),
                         sorted(range(CLASSES), key=lambda c: (-z[c], c)))
        dense = kd.soft_targets_from_logits(z, 1, BATCH, CLASSES, 2.0)
        sparse = kd.topk_soft_targets(idx, val, rest, BATCH, CLASSES, CLASSES, 2.0)
        for a, b in zip(dense, sparse):
            self.assertAlmostEqual(a, b, places=6)
        idx, val, _ = kd.topk_from_logits(z, BATCH, CLASSES, 1)
        probs = kd.topk_soft_targets(idx, val, None, BATCH, CLASSES, 1, 1.0, kd.TOPK_TAIL_NONE)
        self.assertEqual(probs[idx[0]], 1.0)
        idx, val, rest = kd.topk_from_logits(z, BATCH, CLASSES, CLASSES)
        self.assertEqual(kd.topk_logits(idx, val, rest, BATCH, CLASSES, CLASSES).tolist(),
                         array.array("f", z).tolist())
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.topk_from_logits, z, BATCH, CLASSES, 0)

    def test_text(self):
        path = os.path.join(DATA, "text", "sample.txt")
        with open(path, "rb") as f:
            raw = f.read()
        text = kd.Text(path)
        self.assertEqual(len(text), len(raw))
        text.split(0.5)
        self.assertEqual(text.part_size(kd.TEXT_VALIDATION), len(raw) // 2)
        self.assertEqual(text.tokens(3, 5, kd.TEXT_VALIDATION).tolist(),
                         list(raw[len(raw) - len(raw) // 2 + 3:][:5]))
        ids, targets = text.batch(4, 16, seed=3)
        self.assertEqual(ids[1:16].tolist(), targets[:15].tolist())
        self.assertIn(bytes(ids[:16].tolist()), raw)
        self.assertAlmostEqual(kd.perplexity(math.log(3.0)), 3.0, places=5)
        self.assertAlmostEqual(kd.bits_per_byte(math.log(256.0)), 8.0, places=5)
        self.assertFailsWith(kd.ERR_FORMAT, kd.Text, os.path.join(DATA, "text", "empty.txt"))
        self.assertFailsWith(kd.ERR_FORMAT, kd.Text,
                             os.path.join(DATA, "text", "invalid-utf8.txt"))

    def test_modern_logit_methods(self):
        # DKD from the logits of a confident teacher (the example, as mdistiller).
        loss = kd.Loss(kd.LOSS_DKD, temperature=1.0, alpha=0.0, beta=8.0, ce_weight=0.0)
        value = loss.forward_logits([2, 1, 0, -1], [120, 10, 5, 0], [0], 1, 4)
        self.assertAlmostEqual(value, 2.989716577, places=4)
        # Logit standardisation and DIST against tests/reference/modern_logit_losses.py.
        zs = [1.0, -0.5, 2.0, 0.3, 0.2, 0.1, -1.0, 1.5, -2.0, 0.5, 0.25, 0.0]
        zt = [2.0, 0.0, 1.0, -1.0, 0.5, -0.3, 0.0, 2.5, -1.0, 1.5, 0.5, 0.2]
        ls = kd.Loss(kd.LOSS_HINTON, temperature=2.0, alpha=1.0)
        ls.set(kd.LOSS_LOGIT_STANDARDIZE, 1.0)
        self.assertAlmostEqual(ls.forward_logits(zs, zt, None, 3, 4), 0.163037947, places=5)
        dist = kd.Loss(kd.LOSS_DIST, ce_weight=0.0)
        self.assertAlmostEqual(dist.forward_logits(zs, zt, None, 3, 4), 0.408162575, places=5)

    def test_loss_errors(self):
        loss = kd.Loss()
        self.assertFailsWith(kd.ERR_STATE, loss.backward)
        z, _, labels = self.logits_and_targets()
        with self.assertRaises(ValueError):
            loss.forward(z[:-1], z, labels, BATCH, CLASSES)
        bad = list(labels)
        bad[2] = CLASSES
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.Loss(alpha=0.0).forward, z, None, bad, BATCH,
                             CLASSES)

    def test_soft_targets_from_logits(self):
        teachers = [kd.Model("input %d | dense 5 | relu | dense %d" % (IN, CLASSES), seed=s)
                    for s in (11, 12)]
        x, _ = batch_data()
        logits = array.array("f")
        for t in teachers:
            logits.extend(t.predict(x, BATCH))
        weights = [1.0, 3.0]
        probs = kd.soft_targets_from_logits(logits, 2, BATCH, CLASSES, 3.0, weights)
        direct = kd.soft_targets(teachers, x, BATCH, 3.0, weights)
        for a, b in zip(probs, direct):
            self.assertAlmostEqual(a, b, places=6)
        row = [0.25 * a + 0.75 * b for a, b in zip(softmax(logits[:CLASSES], 3.0),
                                                   softmax(logits[BATCH * CLASSES:
                                                                  (BATCH + 1) * CLASSES], 3.0))]
        for a, b in zip(probs[:CLASSES], row):
            self.assertAlmostEqual(a, b, places=6)
        self.assertFailsWith(kd.ERR_ARGUMENT, kd.soft_targets_from_logits, logits, 2, BATCH,
                             CLASSES, 0.0)

    def test_layers(self):
        m = kd.Model("input 1x28x28 | conv 4 3 pad=1 | relu | maxpool 2 | flatten | dense 10",
                     seed=1)
        self.assertEqual(m.layer_count, 5)
        self.assertEqual(m.layers, [("conv", 4 * 9 + 4, 4 * 28 * 28), ("relu", 0, 4 * 28 * 28),
                                    ("maxpool", 0, 4 * 14 * 14), ("flatten", 0, 4 * 14 * 14),
                                    ("dense", 4 * 196 * 10 + 10, 10)])
        self.assertEqual(sum(p for _, p, _ in m.layers), m.param_count)
        self.assertFailsWith(kd.ERR_ARGUMENT, m.layer_info, 5)
        self.assertFailsWith(kd.ERR_STATE, m.feature, 0)
        x = array.array("f", train_set().images[:3 * PIXELS])
        logits = m.predict(x, 3)
        feature, shape = m.feature(2)
        self.assertEqual(shape, (3, 4, 14, 14))
        self.assertEqual(len(feature), 3 * 4 * 14 * 14)
        self.assertTrue(min(feature) >= 0.0)  # max-pooled ReLUs
        self.assertEqual(m.feature(4), (logits, (3, 10, 1, 1)))

    def test_forward_backward_step_by_hand(self):
        d = train_set()
        x, labels = array.array("f", d.images[:64 * PIXELS]), list(d.labels[:64])
        m = kd.Model("input 784 | dense 32 | relu | dense 10", seed=4)
        opt = kd.Optimizer(m, learning_rate=0.1, momentum=0.9)
        loss = kd.Loss(alpha=0.0)
        self.assertFailsWith(kd.ERR_STATE, m.backward, [0.0] * 640)
        values = []
        for _ in range(15):
            values.append(loss.forward(m.forward(x, 64), None, labels, 64, FCLASSES))
            m.backward(loss.backward())
            opt.step()
        self.assertLess(values[-1], 0.5 * values[0], values)
        self.assertEqual(opt.get_int(kd.OPT_STEP), 15)
        # zero_grad clears what backward accumulated: a plain SGD step then moves nothing
        before = m.predict(x, 64)
        plain = kd.Optimizer(m, learning_rate=0.1)
        loss.forward(m.forward(x, 64), None, labels, 64, FCLASSES)
        m.backward(loss.backward())
        m.zero_grad()
        plain.step()
        self.assertEqual(m.predict(x, 64), before)
        self.assertFailsWith(kd.ERR_STATE, m.backward, [0.0] * 640)  # predict is not training
        m.forward(x, 64)
        with self.assertRaises(ValueError):
            m.backward([0.0] * 639)  # the binding checks the length against the last forward
        nan = [0.0] * 640
        nan[3] = float("nan")
        self.assertFailsWith(kd.ERR_NUMERIC, m.backward, nan)

    def test_hint_by_hand(self):
        """A FitNets hint through feature and feature_backward, without a trainer."""
        x = array.array("f", train_set().images[:32 * PIXELS])
        teacher = kd.Model("input 784 | dense 24 | relu | dense 10", seed=5)
        student = kd.Model("input 784 | dense 24 | tanh | dense 10", seed=6)
        teacher.predict(x, 32)
        target, tshape = teacher.feature(1)
        hint = kd.FeatureLoss(kd.FEATURE_HINT)
        opt = kd.Optimizer(student, learning_rate=0.1)
        values = []
        for _ in range(10):
            student.forward(x, 32)
            feature, shape = student.feature(1)
            self.assertEqual(shape, (32, 24, 1, 1))
            values.append(hint.forward(feature, shape[1:], target, tshape[1:], 32))
            self.assertAlmostEqual(values[-1], sum((a - b) ** 2 for a, b in zip(feature, target))
                                   / len(feature), places=5)
            student.feature_backward(1, hint.backward())
            student.backward([0.0] * 32 * FCLASSES)
            opt.step()
        self.assertLess(values[-1], 0.5 * values[0], values)
        with self.assertRaises(ValueError):
            student.feature_backward(1, [0.0] * 24)

    def test_feature_losses(self):
        rkd = kd.FeatureLoss(kd.FEATURE_RKD)
        self.assertEqual((rkd.get(kd.FEATURE_RKD_DISTANCE_WEIGHT),
                          rkd.get(kd.FEATURE_RKD_ANGLE_WEIGHT)), (25.0, 50.0))
        rkd = kd.FeatureLoss(kd.FEATURE_RKD, distance_weight=1.0, angle_weight=2.0)
        self.assertEqual(rkd.get(kd.FEATURE_RKD_ANGLE_WEIGHT), 2.0)
        self.assertFailsWith(kd.ERR_ARGUMENT, rkd.set, kd.FEATURE_RKD_DISTANCE_WEIGHT, -1.0)
        s = [math.sin(0.3 * i) for i in range(4 * 6)]
        t = [math.cos(0.2 * i) for i in range(4 * 9)]
        for kind in (kd.FEATURE_RKD, kd.FEATURE_SIMILARITY, kd.FEATURE_PKT):
            loss = kd.FeatureLoss(kind)
            self.assertGreater(loss.forward(s, 6, t, (1, 3, 3), 4), 0.0)
            self.assertEqual(len(loss.backward()), 4 * 6)
            self.assertAlmostEqual(loss.forward(s, 6, s, 6, 4), 0.0, places=5)
        cosine = kd.FeatureLoss(kd.FEATURE_COSINE)
        self.assertAlmostEqual(cosine.forward(s, 6, [2 * v for v in s], 6, 4), 0.0, places=5)
        attention = kd.FeatureLoss(kd.FEATURE_ATTENTION)
        self.assertGreaterEqual(attention.forward(s[:12], (1, 2, 3), t, (3, 2, 3), 2), 0.0)
        hint = kd.FeatureLoss(kd.FEATURE_HINT)
        self.assertFailsWith(kd.ERR_STATE, hint.backward)
        self.assertFailsWith(kd.ERR_SHAPE, hint.forward, s, 6, t, 9, 4)

    def test_clone_weights_and_output_bias(self):
        x, _ = batch_data()
        m = kd.Model("input %d | dense 8 | relu | dense %d" % (IN, CLASSES), seed=7)
        twin = m.clone()
        self.assertEqual((twin.spec, twin.predict(x, BATCH)), (m.spec, m.predict(x, BATCH)))
        m.adjust_output_bias(1, 0.5)  # the clone is a copy, not a view
        moved, kept = m.predict(x, BATCH), twin.predict(x, BATCH)
        for i, (a, b) in enumerate(zip(moved, kept)):
            self.assertAlmostEqual(a - b, 0.5 if i % CLASSES == 1 else 0.0, places=5)
        self.assertFailsWith(kd.ERR_ARGUMENT, m.adjust_output_bias, CLASSES, 1.0)
        self.assertFailsWith(kd.ERR_UNSUPPORTED,
                             kd.Model("input 4 | dense 3 | relu", seed=1).adjust_output_bias, 0,
                             1.0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.safetensors")
            m.save(path)
            other = kd.Model(m.spec, seed=99)
            self.assertNotEqual(other.predict(x, BATCH), moved)
            other.load_weights(path)
            self.assertEqual(other.predict(x, BATCH), moved)
            wider = kd.Model("input %d | dense 9 | relu | dense %d" % (IN, CLASSES), seed=1)
            before = wider.predict(x, BATCH)
            self.assertFailsWith(kd.ERR_SHAPE, wider.load_weights, path)
            self.assertEqual(wider.predict(x, BATCH), before)  # a failed load changes nothing

    def test_evaluate(self):
        test = kd.Dataset(TEST_IMAGES, TEST_LABELS)
        m = kd.Model("input 784 | dense 16 | relu | dense 10", seed=8)
        correct, rows = m.evaluate(test.images, test.labels, 500, batch=128, confusion=True)
        self.assertEqual(m.evaluate(test.images, test.labels, 500), correct)
        self.assertEqual(sum(map(sum, rows)), 500)
        self.assertEqual(sum(rows[k][k] for k in range(FCLASSES)), correct)
        logits, labels = m.predict(test.images, 500), test.labels
        argmax = [max(range(FCLASSES), key=lambda c: logits[r * FCLASSES + c]) for r in range(500)]
        self.assertEqual(correct, sum(a == y for a, y in zip(argmax, labels)))
        bad = list(labels)
        bad[0] = FCLASSES
        self.assertFailsWith(kd.ERR_ARGUMENT, m.evaluate, test.images, bad, 500)


class FeatureTerms(KdTestCase):
    """FitNets through the trainer: a hint with a regressor, its stages, and checkpoints."""

    TEACHER = "input 784 | dense 48 | relu | dense 10"
    STUDENT = "input 784 | dense 16 | relu | dropout 0.2 | dense 10"

    @classmethod
    def setUpClass(cls):
        cls.teacher = kd.Model(cls.TEACHER, seed=1)
        cls.batches = list(itertools.islice(kd.Batcher(train_set(), 100, seed=3), 12))

    def trainer(self, spec=STUDENT):
        """trainer, student, optimizer, loss and the hint's feature loss."""
        student = kd.Model(spec, seed=2)
        opt = kd.Optimizer(student, learning_rate=0.05, momentum=0.9)
        loss = kd.Loss(temperature=4.0, alpha=0.9)
        trainer = kd.Trainer(student, loss, opt)
        trainer.add_teacher(self.teacher)
        hint = kd.FeatureLoss(kd.FEATURE_HINT)
        self.assertEqual(trainer.add_feature_loss(hint, 1, 0, 1, regressor="dense 48",
                                                  weight=2.0), 0)
        return trainer, student, opt, loss, hint

    def test_hint_stage_then_distillation(self):
        trainer, _, _, loss, hint = self.trainer()
        self.assertFailsWith(kd.ERR_STATE, trainer.feature_value)
        reg = trainer.regressor(0)
        self.assertTrue(reg.spec.startswith("input 16"), reg.spec)
        self.assertEqual((reg.input_size, reg.output_size), (16, 48))
        trainer.set_int(kd.TRAINER_HINT_ONLY, 1)
        self.assertEqual(trainer.get_int(kd.TRAINER_HINT_ONLY), 1)
        hints = []
        for x, labels in self.batches[:8]:
            value = trainer.step(x, labels, len(labels))
            hints.append(trainer.feature_value(0))
            self.assertAlmostEqual(value, trainer.feature_value(-1), places=5)
        self.assertLess(hints[-1], 0.8 * hints[0], hints)
        self.assertFailsWith(kd.ERR_STATE, loss.backward)  # the hint stage runs no logit loss
        trainer.set_int(kd.TRAINER_HINT_ONLY, 0)
        for x, labels in self.batches[8:]:
            value = trainer.step(x, labels, len(labels))
            self.assertAlmostEqual(value, loss.value() + trainer.feature_value(-1), places=4)
        # the trainer ran the borrowed losses: their backward gives the step's sizes
        self.assertEqual(len(loss.backward()), 100 * 10)
        self.assertEqual(len(hint.backward()), 100 * 48)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.step, self.batches[0][0], [10] * 100, 100)
        self.assertEqual(len(loss.backward()), 100 * 10)
        with self.assertRaises(ValueError):
            trainer.step(self.batches[0][0], self.batches[0][1], 100, teacher_logits=[0.0] * 999)
        # the regressor is lent by the trainer: closing it frees nothing, and it keeps the
        # trainer (and so itself) alive
        del trainer
        gc.collect()
        self.assertEqual(reg.output_size, 48)
        reg.close()
        self.assertIsNone(reg.handle)

    def test_checkpoint_round_trip(self):
        a, student_a, *_ = self.trainer()
        for x, labels in self.batches[:5]:
            a.step(x, labels, len(labels))
        h = [math.sin(i) for i in range(16 * 10)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "run.safetensors")
            a.save(path)
            b, student_b, opt_b, *_ = self.trainer()
            self.assertNotEqual(a.regressor(0).predict(h, 10), b.regressor(0).predict(h, 10))
            b.load(path)
            self.assertEqual(opt_b.get_int(kd.OPT_STEP), 5)
            self.assertEqual(a.regressor(0).predict(h, 10), b.regressor(0).predict(h, 10))
            for x, labels in self.batches[5:9]:  # with dropout: the random streams continue too
                self.assertEqual(a.step(x, labels, len(labels)), b.step(x, labels, len(labels)))
                self.assertEqual(a.feature_value(0), b.feature_value(0))
            x = self.batches[0][0]
            self.assertEqual(student_a.predict(x, 100), student_b.predict(x, 100))
            self.assertEqual(a.regressor(0).predict(h, 10), b.regressor(0).predict(h, 10))
            # a trainer built otherwise refuses the file and is left as it was
            c, student_c, *_ = self.trainer("input 784 | dense 24 | relu | dense 10")
            before = student_c.predict(x, 100)
            self.assertFailsWith(kd.ERR_SHAPE, c.load, path)
            self.assertEqual(student_c.predict(x, 100), before)
            self.assertFailsWith(kd.ERR_IO, c.load, os.path.join(tmp, "absent.safetensors"))
            student_a.save(os.path.join(tmp, "model.safetensors"))
            self.assertFailsWith(kd.ERR_FORMAT, c.load, os.path.join(tmp, "model.safetensors"))

    def test_errors(self):
        student = kd.Model(self.STUDENT, seed=2)
        trainer = kd.Trainer(student, kd.Loss(), kd.Optimizer(student))
        hint = kd.FeatureLoss(kd.FEATURE_HINT)
        self.assertFailsWith(kd.ERR_STATE, trainer.set_int, kd.TRAINER_HINT_ONLY, 1)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.add_feature_loss, hint, 1, 0, 1)  # no teacher
        trainer.add_teacher(self.teacher)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.add_feature_loss, hint, 9, 0, 1)
        self.assertFailsWith(kd.ERR_SHAPE, trainer.add_feature_loss, hint, 1, 0, 1)  # 16 vs 48
        self.assertFailsWith(kd.ERR_SHAPE, trainer.add_feature_loss, hint, 1, 0, 1,
                             "input 5 | dense 48")
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.add_feature_loss, hint, 1, 0, 1,
                             "dense 48", 0.0)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.regressor, 0)
        self.assertEqual(trainer.add_feature_loss(kd.FeatureLoss(kd.FEATURE_SIMILARITY), 1, 0, 1),
                         0)
        self.assertIsNone(trainer.regressor(0))  # a term without a regressor
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.set_int, kd.TRAINER_HINT_ONLY, 2)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.get_int, 1)
        self.assertFailsWith(kd.ERR_ARGUMENT, trainer.feature_value, 1)


class TokenModels(KdTestCase):
    """A small causal language model through the token calls and the attention tap."""

    SPEC = ("tokens 11 5 | embed 8 | posembed | residual(layernorm | attention 2 causal) "
            "| layernorm | lmhead 11 tied")

    def test_tokens_attention_and_errors(self):
        m = kd.Model(self.SPEC, seed=4)
        self.assertEqual(m.tokens, (11, 5))
        self.assertEqual(m.input_size, 5)
        ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
        logits = m.forward_tokens(ids, 2)
        self.assertEqual(len(logits), 2 * 5 * 11)
        again = m.predict_tokens(ids, 2)
        self.assertEqual(list(logits), list(again))
        self.assertEqual(m.attention_count, 1)
        probs, shape = m.attention(0)
        self.assertEqual(shape, (2, 2, 5, 5))
        self.assertAlmostEqual(sum(probs[:5]), 1.0, places=5)  # row 0: all on position 0
        self.assertEqual(probs[1], 0.0)
        self.assertFailsWith(kd.ERR_ARGUMENT, m.predict_tokens, [11] + ids[1:], 2)
        self.assertFailsWith(kd.ERR_ARGUMENT, m.attention, 1)
        self.assertFailsWith(kd.ERR_UNSUPPORTED, kd.Model("input 3 | dense 2").predict_tokens,
                             [0, 1, 2], 1)
        m.forward_tokens(ids, 2)
        m.attention_backward(0, array.array("f", [0.5] * (2 * 2 * 5 * 5)))
        m.backward(array.array("f", [0.1] * len(logits)))
        step = m.decode_step(3, 0)
        self.assertEqual(len(step), 11)
        tokens = m.generate([3, 1], 3, temperature=0.8, top_k=5, seed=9)
        self.assertEqual(len(tokens), 3)
        self.assertEqual(tokens, m.generate([3, 1], 3, temperature=0.8, top_k=5, seed=9))
        self.assertFailsWith(kd.ERR_ARGUMENT, m.generate, [3, 1], 4)

    def test_language_model_trainer(self):
        """The trainer sees batch * T token rows: labels [batch * T], -1 padding."""
        t, s = kd.Model(self.SPEC, seed=1), kd.Model(self.SPEC, seed=2)
        self.assertEqual(s.output_rows, (5, 11))
        self.assertEqual(kd.Model("input 3 | dense 2").output_rows, (1, 2))
        loss = kd.Loss(kd.LOSS_REVERSE_KL, alpha=0.5)
        tr = kd.Trainer(s, loss, kd.Optimizer(s, kd.OPTIMIZER_ADAM, learning_rate=0.02))
        tr.add_teacher(t)
        x = [float(i % 11) for i in range(10)]
        y = [(i + 1) % 11 for i in range(10)]
        y[4] = -1
        first = tr.step(x, y, 2)
        for _ in range(20):
            last = tr.step(x, y, 2)
        self.assertLess(last, first)
        self.assertRaises(ValueError, tr.step, x, y[:2], 2)  # [batch] labels are too few

    def test_attention_term(self):
        """MiniLM's attention KL through the trainer: numbered with the feature terms, lowered by
        steps; the loss's backward after a step has the map's size."""
        t, s = kd.Model(self.SPEC, seed=1), kd.Model(self.SPEC, seed=2)
        tr = kd.Trainer(s, kd.Loss(kd.LOSS_HINTON, alpha=0.0),
                        kd.Optimizer(s, kd.OPTIMIZER_ADAM, learning_rate=0.02))
        tr.add_teacher(t)
        kl = kd.FeatureLoss(kd.FEATURE_ATTENTION_KL)
        self.assertEqual(tr.add_attention_loss(kl, 0, 0, 0, kd.ATTENTION_HEADS_MATCHED, 5.0), 0)
        self.assertFailsWith(kd.ERR_ARGUMENT, tr.add_attention_loss, kl, 1, 0, 0)
        x = [float(i % 11) for i in range(10)]
        y = [(i + 1) % 11 for i in range(10)]
        tr.step(x, y, 2)
        first = tr.feature_value(0)
        self.assertEqual(len(kl.backward()), 2 * 2 * 5 * 5)
        for _ in range(30):
            tr.step(x, y, 2)
        self.assertLess(tr.feature_value(0), first)


class NamedTensors(KdTestCase):
    def test_round_trip(self):
        t = kd.Tensors()
        t["logits"] = (array.array("f", [0.5, -1.0, 2.0, 3.5, 0.0, 1.0]), (2, 3))
        t["labels"] = (array.array("i", [2, 0]), (2,))
        t["ids"] = (array.array("q", [1 << 40]), (1,))
        t.meta["kd.kind"] = "logits"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cache.safetensors")
            t.save(path)
            back = kd.Tensors.load(path)
        self.assertEqual(back.keys(), ["logits", "labels", "ids"])
        self.assertEqual(back["logits"], (array.array("f", [0.5, -1.0, 2.0, 3.5, 0.0, 1.0]),
                                          (2, 3)))
        self.assertEqual(back["labels"], (array.array("i", [2, 0]), (2,)))
        self.assertEqual(back["ids"][0][0], 1 << 40)
        self.assertEqual(back.meta["kd.kind"], "logits")
        self.assertEqual(back.meta.keys(), ["kd.kind"])
        del back.meta["kd.kind"]
        self.assertEqual(back.meta.keys(), [])
        with self.assertRaises(KeyError):
            del back.meta["kd.kind"]
        self.assertIn("ids", back)
        del back["ids"]
        self.assertNotIn("ids", back)
        self.assertEqual(len(back), 2)
        self.assertFailsWith(kd.ERR_IO, kd.Tensors.load, os.path.join(DATA, "absent"))

    def test_data_shorter_than_its_shape_is_refused(self):
        # libkd reads the product of the shape's values from the array's address: a shorter array
        # had sent heap bytes into the file
        t = kd.Tensors()
        with self.assertRaises(ValueError):
            t["w"] = (array.array("f", [1, 2, 3]), (16,))
        self.assertNotIn("w", t)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "g.npy")
            with self.assertRaises(ValueError):
                kd.save_npy(path, array.array("f", [1, 2, 3]), (4, 4))
            self.assertFalse(os.path.exists(path))
            kd.save_npy(path, array.array("f", [1, 2, 3, 4]), (2, 2))
            self.assertTrue(os.path.exists(path))


class NumpyData(KdTestCase):
    def test_npy_and_npz(self):
        np_dir = os.path.join(DATA, "numpy")
        d = kd.Dataset.load_npy(os.path.join(np_dir, "x_f32.npy"), os.path.join(np_dir, "y_i64.npy"))
        self.assertEqual((len(d), d.shape), (6, (4, 1, 1)))
        self.assertEqual(list(d.labels), [0, 1, 2, 1, 0, 2])
        self.assertEqual(d.images[0], -2.5)
        self.assertEqual(d.classes, [])
        z = kd.Dataset.load_npz(os.path.join(np_dir, "set_compressed.npz"))
        self.assertEqual(list(z.images), list(d.images))
        err = self.assertFailsWith(kd.ERR_FORMAT, kd.Dataset.load_npy,
                                   os.path.join(np_dir, "fortran.npy"))
        self.assertIn("Fortran", err.message)

    def test_csv(self):
        csv_dir = os.path.join(DATA, "csv")
        d = kd.Dataset.load_csv(os.path.join(csv_dir, "iris.csv"), "species")
        self.assertEqual((len(d), d.shape), (4, (3, 1, 1)))
        self.assertEqual(d.classes, ["setosa", "versicolor", "virginica"])
        self.assertEqual(list(d.labels), [0, 1, 2, 0])
        err = self.assertFailsWith(kd.ERR_FORMAT, kd.Dataset.load_csv,
                                   os.path.join(csv_dir, "ragged.csv"), "label")
        self.assertIn("line 3", err.message)

    def test_image_folder(self):
        d = kd.Dataset.load_image_folder(os.path.join(DATA, "images", "folder"), 3)
        self.assertEqual((len(d), d.shape), (6, (3, 3, 4)))
        self.assertEqual(d.classes, ["cat", "dog"])
        err = self.assertFailsWith(kd.ERR_FORMAT, kd.Dataset.load_image_folder,
                                   os.path.join(DATA, "images", "corrupt"))
        self.assertIn("b.png", err.message)


class Normalization(KdTestCase):
    def test_stats_set_saved_and_loaded(self):
        d = kd.Dataset.load_npy(os.path.join(DATA, "numpy", "x_f32.npy"))
        mean, std = d.channel_stats()
        self.assertEqual(len(mean), 4)
        m = kd.Model("input 4 | dense 3", seed=1)
        self.assertEqual(m.normalization, (array.array("f"), array.array("f")))
        m.set_normalization(mean, std)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.safetensors")
            m.save(path)
            back = kd.Model.load(path)
        self.assertEqual(back.normalization, (mean, std))
        self.assertFailsWith(kd.ERR_ARGUMENT, m.set_normalization, [0.0, 0.0], [1.0, 1.0])


if __name__ == "__main__":
    unittest.main()
