"""The kd package (python/kd) against a built libkd.so, with NumPy.

ctest runs it with Debian's /usr/bin/python3 (python3-numpy), KD_LIBRARY at the library and
PYTHONPATH at python/; by hand:
    KD_LIBRARY=build/libkd.so PYTHONPATH=python /usr/bin/python3 -m unittest -v \
        tests/python_package/test_package.py

Every libkd call goes through a spy (the last class checks that the tests called every function
of kd.h through the package), which also records the pointers handed to C, so that "no copy" is
checked by pointer identity.
"""
import ctypes
import gc
import importlib.util
import inspect
import math
import os
import re
import tempfile
import unittest

import numpy as np

import kd
from kd import capi

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
HEADER = os.path.join(ROOT, "include", "kd.h")
DATA = os.path.join(ROOT, "tests", "data")
TRAIN = os.path.join(DATA, "fmnist-train-2000")
TEST_IMAGES = os.path.join(DATA, "fmnist-test-500-images-idx3-ubyte.gz")
TEST_LABELS = os.path.join(DATA, "fmnist-test-500-labels-idx1-ubyte.gz")
BATCH, IN, CLASSES = 8, 6, 3


class Spy:
    """Stands for the loaded CDLL: records each call's name and arguments, then makes it."""

    def __init__(self, real):
        self.real, self.calls, self.called = real, [], set()

    def __getattr__(self, name):
        fn = getattr(self.real, name)
        if not name.startswith("kd_"):
            return fn

        def call(*args):
            self.called.add(name)
            self.calls.append((name, args))
            return fn(*args)

        call.__name__ = name
        return call

    def last(self, name):
        return [args for n, args in self.calls if n == name][-1]


def address(arg):
    """The address a ctypes pointer argument points to."""
    return ctypes.cast(arg, ctypes.c_void_p).value


SPY = None


def setUpModule():
    global SPY
    SPY = Spy(capi.lib())
    capi._lib = SPY


def tearDownModule():
    capi._lib = SPY.real


def header():
    """kd.h without its comments."""
    with open(HEADER) as f:
        return re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)


def describe(t):
    """A ctypes type as text, to compare two tables' entries."""
    if t is None:
        return "void"
    if hasattr(t, "_type_") and isinstance(t._type_, type):
        return "*" + describe(t._type_)
    if hasattr(t, "_argtypes_"):
        return "fn(%s)->%s" % (",".join(map(describe, t._argtypes_)), describe(t._restype_))
    return t.__name__


class Completeness(unittest.TestCase):
    """kd.capi declares every function and constant of kd.h; the classes call every function."""

    def test_every_function_is_declared(self):
        decls = re.findall(r"KD_API\s+([^;()]*?)\b(kd_\w+)\s*\(([^)]*)\)\s*;", header())
        self.assertGreaterEqual(len(decls), 100)
        missing = [n for _, n, _ in decls if n not in capi._STATUS and n not in capi._OTHER]
        self.assertEqual(missing, [], "kd.h functions that kd.capi does not declare")
        declared = {n for _, n, _ in decls}
        extra = sorted((set(capi._STATUS) | set(capi._OTHER)) - declared)
        self.assertEqual(extra, [], "kd.capi entries kd.h does not have")
        for ret, name, params in decls:
            ret = ret.strip()
            nargs = 0 if params.strip() in ("", "void") else params.count(",") + 1
            if ret == "kd_status":
                self.assertIn(name, capi._STATUS, "%s returns kd_status" % name)
                argtypes = capi._STATUS[name]
            else:
                self.assertIn(name, capi._OTHER, "%s does not return kd_status" % name)
                restype, argtypes = capi._OTHER[name]
                self.assertEqual(restype is None, ret == "void", name)
            self.assertEqual(len(argtypes), nargs, "%s takes %d arguments" % (name, nargs))
            self.assertTrue(hasattr(SPY.real, name))

    def test_the_classes_call_every_function(self):
        """Outside capi, the package's modules name every function (or capi.LOW_LEVEL_ONLY
        lists it: declared, callable through kd.capi.lib(), not yet wrapped)."""
        source = ""
        for name in ("model", "pruning", "losses", "training", "targets", "data", "tensors",
                     "text", "library", "_handle"):
            source += inspect.getsource(importlib.import_module("kd." + name))
        unwrapped = [n for n in list(capi._STATUS) + list(capi._OTHER)
                     if n not in capi.LOW_LEVEL_ONLY and not re.search(r"\b%s\b" % n, source)]
        self.assertEqual(unwrapped, [], "functions no class of the package calls")

    def test_every_constant_is_there(self):
        values = re.findall(r"\bKD_([A-Z0-9_]+)\s*=\s*(\d+)", header())
        values += re.findall(r"#define\s+KD_([A-Z0-9_]+)\s+(\d+)\s*$", header(), flags=re.M)
        self.assertGreater(len(values), 50)
        self.assertEqual([n for n, _ in values if not hasattr(capi, n)], [],
                         "kd.h constants that kd.capi lacks (as KD_ without the KD_)")
        for name, value in values:
            self.assertEqual(getattr(capi, name), int(value), name)
            self.assertEqual(getattr(kd, name), int(value), name)

    def test_the_same_table_as_the_stdlib_binding(self):
        """examples/python/kd.py (standard library only) declares the same types: a line ported
        from one table to the other is the same line."""
        spec = importlib.util.spec_from_file_location(
            "kd_stdlib", os.path.join(ROOT, "examples", "python", "kd.py"))
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        self.assertEqual(sorted(other._STATUS), sorted(capi._STATUS))
        self.assertEqual(sorted(other._OTHER), sorted(capi._OTHER))
        for name, argtypes in capi._STATUS.items():
            self.assertEqual(list(map(describe, argtypes)),
                             list(map(describe, other._STATUS[name])), name)
        for name, (restype, argtypes) in capi._OTHER.items():
            self.assertEqual([describe(restype)] + list(map(describe, argtypes)),
                             [describe(other._OTHER[name][0])]
                             + list(map(describe, other._OTHER[name][1])), name)


