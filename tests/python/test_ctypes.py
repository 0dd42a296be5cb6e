"""The ctypes binding (examples/python/kd.py) against a built libkd.so.

ctest runs it with KD_LIBRARY pointing at the library (and PYTHONPATH at examples/python); by hand:
    KD_LIBRARY=build/libkd.so python3 -m unittest discover -s tests/python
"""
import array
import math
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                                "python"))
import kd  # noqa: E402

BATCH, IN, CLASSES = 8, 6, 3


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


class Errors(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main()
