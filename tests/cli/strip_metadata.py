#!/usr/bin/env python3
"""Copies a safetensors file without its __metadata__: a plain PyTorch state dict, as
safetensors.torch.save_file(model.state_dict(), path) writes one.

    strip_metadata.py IN OUT
"""
import json
import struct
import sys

with open(sys.argv[1], "rb") as f:
    blob = f.read()
n = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + n])
header.pop("__metadata__", None)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
