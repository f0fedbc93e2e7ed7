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
config.substitutions.append(("%llvm_include", os.path.join(os.path.dirname(config.llvm_tools_dir), "include")))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.optim_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(["optim-opt", "optimc", "mlir-tblgen"], tool_dirs)
llvm_config.with_environment("PATH", config.optim_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

if config.optim_unittests in ("ON", "1", "TRUE", "True", "YES"):
    config.available_features.add("unittests")

# Kernels that tests compile are cached here, never in the user's cache.
config.environment["OPTIM_CACHE_DIR"] = os.path.join(config.optim_obj_root, "test", "kernel-cache")
