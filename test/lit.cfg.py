# -*- Python -*-
# lit configuration of optim-mlir: FileCheck tests of the dialect, the passes,
# the front end and the examples, plus the GoogleTest unit tests.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "OPTIM"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".optim", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "e2e", "fuzz", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.optim_obj_root, "test")

config.substitutions.append(("%examples", os.path.join(config.optim_src_root, "examples")))
config.substitutions.append(("%optim_src_root", config.optim_src_root))
config.substitutions.append(("%optim_obj_root", config.optim_obj_root))
# The C++ compiler of the build, for snippets of the docs (test/Docs).
config.substitutions.append(("%cxx", getattr(config, "optim_cxx", "c++")))
config.substitutions.append(("%llvm_include", os.path.join(os.path.dirname(config.llvm_tools_dir), "include")))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.optim_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["optim-opt", "optimc", "optim-eval", "optim-train", "mlir-tblgen", "mlir-translate"], tool_dirs)
llvm_config.with_environment("PATH", config.optim_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

if config.optim_unittests in ("ON", "1", "TRUE", "True", "YES"):
    config.available_features.add("unittests")

# Kernels that tests compile are cached here, never in the user's cache.
config.environment["OPTIM_CACHE_DIR"] = os.path.join(config.optim_obj_root, "test", "kernel-cache")

# test/Oracle compares the examples with torch.optim, through liboptim.so and
# the `python3` of PATH: it needs torch and numpy there (not in Debian's
# /usr/bin/python3). Without them the test is UNSUPPORTED.
def python_has(modules):
    import shutil
    import subprocess

    python = shutil.which("python3", path=config.environment.get("PATH"))
    if not python:
        return False
    try:
        return subprocess.run([python, "-c", "import " + modules],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              env=config.environment, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# test/GPU needs the CUDA toolkit (ptxas, libdevice), not a GPU.
def has_cuda_toolkit():
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "ptxas"), os.X_OK) and \
                os.path.exists(os.path.join(root, "nvvm", "libdevice", "libdevice.10.bc")):
            return True
    return False


if has_cuda_toolkit():
    config.available_features.add("cuda-toolkit")

if python_has("torch, numpy"):
    config.available_features.add("torch")
if python_has("numpy"):
    config.available_features.add("numpy")
# test/Oracle/qp-oracle.test: the QP solver against cvxopt (pip or Debian's
# python3-cvxopt; scripts/install-deps.sh installs it).
if python_has("cvxopt, numpy"):
    config.available_features.add("cvxopt")
