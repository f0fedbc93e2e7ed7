#!/usr/bin/env python3
"""Writes random weights for examples/l2l.optim in the safetensors layout
(stdlib only): make_weights.py OUT [--truncate] [--wrong-shape]."""
import json
import random
import struct
import sys

out = sys.argv[1]
shapes = {"lstm1": [80, 23], "lstm2": [80, 41], "head": [1, 21]}
if "--wrong-shape" in sys.argv:
    shapes["head"] = [21, 1]
rng = random.Random(5)
header, blob = {}, b""
for name, shape in shapes.items():
    count = shape[0] * shape[1]
    data = struct.pack("<%df" % count, *[rng.gauss(0, 0.1) for _ in range(count)])
    header[name] = {"dtype": "F32", "shape": shape,
                    "data_offsets": [len(blob), len(blob) + len(data)]}
    blob += data
text = json.dumps(header).encode()
text += b" " * ((8 - len(text) % 8) % 8)
payload = struct.pack("<Q", len(text)) + text + blob
if "--truncate" in sys.argv:
    payload = payload[: len(payload) - 100]
open(out, "wb").write(payload)