def teacher_student():
    teacher = kd.Model("input %d | dense 32 | relu | dense %d" % (IN, CLASSES), seed=1)
    student = kd.Model("input %d | dense 8 | tanh | dense %d" % (IN, CLASSES), seed=2)
    return teacher, student


def batch_data():
    x = np.sin(0.7 * np.arange(BATCH * IN, dtype=np.float32)).reshape(BATCH, IN)
    return x, (np.arange(BATCH) % CLASSES).astype(np.int32)


class ZeroCopy(unittest.TestCase):
    """The library reads inputs and writes outputs in the arrays themselves."""

    def test_predict_reads_x_and_writes_the_result(self):
        _, m = teacher_student()
        x, _ = batch_data()
        logits = m.predict(x)
        args = SPY.last("kd_model_predict")
        self.assertEqual(address(args[1]), x.ctypes.data)  # x itself, not a copy
        self.assertEqual(address(args[3]), logits.ctypes.data)  # libkd wrote this very buffer
        self.assertEqual((logits.shape, logits.dtype), ((BATCH, CLASSES), np.float32))
        out = np.zeros((BATCH, CLASSES), np.float32)
        self.assertIs(m.predict(x, out=out), out)
        self.assertEqual(address(SPY.last("kd_model_predict")[3]), out.ctypes.data)
        np.testing.assert_array_equal(out, logits)
        # an image batch [b, c, h, w] is as good as [b, c*h*w]: the same memory
        np.testing.assert_array_equal(m.predict(x.reshape(BATCH, IN, 1, 1)), logits)

    def test_trainer_step_and_loss(self):
        teacher, student = teacher_student()
        x, labels = batch_data()
        trainer = kd.Trainer(student, kd.Loss(temperature=4.0, alpha=0.9),
                             kd.Optimizer(student, learning_rate=0.05, momentum=0.9))
        trainer.add_teacher(teacher)
        cached = teacher.predict(x)
        first = trainer.step(x, labels, teacher_logits=cached)
        args = SPY.last("kd_trainer_step")
        self.assertEqual([address(a) for a in args[1:4]],
                         [x.ctypes.data, labels.ctypes.data, cached.ctypes.data])
        for _ in range(20):
            last = trainer.step(x, labels)
        self.assertLess(last, 0.8 * first)

    def lone_and_parallel(self, attach, detach):
        """Three steps of a lone trainer, then of one that attach(trainer) joins to a stand-in for
        two identical processes (detach(trainer) after): both lists of losses."""
        x, labels = batch_data()
        losses = []
        for parallel in (False, True):
            teacher, student = teacher_student()
            trainer = kd.Trainer(student, kd.Loss(temperature=2.0, alpha=0.5),
                                 kd.Optimizer(student, learning_rate=0.05))
            trainer.add_teacher(teacher)
            if parallel:
                attach(trainer)
            losses.append([trainer.step(x, labels) for _ in range(3)])
            if parallel:
                detach(trainer)
        return losses

    def test_data_parallel_through_a_python_allreduce(self):
        # Two identical processes stood for by one: the sum doubles, the steps are the lone ones.
        def double(data, count):
            np.ctypeslib.as_array(data, shape=(count,))[:] *= 2.0
            return 0

        def attach(trainer):
            trainer.set_allreduce(double, 0, 2)
            trainer.set_int(kd.TRAINER_SYNC_BATCHNORM, 1)
            self.assertEqual(trainer.get_int(kd.TRAINER_SYNC_BATCHNORM), 1)

        def detach(trainer):
            trainer.set_allreduce(None, 0, 1)
            trainer.broadcast()  # a lone trainer: nothing to send

        lone, parallel = self.lone_and_parallel(attach, detach)
        np.testing.assert_allclose(parallel, lone, rtol=1e-5)

    def test_data_parallel_through_a_non_blocking_allreduce(self):
        # Sums doubled at wait, in buckets of 8 floats: the steps are the lone ones.
        pending = {}

        def start(data, count, tag):
            pending[tag] = np.ctypeslib.as_array(data, shape=(count,))
            return 0

        def wait(tag):
            pending.pop(tag)[:] *= 2.0
            return 0

        def attach(trainer):
            trainer.set_allreduce_async(start, wait, 0, 2)
            trainer.set_int(kd.TRAINER_BUCKET_FLOATS, 8)
            self.assertEqual(trainer.get_int(kd.TRAINER_BUCKET_FLOATS), 8)

        def detach(trainer):
            self.assertEqual(pending, {})
            trainer.set_allreduce_async(None, None, 0, 1)

        lone, parallel = self.lone_and_parallel(attach, detach)
        np.testing.assert_allclose(parallel, lone, rtol=1e-5)

    def test_dataset_arrays_are_views_of_the_library(self):
        d = kd.Dataset.load_idx_prefix(TRAIN)
        images, labels = d.images, d.labels
        self.assertEqual(images.ctypes.data, address(SPY.real.kd_dataset_images(d.handle)))
        self.assertEqual(labels.ctypes.data, address(SPY.real.kd_dataset_labels(d.handle)))
        self.assertEqual((images.shape, images.dtype), ((2000, 1, 28, 28), np.float32))
        self.assertFalse(images.flags.writeable)
        with self.assertRaises(ValueError):
            images[0, 0, 0, 0] = 1.0
        self.assertEqual(labels[:10].tolist(), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
        self.assertEqual(int(np.rint(images[0] * 255).sum()), 76247)  # as tests/test_dataset.c
        # the views keep the dataset: close() waits for them
        d.close()
        self.assertFalse(d.closed)
        self.assertEqual(labels[1999], d.labels[1999])
        del images, labels
        gc.collect()
        self.assertTrue(d.closed)

    def test_in_place_augmentation(self):
        d = kd.Dataset.load_idx_prefix(TRAIN)
        x = np.array(d.images[:8])  # a writable copy
        original = x.copy()
        self.assertIs(kd.augment_images(x, kd.AUGMENT_HFLIP, seed=3), x)
        self.assertEqual(address(SPY.last("kd_augment_images")[0]), x.ctypes.data)
        flipped = [np.array_equal(x[i], original[i, :, :, ::-1]) for i in range(8)]
        self.assertTrue(all(flipped[i] or np.array_equal(x[i], original[i]) for i in range(8)))
        self.assertTrue(0 < sum(flipped) < 8)
        with self.assertRaises(TypeError):
            kd.augment_images(d.images[:8], kd.AUGMENT_HFLIP)  # read-only

    def test_batches_are_filled_in_place(self):
        d = kd.Dataset.load_idx_prefix(TRAIN)
        batcher = kd.Batcher(d, 512, seed=7)
        seen, sizes = [], []
        for x, y in batcher:
            idx = batcher.indices()
            self.assertEqual(x.dtype, np.float32)
            np.testing.assert_array_equal(x, d.images[idx])
            np.testing.assert_array_equal(y, d.labels[idx])
            sizes.append(len(y))
            seen += idx.tolist()
        self.assertEqual(sizes, [512, 512, 512, 464])
        self.assertEqual(sorted(seen), list(range(2000)))

    def test_tensors_read_the_array(self):
        t = kd.Tensors()
        logits = np.arange(6, dtype=np.float32).reshape(2, 3)
        t["logits"] = logits
        self.assertEqual(SPY.last("kd_tensors_set")[5], logits.ctypes.data)
        with self.assertRaises(KeyError):  # a mapping's error, not the library's
            t["missing"]
        with self.assertRaises(KeyError):
            del t["missing"]

    def test_arguments_of_the_wrong_type_are_type_errors(self):
        with self.assertRaises(TypeError) as err:
            kd.Model("input 4 | dense 2", seed="1")
        self.assertIn("kd_model_create", str(err.exception))
        # an int out of the C type's range is refused, not wrapped (seed -1 was 2^64 - 1)
        for seed in (-1, 2**64):
            with self.assertRaises(ValueError) as err:
                kd.Model("input 4 | dense 2", seed=seed)
            self.assertIn("kd_model_create", str(err.exception))

    def test_quantize_reads_the_calibration_array(self):
        m, _ = teacher_student()  # the teacher: dense and relu have int8 forms
        x, _ = batch_data()
        with m.quantize(x) as q:
            self.assertEqual(address(SPY.last("kd_model_quantize")[1]), x.ctypes.data)
            self.assertTrue(q.is_quantized)
            with self.assertRaises(kd.UnsupportedError) as err:  # not "nothing to prune"
                q.prune_channels(0.5)
            self.assertIn("int8", str(err.exception))
        with self.assertRaises(TypeError):
            m.quantize(x.astype(np.float64))  # never converted behind your back

    def test_tensors_read_8_bit_arrays(self):
        t = kd.Tensors()
        w = np.arange(-3, 3, dtype=np.int8).reshape(2, 3)
        t["w"] = w
        self.assertEqual(SPY.last("kd_tensors_set")[5], w.ctypes.data)

    def test_what_is_refused_and_how_to_convert(self):
        _, m = teacher_student()
        x, labels = batch_data()
        for bad, words in ((x.astype(np.float64), "float64"), (x.tolist(), "list"),
                           (np.asfortranarray(x), "contiguous"),
                           (np.ones((BATCH, 2 * IN), np.float32)[:, ::2], "contiguous"),
                           (x.astype(">f4"), "float32")):
            with self.assertRaises(TypeError) as caught:
                m.predict(bad)
            self.assertIn(words, str(caught.exception))
        # C-contiguous but unaligned: said so, with a conversion that does align it
        raw = np.zeros(x.nbytes + 1, np.uint8)
        unaligned = raw[1:].view(np.float32).reshape(x.shape)
        unaligned[...] = x
        self.assertTrue(unaligned.flags.c_contiguous and not unaligned.flags.aligned)
        with self.assertRaises(TypeError) as caught:
            m.predict(unaligned)
        self.assertIn("not aligned", str(caught.exception))
        self.assertNotIn("C-contiguous", str(caught.exception))
        np.testing.assert_array_equal(m.predict(kd.as_float32(unaligned)), m.predict(x))
        with self.assertRaises(ValueError) as caught:
            m.predict(np.ones((BATCH, IN + 1), np.float32))
        self.assertIn("6 values an example", str(caught.exception))
        with self.assertRaises(ValueError):
            m.predict(x, out=np.empty((BATCH, CLASSES + 1), np.float32))
        with self.assertRaises(TypeError):
            m.evaluate(x, labels.astype(np.int64))
        # explicit conversions: the same array when it already fits, else a fitting copy
        self.assertIs(kd.as_float32(x), x)
        self.assertIs(kd.as_int32(labels), labels)
        np.testing.assert_array_equal(m.predict(kd.as_float32(x.astype(np.float64))),
                                      m.predict(x))
        self.assertTrue(kd.as_float32(np.ones((3, 4))[:, ::2]).flags.c_contiguous)


class Errors(unittest.TestCase):
    def assertFailsWith(self, cls, status, call, *args):
        with self.assertRaises(cls) as caught:
            call(*args)
        err = caught.exception
        self.assertIsInstance(err, kd.KdError)
        self.assertEqual(err.status, status)
        self.assertTrue(err.message)
        self.assertEqual(err.message, kd.last_error())  # the library's own sentence
        self.assertIn(err.message, str(err))
        self.assertIn(kd.strerror(status), str(err))
        return err

    def test_threads(self):
        old = kd.get_threads()
        try:
            kd.set_threads(2)
            self.assertEqual(kd.get_threads(), 2)
            with self.assertRaises(kd.ArgumentError):
                kd.set_threads(-1)
            self.assertEqual(kd.get_threads(), 2)
        finally:
            kd.set_threads(old)

    def test_each_status_its_class(self):
        err = self.assertFailsWith(kd.FormatError, kd.ERR_FORMAT, kd.Model, "input 4 | bogus 3")
        self.assertIn("bogus", err.message)
        self.assertEqual(err.function, "kd_model_create")
        self.assertIsInstance(err, ValueError)
        err = self.assertFailsWith(kd.ArgumentError, kd.ERR_ARGUMENT, kd.Model, None)
        self.assertIn("spec", err.message)
        with tempfile.TemporaryDirectory() as tmp:
            err = self.assertFailsWith(kd.KdIOError, kd.ERR_IO, kd.Model.load,
                                       os.path.join(tmp, "absent.safetensors"))
            self.assertIsInstance(err, OSError)
            m = kd.Model("input 4 | dense 3", seed=1)
            m.save(os.path.join(tmp, "m.safetensors"))
            wider = kd.Model("input 4 | dense 5", seed=1)
            self.assertFailsWith(kd.ShapeError, kd.ERR_SHAPE, wider.load_weights,
                                 os.path.join(tmp, "m.safetensors"))
        self.assertFailsWith(kd.StateError, kd.ERR_STATE, kd.Loss().backward)
        self.assertFailsWith(kd.UnsupportedError, kd.ERR_UNSUPPORTED,
                             kd.Model("input 3 | dense 2").predict_tokens,
                             np.zeros((1, 3), np.int32))
        t = kd.Tensors()
        self.assertFailsWith(kd.NumericError, kd.ERR_NUMERIC, t.__setitem__, "x",
                             np.array([np.nan], np.float32))
        old = kd.get_limit(kd.LIMIT_MODEL_VALUES)
        kd.set_limit(kd.LIMIT_MODEL_VALUES, 100)
        try:
            # FormatError, as kd.h and kd.errors say (not NoMemoryError)
            self.assertFailsWith(kd.FormatError, kd.ERR_FORMAT, kd.Model, "input 10 | dense 10")
        finally:
            kd.set_limit(kd.LIMIT_MODEL_VALUES, old)
        kd.set_allocator()  # libc's again, as it already is
        # some of the four functions: kd.h's KD_ERR_ARGUMENT, said before any call to C
        for given in ((lambda u, n: None,), (None, None, None, lambda u, p: None)):
            calls = len(SPY.calls)
            with self.assertRaises(kd.ArgumentError) as err:
                kd.set_allocator(*given)
            self.assertIn("missing", str(err.exception))
            self.assertEqual(err.exception.status, kd.ERR_ARGUMENT)
            self.assertNotIn("kd_set_allocator", [n for n, _ in SPY.calls[calls:]])
        kd.Model("input 4 | dense 2", seed=1).close()  # libc's still

    def test_teacher_weights_one_a_teacher(self):
        # the library reads exactly one weight a teacher: a slice of a longer buffer or extra
        # weights were taken silently
        teacher, _ = teacher_student()
        x, _ = batch_data()
        z = teacher.predict(x)
        buf = np.array([1, 1000], np.float32)
        for weights in (buf[:1], [1, 0, 0, 0], []):
            with self.assertRaises(ValueError) as caught:
                kd.soft_targets([teacher, teacher], x, 4.0, weights=weights)
            self.assertIn("weights", str(caught.exception))
            with self.assertRaises(ValueError):
                kd.soft_targets_from_logits(np.stack([z, z]), 4.0, weights=weights)
        np.testing.assert_allclose(kd.soft_targets([teacher, teacher], x, 4.0, weights=buf),
                                   kd.soft_targets([teacher], x, 4.0), rtol=1e-5)

    def test_a_failed_call_changes_nothing(self):
        loss = kd.Loss()
        self.assertFailsWith(kd.ArgumentError, kd.ERR_ARGUMENT, loss.set, kd.LOSS_TEMPERATURE,
                             -1.0)
        self.assertAlmostEqual(loss.get(kd.LOSS_TEMPERATURE), 4.0)


class Handles(unittest.TestCase):
    def setUp(self):
        gc.collect()
        self.start = len(SPY.calls)

    def destroyed(self):
        """The handles freed since the test began (addresses are reused afterwards)."""
        return [(n, args[0]) for n, args in SPY.calls[self.start:] if n.endswith("_destroy")]

    def test_with_blocks_free_the_handle(self):
        with kd.Model("input 4 | dense 3", seed=1) as m:
            h = m.handle
            self.assertFalse(m.closed)
        self.assertTrue(m.closed)
        self.assertIn(("kd_model_destroy", h), self.destroyed())
        m.close()  # twice is fine
        self.assertEqual(self.destroyed().count(("kd_model_destroy", h)), 1)
        self.assertIsNone(m.handle)
        with self.assertRaises(ValueError) as caught:
            m.predict(np.ones((1, 4), np.float32))
        self.assertIn("closed kd.Model", str(caught.exception))
        with self.assertRaises(ValueError):
            kd.Optimizer(m)

    def test_a_lent_handle_is_freed_after_its_borrower(self):
        model = kd.Model("input 4 | dense 3", seed=1)
        mh = model.handle
        with kd.Optimizer(model, learning_rate=0.1) as opt:
            oh = opt.handle
            model.close()  # the optimizer still uses it: deferred
            self.assertFalse(model.closed)
            self.assertNotIn(("kd_model_destroy", mh), self.destroyed())
        self.assertTrue(model.closed)
        freed = self.destroyed()
        self.assertLess(freed.index(("kd_optimizer_destroy", oh)),
                        freed.index(("kd_model_destroy", mh)))

    def test_every_handle_kind_closes(self):
        teacher, student = teacher_student()
        loss, opt = kd.Loss(), kd.Optimizer(student)
        objects = [teacher, student, loss, opt, kd.Trainer(student, loss, opt),
                   kd.FeatureLoss(), kd.Dataset(TEST_IMAGES, TEST_LABELS), kd.Tensors(),
                   kd.Text(os.path.join(DATA, "text", "sample.txt"))]
        objects.append(kd.Batcher(objects[6], 10))
        objects.append(kd.Pruner(student, 0.5))
        handles = {o.handle for o in objects}
        for o in reversed(objects):
            o.close()
        self.assertTrue(all(o.closed for o in objects))
        self.assertLessEqual(handles, {h for _, h in self.destroyed()})


class Classes(unittest.TestCase):
    """Each class and function, end to end."""

    def test_library(self):
        major, minor, patch = (int(p) for p in kd.version().split("."))
        self.assertEqual(kd.version_number(), major * 10000 + minor * 100 + patch)
        self.assertEqual(kd.__version__, kd.version())
        self.assertIn(kd.kernels_name(), ("ref", "avx2", "avx512"))
        self.assertTrue(os.path.exists(capi.path()))

    def test_where_the_library_comes_from(self):
        """KD_LIBRARY (a file) first, then KD_LIBRARY_PATH (directories), each in a fresh
        interpreter."""
        import subprocess
        import sys
        real = os.path.realpath(SPY.real._name)
        code = "import kd; print(kd.capi.path())"
        for extra in ({"KD_LIBRARY": real}, {"KD_LIBRARY_PATH": "/nonexistent:" +
                                             os.path.dirname(real)}):
            env = {k: v for k, v in os.environ.items()
                   if k not in ("KD_LIBRARY", "KD_LIBRARY_PATH")}
            env.update(extra)
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
            self.assertEqual(os.path.realpath(out), real, extra)
        env = dict(os.environ, KD_LIBRARY=os.path.join(DATA, "absent.so"))
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("KD_LIBRARY", run.stderr)  # the error says what to set

    def test_model(self):
        m = kd.Model("input 1x28x28 | conv 4 3 pad=1 | relu | maxpool 2 | flatten | dense 10",
                     seed=3)
        self.assertEqual((m.input_size, m.output_size, m.layer_count), (784, 10, 5))
        self.assertEqual(m.layers[0], ("conv", 4 * 9 + 4, 4 * 28 * 28))
        self.assertEqual(m.param_count, sum(p for _, p, _ in m.layers))
        test = kd.Dataset(TEST_IMAGES, TEST_LABELS)
        x = test.images[:16]
        logits = m.forward(x)
        feature = m.feature(0)
        self.assertEqual(feature.shape, (16, 4, 28, 28))
        m.zero_grad()
        m.feature_backward(0, np.zeros_like(feature))
        m.backward(np.full_like(logits, 0.1))
        correct, matrix = m.evaluate(test.images, test.labels, batch=128, confusion=True)
        self.assertEqual(m.evaluate(test.images, test.labels), correct)
        self.assertEqual((matrix.sum(), np.trace(matrix)), (500, correct))
        self.assertEqual(correct, int((m.predict(test.images).argmax(1) == test.labels).sum()))
        clone = m.clone()
        np.testing.assert_array_equal(clone.predict(x), m.predict(x))
        clone.adjust_output_bias(2, 1.5)
        np.testing.assert_allclose(clone.predict(x)[:, 2], m.predict(x)[:, 2] + 1.5, rtol=1e-6,
                                   atol=1e-5)
        mean, std = test.channel_stats()
        m.set_normalization(mean, std)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.safetensors")
            m.save(path)
            back = kd.Model.load(path)
            self.assertEqual(back.spec, m.spec)
            np.testing.assert_array_equal(back.normalization[0], mean)
            np.testing.assert_array_equal(back.predict(x), m.predict(x))
            other = kd.Model(m.spec, seed=99)
            other.load_weights(path)
            other.set_normalization(mean, std)
            np.testing.assert_array_equal(other.predict(x), m.predict(x))

    def test_losses_and_targets(self):
        teacher, student = teacher_student()
        x, labels = batch_data()
        soft = kd.soft_targets([teacher], x, 4.0)
        np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
        z = teacher.predict(x)
        np.testing.assert_allclose(kd.soft_targets_from_logits(z, 4.0), soft, rtol=1e-5)
        two = kd.soft_targets_from_logits(np.stack([z, z]), 4.0, weights=[1.0, 3.0])
        np.testing.assert_allclose(two, soft, rtol=1e-5)
        loss = kd.Loss(temperature=4.0, alpha=0.9)
        s = student.forward(x)
        value = loss.forward(s, soft, labels)
        self.assertAlmostEqual(value, loss.value(kd.LOSS_PART_SOFT) +
                               loss.value(kd.LOSS_PART_HARD), places=4)
        grad = loss.backward()
        self.assertEqual(grad.shape, (BATCH, CLASSES))
        out = np.empty_like(grad)
        self.assertIs(loss.backward(out=out), out)
        np.testing.assert_array_equal(out, grad)
        std = kd.Loss(kd.LOSS_DKD, temperature=2.0)
        std.set(kd.LOSS_LOGIT_STANDARDIZE, 1.0)
        self.assertTrue(math.isfinite(std.forward_logits(s, z, labels)))
        idx, val, rest = kd.topk_from_logits(z, CLASSES)
        self.assertEqual(idx.shape, (BATCH, CLASSES))
        np.testing.assert_allclose(kd.topk_soft_targets(idx, val, rest, CLASSES, 4.0), soft,
                                   rtol=1e-5)
        np.testing.assert_allclose(kd.topk_logits(idx, val, rest, CLASSES), z, rtol=1e-5,
                                   atol=1e-5)
        student.backward(grad)
        opt = kd.Optimizer(student, kd.OPTIMIZER_ADAM, learning_rate=0.01)
        opt.set_int(kd.OPT_SCHEDULE, kd.SCHEDULE_MULTISTEP)
        opt.set_milestones([2, 5])
        self.assertEqual(opt.get_milestones(), [2, 5])
        opt.step()
        self.assertEqual(opt.get_int(kd.OPT_STEP), 1)
        self.assertAlmostEqual(opt.get_float(kd.OPT_LEARNING_RATE), 0.01)
        feat = kd.FeatureLoss(kd.FEATURE_RKD, distance_weight=1.0, angle_weight=2.0)
        self.assertEqual(feat.get(kd.FEATURE_RKD_ANGLE_WEIGHT), 2.0)
        a, b = np.cos(x), np.sin(x)
        self.assertGreater(feat.forward(a, b), 0.0)
        self.assertEqual(feat.backward().shape, (BATCH, IN))
        self.assertGreater(kd.FeatureLoss(kd.FEATURE_HINT).forward(a.reshape(BATCH, IN, 1, 1),
                                                                   b.reshape(BATCH, IN, 1, 1)), 0)

    def test_trainer_with_a_hint_and_checkpoints(self):
        train = kd.Dataset.load_idx_prefix(TRAIN)
        teacher = kd.Model("input 784 | dense 48 | relu | dense 10", seed=1)

        def build():
            student = kd.Model("input 784 | dense 16 | relu | dense 10", seed=2)
            loss = kd.Loss(temperature=4.0, alpha=0.9)
            trainer = kd.Trainer(student, loss, kd.Optimizer(student, learning_rate=0.05,
                                                             momentum=0.9))
            trainer.add_teacher(teacher)
            hint = kd.FeatureLoss(kd.FEATURE_HINT)
            self.assertEqual(trainer.add_feature_loss(hint, 1, 0, 1, regressor="dense 48"), 0)
            return trainer, student, loss, hint

        a, student, loss, hint = build()
        self.assertEqual(a.regressor(0).output_size, 48)
        a.set_int(kd.TRAINER_HINT_ONLY, 1)
        self.assertEqual(a.get_int(kd.TRAINER_HINT_ONLY), 1)
        batches = list(kd.Batcher(train, 100, seed=3))[:6]
        for x, y in batches[:3]:
            a.step(x, y)
        self.assertGreater(a.feature_value(0), 0.0)
        self.assertEqual(hint.backward().shape, (100, 48))
        a.set_int(kd.TRAINER_HINT_ONLY, 0)
        for x, y in batches[3:5]:
            a.step(x, y)
        self.assertEqual(loss.backward().shape, (100, 10))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "run.safetensors")
            a.save(path)
            b, student_b, *_ = build()
            b.load(path)
            x, y = batches[5]
            self.assertEqual(a.step(x, y), b.step(x, y))
            np.testing.assert_array_equal(student.predict(x), student_b.predict(x))

    def test_data_formats(self):
        np_dir = os.path.join(DATA, "numpy")
        d = kd.Dataset.load_npy(os.path.join(np_dir, "x_f32.npy"),
                                os.path.join(np_dir, "y_i64.npy"))
        self.assertEqual((len(d), d.shape, d.labels.tolist()), (6, (4, 1, 1), [0, 1, 2, 1, 0, 2]))
        np.testing.assert_array_equal(d.images.reshape(6, 4),
                                      np.load(os.path.join(np_dir, "x_f32.npy")))
        z = kd.Dataset.load_npz(os.path.join(np_dir, "set_compressed.npz"))
        np.testing.assert_array_equal(z.images, d.images)
        c = kd.Dataset.load_csv(os.path.join(DATA, "csv", "iris.csv"), "species")
        self.assertEqual(c.classes, ["setosa", "versicolor", "virginica"])
        f = kd.Dataset.load_image_folder(os.path.join(DATA, "images", "folder"), 3)
        self.assertEqual((len(f), f.shape, f.classes), (6, (3, 3, 4), ["cat", "dog"]))
        rest, held = kd.Dataset.load_idx(TEST_IMAGES, TEST_LABELS).split(0.2, 1)
        self.assertEqual((len(rest), len(held)), (400, 100))
        whole = kd.Dataset.load_idx(TEST_IMAGES, TEST_LABELS)
        moved = whole.hold_out(0.2, 1)  # the same parts, the rest compacted in place
        np.testing.assert_array_equal(moved.labels, held.labels)
        np.testing.assert_array_equal(whole.images, rest.images)
        # a hold-out during an epoch: the rest of its order is refused (it named rows that moved
        # or left), a new batcher covers what is left
        d = kd.Dataset.load_idx(TEST_IMAGES, TEST_LABELS)
        b = kd.Batcher(d, 100, seed=3)
        b.next()
        d.hold_out(0.5, 7)
        with self.assertRaises(kd.StateError):
            b.next()
        seen = np.concatenate([y for _, y in kd.Batcher(d, 100, seed=3)])
        self.assertEqual(sorted(seen.tolist()), sorted(d.labels.tolist()))
        self.assertIsNone(kd.Dataset(TEST_IMAGES).labels)
        with tempfile.TemporaryDirectory() as tmp:
            for a in (np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(3, dtype=np.int32),
                      np.array([1 << 40], np.int64)):
                path = os.path.join(tmp, "a.npy")
                kd.save_npy(path, a)
                back = np.load(path)
                self.assertEqual(back.dtype, a.dtype)
                np.testing.assert_array_equal(back, a)

    def test_tensors(self):
        logits = np.array([[0.5, -1.0, 2.0], [3.5, 0.0, 1.0]], np.float32)
        t = kd.Tensors({"logits": logits, "labels": np.array([2, 0], np.int32)},
                       meta={"kd.kind": "logits"})
        t["ids"] = np.array([1 << 40], np.int64)
        weight = np.array([[-127, 0, 5], [127, -1, 3]], np.int8)  # int8 weights, uint8 points
        t["weight"], t["zero_point"] = weight, np.array([200], np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cache.safetensors")
            t.save(path)
            with kd.Tensors.load(path) as back:
                for name, a in (("weight", weight), ("zero_point", np.array([200], np.uint8))):
                    got = back[name]
                    self.assertEqual((got.dtype, got.shape), (a.dtype, a.shape))
                    np.testing.assert_array_equal(got, a)
                    del back[name]
                self.assertEqual(back.keys(), ["logits", "labels", "ids"])
                got = back["logits"]
                self.assertEqual(got.dtype, np.float32)
                np.testing.assert_array_equal(got, logits)
                self.assertEqual(back["ids"].tolist(), [1 << 40])
                self.assertEqual(back.meta["kd.kind"], "logits")
                self.assertEqual(back.meta.keys(), ["kd.kind"])
                self.assertIsNone(back.meta.get("absent"))
                del back.meta["kd.kind"]
                self.assertEqual(back.meta.keys(), [])
                with self.assertRaises(KeyError):
                    del back.meta["kd.kind"]
                self.assertIn("ids", back)
                del back["ids"]
                self.assertEqual(len(back), 2)
        with self.assertRaises(TypeError):
            t["x"] = np.ones(3, np.float64)
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(TypeError):
            kd.save_npy(os.path.join(tmp, "a.npy"), weight)  # .npy writes 32/64-bit dtypes only

    def test_quantisation_aware_training(self):
        x = np.sin(0.3 * np.arange(64 * IN, dtype=np.float32)).reshape(64, IN)
        m = kd.Model("input %d | dense 16 | relu | dense %d" % (IN, CLASSES), seed=3)
        self.assertFalse(m.fake_quant)
        m.fake_quant = True
        self.assertTrue(m.fake_quant)
        with self.assertRaises(kd.StateError):
            m.quantize_trained()  # no training step has tracked the ranges yet
        m.forward(x)
        m.backward(np.full((64, CLASSES), 0.01, np.float32))
        want = m.predict(x)
        q = m.quantize_trained()
        self.assertTrue(q.is_quantized)
        self.assertLess(np.abs(q.predict(x) - want).max(), 0.05 * np.abs(want).max() + 1e-3)
        m.fake_quant = False
        with self.assertRaises(kd.StateError):
            m.quantize_trained()

    def test_quantize_export_and_prune(self):
        x = np.sin(0.3 * np.arange(64 * IN, dtype=np.float32)).reshape(64, IN)
        m = kd.Model("input %d | dense 16 | relu | dense 8 | relu | dense %d" % (IN, CLASSES),
                     seed=3)
        want = m.predict(x)
        q = m.quantize(x)
        self.assertEqual((q.is_quantized, m.is_quantized), (True, False))
        got = q.predict(x)  # int8 logits near the float ones
        self.assertEqual(got.shape, want.shape)
        self.assertLess(np.abs(got - want).max(), 0.1 * np.abs(want).max() + 1e-3)
        # int8 layers' activations are uint8 codes (one byte a value), the logits floats
        codes = [q.feature(i) for i in range(q.layer_count)]
        self.assertEqual([(c.dtype, c.shape) for c in codes],
                         [(np.uint8, (64, IN, 1, 1)), (np.uint8, (64, 16, 1, 1)),
                          (np.uint8, (64, 8, 1, 1)), (np.float32, (64, CLASSES, 1, 1))])
        np.testing.assert_array_equal(codes[-1].reshape(64, CLASSES), got)
        # images' codes in the float layout [batch, c, h, w]: a 1x1 convolution's codes are its
        # input's channel mix, so channel k of the codes follows channel k of the float output
        img = np.sin(0.7 * np.arange(8 * 3 * 4 * 4, dtype=np.float32)).reshape(8, 3, 4, 4)
        c = kd.Model("input 3x4x4 | conv 5 1 | relu | flatten | dense 2", seed=2)
        c.predict(img)
        fl = c.feature(1)
        with c.quantize(img) as cq:
            cq.predict(img)
            k = [i for i in range(cq.layer_count) if cq.feature(i).shape == fl.shape][0]
            q8 = cq.feature(k).astype(np.float32)
            self.assertEqual(q8.shape, (8, 5, 4, 4))
            for ch in range(5):  # codes are an increasing map of the floats, channel by channel
                a, b = fl[:, ch].ravel(), q8[:, ch].ravel()
                self.assertGreater(np.corrcoef(a, b)[0, 1], 0.99)
        p = m.quantize(x, kd.CALIBRATION_PERCENTILE, 99.0)
        self.assertTrue(p.is_quantized)
        with self.assertRaises(kd.ArgumentError):
            m.quantize(x, kd.CALIBRATION_PERCENTILE, 20.0)  # percentile outside (50, 100]
        with self.assertRaises(kd.UnsupportedError):
            q.quantize(x)  # already int8
        with tempfile.TemporaryDirectory() as tmp:
            for model, name in ((m, "float.onnx"), (q, "int8.onnx")):
                path = os.path.join(tmp, name)
                model.export_onnx(path)
                with open(path, "rb") as f:
                    data = f.read()
                self.assertEqual(data[:2], b"\x08\x08")  # ModelProto.ir_version = 8
                self.assertIn(b"kd.spec", data)
            q.save(os.path.join(tmp, "q.safetensors"))
            self.assertTrue(kd.Model.load(os.path.join(tmp, "q.safetensors")).is_quantized)
        # structured pruning: half the hidden neurons go, the output layer keeps its size
        small = m.prune_channels(0.5)
        self.assertEqual([info[2] for info in small.layers], [8, 8, 4, 4, CLASSES])
        self.assertEqual(m.layers[0][2], 16)  # m unchanged
        self.assertEqual(small.predict(x).shape, (64, CLASSES))
        # magnitude pruning on a schedule: 0 at begin, the target from end on
        self.assertEqual(m.sparsity, 0.0)
        with kd.Pruner(m, 0.5, begin=2, end=4) as pruner:
            self.assertEqual(pruner.sparsity, 0.0)
            pruner.step(0)
            self.assertEqual(pruner.sparsity, 0.0)
            pruner.step(3)
            self.assertGreater(pruner.sparsity, 0.0)
            self.assertLess(pruner.sparsity, 0.5)
            pruner.step(4)
            self.assertAlmostEqual(pruner.sparsity, 0.5, places=5)
            self.assertAlmostEqual(m.sparsity, 0.5, delta=0.02)
        with self.assertRaises(kd.ArgumentError):
            kd.Pruner(m, 1.0)  # sparsity in [0, 1)

    def test_text_and_token_models(self):
        text = kd.Text(os.path.join(DATA, "text", "sample.txt"))
        with self.assertRaises(kd.FormatError):  # max_bytes refuses a larger file, never cuts it
            kd.Text(os.path.join(DATA, "text", "sample.txt"), max_bytes=len(text) - 1)
        self.assertEqual(len(kd.Text(os.path.join(DATA, "text", "sample.txt"), len(text))),
                         len(text))
        text.split(0.25)
        self.assertEqual(text.part_size(kd.TEXT_TRAIN) + text.part_size(kd.TEXT_VALIDATION),
                         len(text))
        ids, targets = text.batch(2, 5, seed=1)
        self.assertEqual((ids.shape, ids.dtype), ((2, 5), np.int32))
        np.testing.assert_array_equal(ids[:, 1:], targets[:, :-1])
        with open(os.path.join(DATA, "text", "sample.txt"), "rb") as f:
            self.assertEqual(text.tokens(0, 4).tolist(), list(f.read(4)))
        self.assertAlmostEqual(kd.perplexity(math.log(3.0)), 3.0, places=5)
        self.assertAlmostEqual(kd.bits_per_byte(math.log(256.0)), 8.0, places=5)
        spec = ("tokens 256 5 | embed 8 | posembed | residual(layernorm | attention 2 causal) "
                "| layernorm | lmhead 256 tied")
        m = kd.Model(spec, seed=4)
        self.assertEqual((m.tokens, m.output_rows, m.attention_count), ((256, 5), (5, 256), 1))
        logits = m.forward_tokens(ids)
        self.assertEqual(logits.shape, (2, 5, 256))
        np.testing.assert_array_equal(m.predict_tokens(ids), logits)
        probs = m.attention(0)
        self.assertEqual(probs.shape, (2, 2, 5, 5))
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        m.forward_tokens(ids)
        m.attention_backward(0, np.full((2, 2, 5, 5), 0.5, np.float32))
        m.backward(np.full_like(logits, 0.1))
        self.assertEqual(m.decode_step(3, 0).shape, (256,))
        prompt = np.array([3, 1], np.int32)
        tokens = m.generate(prompt, 3, temperature=0.8, top_k=5, seed=9)
        self.assertEqual(tokens.tolist(), m.generate(prompt, 3, temperature=0.8, top_k=5,
                                                     seed=9).tolist())
        s = kd.Model(spec, seed=5)
        tr = kd.Trainer(s, kd.Loss(kd.LOSS_REVERSE_KL, alpha=0.5),
                        kd.Optimizer(s, kd.OPTIMIZER_ADAM, learning_rate=0.02))
        tr.add_teacher(m)
        first = tr.step(ids.astype(np.float32), targets)
        for _ in range(10):
            last = tr.step(ids.astype(np.float32), targets)
        self.assertLess(last, first)
        # MiniLM's attention transfer through the trainer: a term lowered by steps
        s2 = kd.Model(spec, seed=6)
        tr = kd.Trainer(s2, kd.Loss(kd.LOSS_HINTON, alpha=0.0),
                        kd.Optimizer(s2, kd.OPTIMIZER_ADAM, learning_rate=0.02))
        tr.add_teacher(m)
        kl = kd.FeatureLoss(kd.FEATURE_ATTENTION_KL)
        self.assertEqual(tr.add_attention_loss(kl, 0, 0, 0, kd.ATTENTION_HEADS_MATCHED, 5.0), 0)
        tr.step(ids.astype(np.float32), targets)
        first = tr.feature_value(0)
        for _ in range(30):
            tr.step(ids.astype(np.float32), targets)
        self.assertLess(tr.feature_value(0), first)


class Readme(unittest.TestCase):
    def test_the_package_docstring_names_the_data_folder(self):
        """kd's docstring loads Fashion-MNIST from Debian's folder, the kd tool's default."""
        with open(os.path.join(ROOT, "src", "common.h")) as f:
            folder = re.search(r'#define DEFAULT_DATA_DIR "([^"]+)"', f.read()).group(1)
        self.assertIn('load_idx_prefix("%s/train")' % folder, kd.__doc__)

    def test_the_python_block_runs(self):
        """README.md's Python block (after the marker naming this file), from the source tree."""
        with open(os.path.join(ROOT, "README.md")) as f:
            text = f.read()
        marker = "<!-- tests/python_package/test_package.py runs the next Python block. -->"
        self.assertIn(marker, text)
        block = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.symlink(os.path.join(ROOT, "tests"), os.path.join(tmp, "tests"))
            os.chdir(tmp)
            try:
                scope = {}
                exec(compile(block, "README.md", "exec"), scope)
                self.assertTrue(os.path.exists("student.safetensors"))
            finally:
                os.chdir(cwd)
        accuracy = (scope["logits"].argmax(1) == scope["test"].labels).mean()
        self.assertGreater(accuracy, 0.6)


class ZzEveryFunctionWasCalled(unittest.TestCase):
    """Last (unittest runs classes in name order): the tests above called every function of
    kd.h through the package."""

    def test_every_function_was_called(self):
        every = set(capi._STATUS) | set(capi._OTHER)
        if len(SPY.called) < len(every) // 2:
            self.skipTest("only part of the module ran")
        self.assertEqual(sorted(every - SPY.called - set(capi.LOW_LEVEL_ONLY)), [],
                         "kd.h functions no test called through the package")


if __name__ == "__main__":
    unittest.main()
