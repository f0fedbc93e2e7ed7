# Compares the tensors (names, dtypes, shapes, bytes) of two safetensors
# files, ignoring their metadata.
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a != b:
    print("tensors differ:", sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))
    sys.exit(1)
print("same tensors:", len(a))
