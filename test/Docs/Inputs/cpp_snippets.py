"""Writes the C++ code blocks of a Markdown file that use optim:: as one
translation unit, so that a compiler can check that they still compile.

Each block becomes the body of its own function; its #include lines go to
the top. The variables the README's examples take for granted (parameters
w and b, gradients gw and gb) are declared there as std::vector<float>.
"""
import re
import sys


def main(path):
    text = open(path, encoding="utf-8").read()
    blocks = re.findall(r"```cpp\n(.*?)```", text, re.S)
    blocks = [b for b in blocks if "optim::" in b]
    if not blocks:
        sys.exit(f"{path}: no C++ block that uses optim::")
    includes, bodies = ["#include <vector>"], []
    for k, block in enumerate(blocks):
        lines = block.splitlines()
        includes += [l for l in lines if l.startswith("#include")]
        body = "\n".join(l for l in lines if not l.startswith("#include"))
        bodies.append(
            f"void snippet{k}() {{\n"
            "  std::vector<float> w(10), b(3), gw(10), gb(3);\n"
            f"{body}\n}}\n")
    print("\n".join(dict.fromkeys(includes)))
    print("\n".join(bodies))


if __name__ == "__main__":
    main(sys.argv[1])
