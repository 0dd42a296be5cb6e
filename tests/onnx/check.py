"""onnx.checker (with shape inference) on every model of DIR/cases.txt.
usage: python3 check.py DIR"""
import os
import sys

import onnx

d = sys.argv[1]
for line in open(os.path.join(d, "cases.txt")):
    name = line.split()[0]
    model = onnx.load(os.path.join(d, name + ".onnx"))
    onnx.checker.check_model(model, full_check=True)
    print(f"{name}: onnx {onnx.__version__} checker accepts it (opset {model.opset_import[0].version})")
