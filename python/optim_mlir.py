"""ctypes binding of optim-mlir's C API (liboptim.so).

A small Python face of runtime/include/optim/optim.h and
include/optim/Compiler/optim_compiler.h; see docs/c-api.md, "From Python".

    import numpy as np, optim_mlir
    rule = optim_mlir.compile_file("examples/adam.optim")
    w = np.zeros(10, np.float32)
    opt = optim_mlir.Optimizer(rule, [w])
    opt.set("lr", 0.01)
    opt.step([np.ones(10, np.float32)])   # updates w in place
    m = opt.state(0, "m")                 # a copy of the state

    l2l = optim_mlir.compile_file("examples/l2l.optim")   # a learned rule
    opt = optim_mlir.Optimizer(l2l, [w])
    opt.load_weights("l2l.safetensors")   # or opt.set_weights(name, array)

    sophia = optim_mlir.compile_file("sophia.optim")     # `input h`
    sophia.inputs                         # ["h"]: per-coordinate inputs
    opt = optim_mlir.Optimizer(sophia, [w])
    opt.step([g], inputs={"h": [h]})      # one array per parameter

The library is found at $OPTIM_LIBRARY, else in the build directories next to
this file (build*/lib/liboptim.so), else by the system's search path; load()
picks another one. Parameters are numpy arrays of the rule's dtype (float32,
or float64 for f64=True), C-contiguous and writeable, updated in place: the
Optimizer keeps them alive (opt.params, a tuple that cannot be replaced).
Every failure of the C API raises OptimError, carrying the status and
optim_last_error(); an argument that ctypes would pass as another value (an
index or count out of its C type's range, a bool or float for an int, a name
or path with a NUL character) raises TypeError or ValueError first. Only
compile_file/compile_source and the Rule's description work without numpy.
"""

import ctypes
import glob
import operator
import os
import weakref

try:
    import numpy as np
except ImportError:  # numpy is needed by Optimizer only
    np = None

__all__ = ["OptimError", "Rule", "Optimizer", "Trajectory", "Layer",
           "compile_file", "compile_source", "compile_layer_file",
           "compile_layer_source", "load"]

_c = ctypes
_status = _c.c_int
_rule_p = _c.c_void_p
_opt_p = _c.c_void_p
_traj_p = _c.c_void_p
_layer_p = _c.c_void_p


class OptimError(RuntimeError):
    """A call of the C API failed: `status` is its code, `status_name` its
    name (e.g. "OPTIM_ERROR_NOT_FOUND"), the message optim_last_error()."""

    def __init__(self, status, status_name, message):
        super().__init__("%s: %s" % (status_name, message))
        self.status = status
        self.status_name = status_name
        self.message = message


class _HyperInfo(_c.Structure):
    _fields_ = [("name", _c.c_char_p), ("default_value", _c.c_double),
                ("is_const", _c.c_int)]


class _StateInfo(_c.Structure):
    _fields_ = [("name", _c.c_char_p), ("size", _c.c_int64),
                ("init", _c.c_double)]


class _WeightsInfo(_c.Structure):
    _fields_ = [("name", _c.c_char_p), ("shape", _c.POINTER(_c.c_int64)),
                ("rank", _c.c_size_t), ("size", _c.c_int64)]


class _ReductionInfo(_c.Structure):
    _fields_ = [("kind", _c.c_char_p), ("is_global", _c.c_int)]


class _Input(_c.Structure):
    # optim_input_f32 and optim_input_f64 have the same layout.
    _fields_ = [("name", _c.c_char_p), ("data", _c.POINTER(_c.c_void_p)),
                ("sizes", _c.POINTER(_c.c_int64))]


class _Group(_c.Structure):
    _fields_ = [("params", _c.POINTER(_c.c_void_p)),
                ("sizes", _c.POINTER(_c.c_int64)), ("num_params", _c.c_size_t),
                ("hypers", _c.c_void_p), ("num_hypers", _c.c_size_t)]


class _Shape(_c.Structure):
    _fields_ = [("dims", _c.POINTER(_c.c_int64)), ("rank", _c.c_size_t)]


class _LayerTensorInfo(_c.Structure):
    _fields_ = [("name", _c.c_char_p), ("shape", _c.POINTER(_c.c_int64)),
                ("rank", _c.c_size_t), ("size", _c.c_int64),
                ("output_kind", _c.c_int)]


class _Options(_c.Structure):
    _fields_ = [("threads", _c.c_uint32), ("chunk_size", _c.c_int64),
                ("skip_non_finite", _c.c_int), ("seed", _c.c_uint64)]


_P = _c.POINTER
# name: (argument types); every function returns an optim_status.
_SIGNATURES = {
    "optim_rule_name": (_rule_p, _P(_c.c_char_p)),
    "optim_rule_dtype": (_rule_p, _P(_c.c_int)),
    "optim_rule_num_hypers": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_hyper": (_rule_p, _c.c_size_t, _P(_HyperInfo)),
    "optim_rule_num_states": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_state": (_rule_p, _c.c_size_t, _P(_StateInfo)),
    "optim_rule_num_weights": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_weights": (_rule_p, _c.c_size_t, _P(_WeightsInfo)),
    "optim_rule_num_reductions": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_reduction": (_rule_p, _c.c_size_t, _P(_ReductionInfo)),
    "optim_rule_reduction_level": (_rule_p, _c.c_size_t, _P(_c.c_uint)),
    "optim_rule_state_axis": (_rule_p, _c.c_size_t, _P(_c.c_char_p)),
    "optim_rule_reduction_axis": (_rule_p, _c.c_size_t, _P(_c.c_char_p)),
    "optim_rule_num_inputs": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_input": (_rule_p, _c.c_size_t, _P(_c.c_char_p)),
    "optim_rule_num_random": (_rule_p, _P(_c.c_size_t)),
    "optim_rule_random": (_rule_p, _c.c_size_t, _P(_c.c_char_p)),
    "optim_rule_release": (_rule_p,),
    "optim_options_init": (_P(_Options),),
    "optim_optimizer_create_f32": (_rule_p, _P(_c.c_void_p), _P(_c.c_int64),
                                   _c.c_size_t, _P(_Options), _P(_opt_p)),
    "optim_optimizer_create_f64": (_rule_p, _P(_c.c_void_p), _P(_c.c_int64),
                                   _c.c_size_t, _P(_Options), _P(_opt_p)),
    "optim_optimizer_create_shaped": (_rule_p, _c.c_int, _P(_Group),
                                      _c.c_size_t, _P(_Shape), _P(_Options),
                                      _P(_opt_p)),
    "optim_optimizer_release": (_opt_p,),
    "optim_optimizer_set": (_opt_p, _c.c_char_p, _c.c_double),
    "optim_optimizer_get": (_opt_p, _c.c_size_t, _c.c_char_p,
                            _P(_c.c_double)),
    "optim_optimizer_step_f32": (_opt_p, _P(_c.c_void_p), _P(_c.c_int64),
                                 _c.c_size_t, _P(_c.c_int)),
    "optim_optimizer_step_f64": (_opt_p, _P(_c.c_void_p), _P(_c.c_int64),
                                 _c.c_size_t, _P(_c.c_int)),
    "optim_optimizer_step_inputs_f32": (_opt_p, _P(_c.c_void_p),
                                        _P(_c.c_int64), _c.c_size_t,
                                        _P(_Input), _c.c_size_t,
                                        _P(_c.c_int)),
    "optim_optimizer_step_inputs_f64": (_opt_p, _P(_c.c_void_p),
                                        _P(_c.c_int64), _c.c_size_t,
                                        _P(_Input), _c.c_size_t,
                                        _P(_c.c_int)),
    "optim_optimizer_step_count": (_opt_p, _P(_c.c_int64)),
    "optim_optimizer_seed": (_opt_p, _P(_c.c_uint64)),
    "optim_optimizer_state": (_opt_p, _c.c_size_t, _c.c_char_p,
                              _P(_c.c_void_p), _P(_c.c_int64)),
    "optim_optimizer_set_weights_f32": (_opt_p, _c.c_char_p, _c.c_void_p,
                                        _c.c_int64),
    "optim_optimizer_set_weights_f64": (_opt_p, _c.c_char_p, _c.c_void_p,
                                        _c.c_int64),
    "optim_optimizer_load_weights": (_opt_p, _c.c_char_p),
    "optim_optimizer_save": (_opt_p, _c.c_char_p),
    "optim_optimizer_load": (_opt_p, _c.c_char_p),
    "optim_compile_file": (_c.c_char_p, _c.c_char_p, _c.c_int,
                           _P(_rule_p)),
    "optim_compile_file_flags": (_c.c_char_p, _c.c_char_p, _c.c_uint,
                                 _P(_rule_p)),
    "optim_compile_source_flags": (_c.c_char_p, _c.c_char_p, _c.c_char_p,
                                   _c.c_uint, _P(_rule_p)),
    "optim_trajectory_create": (_rule_p, _P(_c.c_int64), _c.c_size_t,
                                _P(_Shape), _P(_Options), _P(_traj_p)),
    "optim_trajectory_release": (_traj_p,),
    "optim_trajectory_param": (_traj_p, _c.c_size_t, _P(_c.c_void_p),
                               _P(_c.c_int64)),
    "optim_trajectory_state": (_traj_p, _c.c_size_t, _c.c_char_p,
                               _P(_c.c_void_p), _P(_c.c_int64)),
    "optim_trajectory_set": (_traj_p, _c.c_char_p, _c.c_double),
    "optim_trajectory_get": (_traj_p, _c.c_char_p, _P(_c.c_double)),
    "optim_trajectory_set_weights_f32": (_traj_p, _c.c_char_p, _c.c_void_p,
                                         _c.c_int64),
    "optim_trajectory_set_weights_f64": (_traj_p, _c.c_char_p, _c.c_void_p,
                                         _c.c_int64),
    "optim_trajectory_load_weights": (_traj_p, _c.c_char_p),
    "optim_trajectory_set_seed": (_traj_p, _c.c_uint64),
    "optim_trajectory_reset_state": (_traj_p,),
    "optim_trajectory_truncate": (_traj_p,),
    "optim_trajectory_step_f32": (_traj_p, _P(_c.c_void_p), _P(_c.c_int64),
                                  _c.c_size_t, _P(_Input), _c.c_size_t),
    "optim_trajectory_step_f64": (_traj_p, _P(_c.c_void_p), _P(_c.c_int64),
                                  _c.c_size_t, _P(_Input), _c.c_size_t),
    "optim_trajectory_tape_length": (_traj_p, _P(_c.c_size_t)),
    "optim_trajectory_step_count": (_traj_p, _P(_c.c_int64)),
    "optim_trajectory_backward_f32": (_traj_p, _P(_c.c_void_p), _c.c_size_t),
    "optim_trajectory_backward_f64": (_traj_p, _P(_c.c_void_p), _c.c_size_t),
    "optim_trajectory_weights_gradient": (_traj_p, _c.c_char_p,
                                          _P(_P(_c.c_double)),
                                          _P(_c.c_int64)),
    "optim_trajectory_hyper_gradient": (_traj_p, _c.c_char_p,
                                        _P(_c.c_double)),
    "optim_trajectory_param_adjoint": (_traj_p, _c.c_size_t, _P(_c.c_void_p),
                                       _P(_c.c_int64)),
    "optim_trajectory_state_adjoint": (_traj_p, _c.c_size_t, _c.c_char_p,
                                       _P(_c.c_void_p), _P(_c.c_int64)),
    "optim_compile_source": (_c.c_char_p, _c.c_char_p, _c.c_char_p, _c.c_int,
                             _P(_rule_p)),
    "optim_compile_layer_file": (_c.c_char_p, _c.c_char_p, _c.c_uint,
                                 _P(_layer_p)),
    "optim_compile_layer_source": (_c.c_char_p, _c.c_char_p, _c.c_char_p,
                                   _c.c_uint, _P(_layer_p)),
    "optim_layer_release": (_layer_p,),
    "optim_layer_name": (_layer_p, _P(_c.c_char_p)),
    "optim_layer_dtype": (_layer_p, _P(_c.c_int)),
    "optim_layer_num_tensors": (_layer_p, _c.c_int, _P(_c.c_size_t)),
    "optim_layer_tensor": (_layer_p, _c.c_int, _c.c_size_t,
                           _P(_LayerTensorInfo)),
    "optim_layer_sizes": (_layer_p, _P(_c.c_int64), _P(_c.c_int64),
                          _P(_c.c_int64)),
    "optim_layer_set_threads": (_layer_p, _c.c_uint),
    "optim_layer_forward": (_layer_p, _c.c_int64, _P(_c.c_void_p),
                            _c.c_size_t, _P(_c.c_void_p), _c.c_size_t,
                            _P(_c.c_void_p), _c.c_size_t, _P(_c.c_int32)),
    "optim_layer_backward": (_layer_p, _P(_c.c_void_p), _c.c_size_t,
                             _P(_c.c_void_p), _c.c_size_t, _P(_c.c_void_p),
                             _c.c_size_t),
}

_lib = None


def _default_library():
    path = os.environ.get("OPTIM_LIBRARY")
    if path:
        return path
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = sorted(glob.glob(os.path.join(root, "build*", "lib",
                                          "liboptim.so")))
    if os.path.join(root, "build", "lib", "liboptim.so") in found:
        return os.path.join(root, "build", "lib", "liboptim.so")
    return found[0] if found else "liboptim.so"


def load(path=None):
    """Loads liboptim.so from `path` (default: see the module's doc) and
    returns the ctypes library. Called by the first use if not before."""
    global _lib
    lib = _c.CDLL(path or _default_library())
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = _status
    lib.optim_last_error.argtypes = ()
    lib.optim_last_error.restype = _c.c_char_p
    lib.optim_status_name.argtypes = (_c.c_int,)
    lib.optim_status_name.restype = _c.c_char_p
    _lib = lib
    return lib


def _library():
    return _lib if _lib is not None else load()


def _call(name, *args):
    lib = _library()
    status = getattr(lib, name)(*args)
    if status != 0:
        raise OptimError(status, lib.optim_status_name(status).decode(),
                         lib.optim_last_error().decode(errors="replace"))


def _bytes(s, what):
    """None, or `s` (str, bytes or os.PathLike) as bytes for the const char *
    `what`. A NUL character would end the C string there, so that another
    hyperparameter, rule or file than the one named would be used silently
    ("lr\\0x" sets lr, "a\\0b.ckpt" writes a): refused, as open() does."""
    if s is None:
        return None
    try:
        b = os.fsencode(s)
    except TypeError:
        raise TypeError("%s must be a str, bytes or os.PathLike, not %s"
                        % (what, type(s).__name__)) from None
    if b"\0" in b:
        raise ValueError("%s contains a NUL character (at byte %d), which "
                         "would end it there in C%s" % (
                             what, b.index(b"\0"),
                             ": %r" % (s,) if len(b) <= 80 else ""))
    return b


def _real(value, what):
    """`value` as a float for a C double argument `what`: a number (numpy
    numbers too), not a string that float() would parse ("0.01") nor a
    bool."""
    if isinstance(value, (bool, str, bytes)) or (
            np is not None and isinstance(value, np.bool_)):
        raise TypeError("%s must be a number, got %r" % (what, value))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number, got %r" % (what, value)) from None


def _uint(value, what, limit, limit_text):
    """`value` as an int in [0, limit) for a C unsigned argument `what`:
    ctypes would wrap a negative or huge one into another number silently
    (2**64 as 0, -1 as 2**64 - 1) and take a bool as 0 or 1, and refuses a
    float with an ArgumentError that does not say which argument. Numpy
    integers are ints (operator.index)."""
    if isinstance(value, bool) or (np is not None
                                   and isinstance(value, np.bool_)):
        raise TypeError("%s must be an int, got %r" % (what, value))
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an int, got %r" % (what, value)) from None
    if not 0 <= value < limit:
        raise ValueError("%s must be in [0, %s), got %d"
                         % (what, limit_text, value))
    return value


class Rule:
    """A compiled rule (immutable). `name`, `dtype` ("f32" or "f64"),
    `hypers` ({name: (default, is_const)}), `states` ({name: (size,
    init)}), `weights` ({name: shape}, empty unless it is a learned rule)
    and `reductions` ([(kind, is_global)], one per tensor_*/global_* call,
    in body order; empty for most rules) with `reduction_levels` (one int
    per reduction: 0, or 1 + the largest level of the reductions whose
    results what it reduces depends on; each level is one more pass over
    memory) describe it, and `inputs` (the
    names of its per-coordinate inputs, `input h`, in declaration order;
    empty for most rules), which Optimizer.step takes by name, and `random`
    (the kinds of its random draw sites, "uniform" for `rand()` and
    "normal" for `randn()`, in body order; empty for most rules).
    `state_axes` (one per state, in declaration order) and `reduction_axes`
    (one per reduction) are "none", "row" (`row state r`, row_mean(...):
    one value per row of a parameter) or "col" (one per column), or
    "matrix" for a newton_schulz reduction (kind "newton_schulz"; rows()
    and cols() are the kinds "rows" and "cols")."""

    def __init__(self, handle):
        self._handle = _c.c_void_p(handle)
        name = _c.c_char_p()
        _call("optim_rule_name", self._handle, _c.byref(name))
        self.name = name.value.decode()
        dtype = _c.c_int()
        _call("optim_rule_dtype", self._handle, _c.byref(dtype))
        self.dtype = "f64" if dtype.value == 1 else "f32"
        self.hypers = {}
        count = _c.c_size_t()
        _call("optim_rule_num_hypers", self._handle, _c.byref(count))
        for i in range(count.value):
            info = _HyperInfo()
            _call("optim_rule_hyper", self._handle, i, _c.byref(info))
            self.hypers[info.name.decode()] = (info.default_value,
                                               bool(info.is_const))
        self.states = {}
        self.state_axes = []
        _call("optim_rule_num_states", self._handle, _c.byref(count))
        for i in range(count.value):
            info = _StateInfo()
            _call("optim_rule_state", self._handle, i, _c.byref(info))
            self.states[info.name.decode()] = (info.size, info.init)
            axis = _c.c_char_p()
            _call("optim_rule_state_axis", self._handle, i, _c.byref(axis))
            self.state_axes.append(axis.value.decode())
        self.weights = {}
        _call("optim_rule_num_weights", self._handle, _c.byref(count))
        for i in range(count.value):
            info = _WeightsInfo()
            _call("optim_rule_weights", self._handle, i, _c.byref(info))
            self.weights[info.name.decode()] = tuple(
                info.shape[d] for d in range(info.rank))
        self.reductions = []
        self.reduction_levels = []
        self.reduction_axes = []
        _call("optim_rule_num_reductions", self._handle, _c.byref(count))
        for i in range(count.value):
            info = _ReductionInfo()
            _call("optim_rule_reduction", self._handle, i, _c.byref(info))
            self.reductions.append((info.kind.decode(), bool(info.is_global)))
            level = _c.c_uint()
            _call("optim_rule_reduction_level", self._handle, i,
                  _c.byref(level))
            self.reduction_levels.append(level.value)
            axis = _c.c_char_p()
            _call("optim_rule_reduction_axis", self._handle, i,
                  _c.byref(axis))
            self.reduction_axes.append(axis.value.decode())
        self.inputs = []
        _call("optim_rule_num_inputs", self._handle, _c.byref(count))
        for i in range(count.value):
            name = _c.c_char_p()
            _call("optim_rule_input", self._handle, i, _c.byref(name))
            self.inputs.append(name.value.decode())
        self.random = []
        _call("optim_rule_num_random", self._handle, _c.byref(count))
        for i in range(count.value):
            kind = _c.c_char_p()
            _call("optim_rule_random", self._handle, i, _c.byref(kind))
            self.random.append(kind.value.decode())

    def __del__(self):
        if getattr(self, "_handle", None) and _lib is not None:
            _lib.optim_rule_release(self._handle)
            self._handle = None

    def __repr__(self):
        return "<optim_mlir.Rule %s %s>" % (self.name, self.dtype)


def _compile_flags(f64, reverse):
    return (1 if f64 else 0) | (2 if reverse else 0)


def compile_file(path, rule=None, f64=False, reverse=False):
    """Compiles rule `rule` of the .optim file at `path` (None: its only
    rule), for float64 if `f64`, else float32; with its reverse mode if
    `reverse` (needed by Trajectory; not cached)."""
    out = _rule_p()
    _call("optim_compile_file_flags", _bytes(path, "path"),
          _bytes(rule, "rule"), _compile_flags(f64, reverse), _c.byref(out))
    return Rule(out.value)


def compile_source(source, rule=None, f64=False, name=None, reverse=False):
    """Compiles rule `rule` of the program text `source`; `name` names it in
    diagnostics."""
    out = _rule_p()
    _call("optim_compile_source_flags", _bytes(source, "source"),
          _bytes(name, "name"), _bytes(rule, "rule"),
          _compile_flags(f64, reverse), _c.byref(out))
    return Rule(out.value)


def _inputs_needed(rule):
    return TypeError(
        "rule %s takes the per-coordinate input%s %s with every step:"
        " call step(grads, inputs={%s})" % (
            rule.name, "" if len(rule.inputs) == 1 else "s",
            ", ".join(repr(n) for n in rule.inputs),
            ", ".join("%r: [one array per parameter]" % n
                      for n in rule.inputs)))


def _rule_arg(rule):
    if not isinstance(rule, Rule):
        raise TypeError("rule must be an optim_mlir.Rule (compile_file(...)), "
                        "not %s" % type(rule).__name__)
    return rule


class Optimizer:
    """An optimizer of `rule` over `params`, numpy arrays of the rule's dtype
    updated in place. threads=0: one per hardware thread. skip_non_finite:
    a step whose gradients or inputs hold a NaN or an infinity is skipped
    (step() returns False) instead of writing them into the parameters.
    seed: the key of the rule's random numbers (rule.random), an int in
    [0, 2**64); the draws depend on it, the coordinate, the step and the
    draw site only (not on threads). save() records it, load() restores
    it; `seed` reads it. Each array's shape goes with it: a rule with row
    or column states or reductions (rule.state_axes, rule.reduction_axes)
    sees an array as matrices of its last two dimensions (a 1-D array is
    one row), as shaped when the Optimizer was created; other rules ignore
    shapes. `threads` and `seed` are ints (numpy integers too; not bools or
    floats: TypeError) in their C types' ranges (else ValueError)."""

    def __init__(self, rule, params, threads=None, skip_non_finite=False,
                 seed=0):
        if np is None:
            raise ImportError("optim_mlir.Optimizer needs numpy")
        self.rule = _rule_arg(rule)
        self._dtype = np.dtype(np.float64 if rule.dtype == "f64"
                               else np.float32)
        self._handle = None
        self.params = [self._check(p, "parameter %d" % i, writeable=True)
                       for i, p in enumerate(params)]
        pointers, sizes = self._arrays(self.params)
        options = _Options()
        _call("optim_options_init", _c.byref(options))
        if threads is not None:
            options.threads = _uint(threads, "threads", 2**32, "2**32")
        if not isinstance(skip_non_finite, bool) and not (
                np is not None and isinstance(skip_non_finite, np.bool_)):
            raise TypeError("skip_non_finite must be a bool, got %r"
                            % (skip_non_finite,))
        options.skip_non_finite = int(skip_non_finite)
        options.seed = _uint(seed, "seed", 2**64, "2**64")
        # Every array's shape (a 0-d array has none: one row of one), as
        # recorded by the params setter.
        dims = [(_c.c_int64 * max(len(s), 1))(*s) for s in self._shapes]
        shapes = (_Shape * max(len(self.params), 1))()
        for i, s in enumerate(self._shapes):
            shapes[i].dims = _c.cast(dims[i], _c.POINTER(_c.c_int64))
            shapes[i].rank = len(s)
        group = _Group(_c.cast(pointers, _c.POINTER(_c.c_void_p)),
                       _c.cast(sizes, _c.POINTER(_c.c_int64)),
                       len(self.params), None, 0)
        out = _opt_p()
        _call("optim_optimizer_create_shaped", rule._handle,
              1 if rule.dtype == "f64" else 0, _c.byref(group), 1, shapes,
              _c.byref(options), _c.byref(out))
        self._handle = out

    def __del__(self):
        if getattr(self, "_handle", None) and _lib is not None:
            _lib.optim_optimizer_release(self._handle)
            self._handle = None

    # `rule` and `params` are set once, by __init__ (or by code that wraps
    # an optimizer it created through the C API, as test/Oracle does: it
    # sets them on an object.__new__(Optimizer) before any call), and read
    # only after that: the C optimizer holds the parameters' addresses, so
    # an array dropped from them (opt.params[0] = x, .clear(), opt.params =
    # []) would be freed while the next step() writes it.

    @property
    def rule(self):
        """The Rule (the C optimizer shares it; kept for reading only)."""
        return self._rule

    @rule.setter
    def rule(self, rule):
        if "_rule" in self.__dict__:
            raise AttributeError("Optimizer.rule cannot be replaced: the "
                                 "optimizer runs the rule it was created "
                                 "with")
        self._rule = rule

    @property
    def params(self):
        """The parameter arrays, a tuple: the optimizer updates them in
        place and keeps them alive and where they are, so that none can be
        replaced, dropped or resized (ndarray.resize would move it). Their
        shapes are recorded too: state() and a rule with row or column
        states see the shapes they had (changing an array's shape attribute
        later changes neither)."""
        return self._params

    @params.setter
    def params(self, arrays):
        if "_params" in self.__dict__:
            raise AttributeError("Optimizer.params cannot be replaced: the "
                                 "C optimizer writes the arrays it was "
                                 "created with")
        arrays = tuple(arrays)
        self._params = arrays
        self._shapes = tuple(tuple(a.shape) for a in arrays)
        # numpy refuses to resize an array that has a weak reference, even
        # with refcheck=False; its reference count alone would let
        # opt.params[0].resize(n) through once the caller dropped its own.
        self._pins = tuple(weakref.ref(a) for a in arrays)

    def _check(self, a, what, writeable=False):
        if not isinstance(a, np.ndarray):
            raise TypeError("%s is a %s, not a numpy array"
                            % (what, type(a).__name__))
        if a.dtype != self._dtype:
            raise TypeError("%s has dtype %s; rule %s needs %s"
                            % (what, a.dtype, self.rule.name, self._dtype))
        if not a.flags.c_contiguous:
            raise ValueError("%s is not C-contiguous" % what)
        if writeable and not a.flags.writeable:
            raise ValueError("%s is read-only" % what)
        return a

    @staticmethod
    def _arrays(arrays):
        # Empty arrays go as NULL: the C API allows it, and numpy may give
        # them a shared or dangling address.
        pointers = (_c.c_void_p * max(len(arrays), 1))(
            *[a.ctypes.data if a.size else None for a in arrays])
        sizes = (_c.c_int64 * max(len(arrays), 1))(*[a.size for a in arrays])
        return pointers, sizes

    def set(self, name, value):
        """Sets hyperparameter `name` in every group."""
        _call("optim_optimizer_set", self._handle, _bytes(name, "name"),
              _real(value, "value"))

    def get(self, name, group=0):
        """Hyperparameter `name` of group `group`: an int (numpy integers
        too) >= 0; the C API reports a group that does not exist."""
        group = _uint(group, "group", 2**64, "2**64")
        out = _c.c_double()
        _call("optim_optimizer_get", self._handle, group,
              _bytes(name, "name"), _c.byref(out))
        return out.value

    def step(self, grads, inputs=None):
        """One step with one gradient per parameter (arrays of the rule's
        dtype and the parameters' sizes). A rule with per-coordinate inputs
        (rule.inputs) takes them as `inputs`, a dict {name: [one array per
        parameter, as the gradients]} naming each exactly once. Returns False
        if the step was skipped for a non-finite gradient or input (option
        skip_non_finite)."""
        grads = [self._check(g, "gradient %d" % i)
                 for i, g in enumerate(grads)]
        pointers, sizes = self._arrays(grads)
        stepped = _c.c_int()
        if inputs is None and not self.rule.inputs:
            _call("optim_optimizer_step_" + self.rule.dtype, self._handle,
                  pointers, sizes, len(grads), _c.byref(stepped))
            return bool(stepped.value)
        if inputs is None:
            raise _inputs_needed(self.rule)
        table, keep = self._input_table(inputs, len(grads))
        _call("optim_optimizer_step_inputs_" + self.rule.dtype, self._handle,
              pointers, sizes, len(grads), table, len(inputs),
              _c.byref(stepped))
        return bool(stepped.value)

    def _input_table(self, inputs, count):
        """The optim_input_* table of `inputs` ({name: [arrays]}, `count`
        arrays each), and what must stay alive while the C call reads it."""
        if not isinstance(inputs, dict):
            raise TypeError("inputs must be a dict {name: [arrays]}, not a %s"
                            % type(inputs).__name__)
        # The C API checks names, counts and sizes; the arrays' sizes go
        # with them, so that a wrong one is reported, not read past.
        keep = []
        table = (_Input * max(len(inputs), 1))()
        for k, (name, arrays) in enumerate(inputs.items()):
            if not isinstance(name, str):
                raise TypeError("input names are strings, got %r" % (name,))
            if isinstance(arrays, np.ndarray) or not hasattr(arrays,
                                                             "__len__"):
                raise TypeError("input '%s' must be a list of arrays, one per "
                                "parameter" % name)
            arrays = [self._check(a, "input '%s' of parameter %d" % (name, i))
                      for i, a in enumerate(arrays)]
            if len(arrays) != count:
                raise ValueError(
                    "input '%s' has %d arrays; expected %d, one per "
                    "parameter" % (name, len(arrays), count))
            ptrs, lens = self._arrays(arrays)
            keep.append((arrays, ptrs, lens))
            table[k].name = _bytes(name, "input name")
            table[k].data = _c.cast(ptrs, _c.POINTER(_c.c_void_p))
            table[k].sizes = _c.cast(lens, _c.POINTER(_c.c_int64))
        return table, keep

    @property
    def step_count(self):
        out = _c.c_int64()
        _call("optim_optimizer_step_count", self._handle, _c.byref(out))
        return out.value

    @property
    def seed(self):
        """The seed of the rule's random numbers: the one given, or the one
        the last load() restored."""
        out = _c.c_uint64()
        _call("optim_optimizer_seed", self._handle, _c.byref(out))
        return out.value

    def state(self, param, name):
        """A copy of state `name` of parameter `param`: the parameter's shape,
        with a leading axis for a vector state (`state x[N]`); for a row
        state the shape without its last dimension (one value per row; (1,)
        for a 1-D or 0-d parameter), for a column state without the one
        before it (one value per column). The shape is the one the
        parameter had when the Optimizer was created. `param` is an int
        (numpy integers too) >= 0; the C API reports one that does not
        exist."""
        param = _uint(param, "param", 2**64, "2**64")
        cname = _bytes(name, "name")
        data = _c.c_void_p()
        count = _c.c_int64()
        _call("optim_optimizer_state", self._handle, param, cname,
              _c.byref(data), _c.byref(count))
        shape = _state_shape(self.rule, cname.decode(), self._shapes[param])
        return _copy_out(data.value, count.value, self._dtype, shape)

    def set_weights(self, name, array):
        """Sets the learned weights `name` (copied) from a numpy array of the
        rule's dtype holding rule.weights[name]'s elements, row-major (its
        own shape does not matter, its size does). Needed for every weights
        tensor before the first step of a learned rule."""
        a = self._check(array, "weights '%s'" % name)
        _call("optim_optimizer_set_weights_" + self.rule.dtype, self._handle,
              _bytes(name, "name"), a.ctypes.data if a.size else None,
              a.size)

    def load_weights(self, path):
        """Sets every weights tensor from a safetensors file (one tensor per
        name, of the rule's dtype and shape); changes nothing on error."""
        _call("optim_optimizer_load_weights", self._handle,
              _bytes(path, "path"))

    def save(self, path):
        """Saves the optimizer's state to `path` (str, bytes or
        os.PathLike)."""
        _call("optim_optimizer_save", self._handle, _bytes(path, "path"))

    def load(self, path):
        """Restores a state saved by save() from `path`."""
        _call("optim_optimizer_load", self._handle, _bytes(path, "path"))


def _state_shape(rule, name, shape):
    """The shape of state `name` (the rule's key) of a parameter of `shape`:
    the parameter's, with a leading axis for a vector state; for a row state
    without its last dimension ((1,) for a 1-D or 0-d parameter), for a
    column state without the one before it."""
    size = rule.states[name][0]
    axis = rule.state_axes[list(rule.states).index(name)]
    if axis == "row":
        return shape[:-1] if len(shape) >= 2 else (1,)
    if axis == "col":
        return shape[:-2] + shape[-1:] if shape else (1,)
    return (size,) + shape if size != 1 else shape


def _copy_out(data, count, dtype, shape):
    """A numpy copy of `count` elements of `dtype` at address `data`."""
    if count == 0:
        return np.zeros(shape, dtype)
    ctype = _c.c_double if dtype == np.float64 else _c.c_float
    buf = (ctype * count).from_address(data)
    return np.ctypeslib.as_array(buf).copy().reshape(shape)


class Trajectory:
    """Unrolled steps of `rule` (compiled with reverse=True) and their
    reverse mode: meta-training of learned rules and hypergradients from
    Python (docs/meta-training.md, "From C and Python"). The trajectory owns
    its parameters θ, one per entry of `shapes` (an int size or a shape
    tuple), of the rule's dtype, starting at 0: set them with
    set_param(). step(grads) records a step; backward(dl_dparams) returns
    {"weights": {name: dL/dweights}, "hypers": {name: dL/dhyper}} for a
    loss L whose explicit derivatives dL/dθ after each recorded step the
    caller gives (∇f(θ_t) for L = Σ f(θ_t)); the gradients fed to the steps
    are constants of the reverse mode (second derivatives of f dropped, as
    in Andrychowicz et al., 2016). truncate() starts the next truncation
    (θ and the state kept), reset_state() a new optimizee run. param(),
    state() and the adjoints are copies. threads and chunk_size as for
    Optimizer (the results' rounding depends on chunk_size, never on
    threads); seed keys the rule's random numbers."""

    _check = Optimizer._check
    _arrays = staticmethod(Optimizer._arrays)
    _input_table = Optimizer._input_table

    def __init__(self, rule, shapes, threads=None, chunk_size=None, seed=0):
        if np is None:
            raise ImportError("optim_mlir.Trajectory needs numpy")
        self.rule = _rule_arg(rule)
        self._dtype = np.dtype(np.float64 if rule.dtype == "f64"
                               else np.float32)
        self._handle = None
        self._shapes = []
        for i, s in enumerate(shapes):
            if isinstance(s, (bool, np.bool_)):
                raise TypeError("shape %d must be an int or a tuple of ints, "
                                "got %r" % (i, s))
            if np.ndim(s) == 0:
                s = (_uint(s, "size of parameter %d" % i, 2**63, "2**63"),)
            else:
                s = tuple(_uint(d, "a dimension of parameter %d" % i, 2**63,
                                "2**63") for d in s)
            self._shapes.append(s)
        self._sizes = [int(np.prod(s, dtype=np.int64)) if s else 1
                       for s in self._shapes]
        options = _Options()
        _call("optim_options_init", _c.byref(options))
        if threads is not None:
            options.threads = _uint(threads, "threads", 2**32, "2**32")
        if chunk_size is not None:
            options.chunk_size = _uint(chunk_size, "chunk_size", 2**63,
                                       "2**63")
        options.seed = _uint(seed, "seed", 2**64, "2**64")
        n = len(self._shapes)
        sizes = (_c.c_int64 * max(n, 1))(*self._sizes)
        dims = [(_c.c_int64 * max(len(s), 1))(*s) for s in self._shapes]
        table = (_Shape * max(n, 1))()
        for i, s in enumerate(self._shapes):
            table[i].dims = _c.cast(dims[i], _c.POINTER(_c.c_int64))
            table[i].rank = len(s)
        out = _traj_p()
        _call("optim_trajectory_create", rule._handle, sizes, n, table,
              _c.byref(options), _c.byref(out))
        self._handle = out

    def __del__(self):
        if getattr(self, "_handle", None) and _lib is not None:
            _lib.optim_trajectory_release(self._handle)
            self._handle = None

    def _pointer(self, fn, i, *name):
        """The C data pointer and element count of θ_i or a state of it;
        the C API reports a parameter or a state that does not exist."""
        i = _uint(i, "param", 2**64, "2**64")
        data = _c.c_void_p()
        count = _c.c_int64()
        _call(fn, self._handle, i, *name, _c.byref(data), _c.byref(count))
        return i, data.value, count.value

    def _write(self, what, data, count, values):
        """Copies `values` (numbers of any shape with `count` elements) to
        the C buffer at `data`, only while no step is recorded: the steps
        on the tape ran from the values they recorded, and backward would
        differentiate a trajectory that never happened."""
        if self.tape_length:
            raise ValueError(
                "%s can be set only while no step is recorded (after "
                "creation, truncate() or reset_state()); the tape holds %d"
                % (what, self.tape_length))
        a = np.asarray(values)
        if a.dtype.kind not in "fiu":
            raise TypeError("%s must be real numbers, got %s"
                            % (what, a.dtype if a.dtype.kind != "O"
                               else type(values).__name__))
        a = np.ascontiguousarray(a, dtype=self._dtype).reshape(-1)
        if a.size != count:
            raise ValueError("%s has %d elements, got %d"
                             % (what, count, a.size))
        if a.size:
            _c.memmove(data, a.ctypes.data, a.nbytes)

    def param(self, i):
        """A copy of θ_i now, in its shape."""
        i, data, count = self._pointer("optim_trajectory_param", i)
        return _copy_out(data, count, self._dtype, self._shapes[i])

    def set_param(self, i, values):
        """Sets θ_i (copied from real numbers of its size, any shape, cast
        to the rule's dtype); only while no step is recorded."""
        i, data, count = self._pointer("optim_trajectory_param", i)
        self._write("parameter %d" % i, data, count, values)

    def state(self, i, name):
        """A copy of state `name` of parameter i, shaped as
        Optimizer.state's."""
        cname = _bytes(name, "name")
        i, data, count = self._pointer("optim_trajectory_state", i, cname)
        return _copy_out(data, count, self._dtype,
                         _state_shape(self.rule, cname.decode(),
                                      self._shapes[i]))

    def set_state(self, i, name, values):
        """Sets state `name` of parameter i (copied, its number of
        elements); only while no step is recorded. reset_state() sets every
        state back to its initial value."""
        cname = _bytes(name, "name")
        i, data, count = self._pointer("optim_trajectory_state", i, cname)
        self._write("state '%s' of parameter %d" % (cname.decode(), i), data,
                    count, values)

    def set(self, name, value):
        """Hyperparameter `name` for the following steps."""
        _call("optim_trajectory_set", self._handle, _bytes(name, "name"),
              _real(value, "value"))

    def get(self, name):
        out = _c.c_double()
        _call("optim_trajectory_get", self._handle, _bytes(name, "name"),
              _c.byref(out))
        return out.value

    def set_weights(self, name, array):
        """The learned weights `name` (copied), as Optimizer.set_weights;
        only while no step is recorded."""
        a = self._check(array, "weights '%s'" % name)
        _call("optim_trajectory_set_weights_" + self.rule.dtype, self._handle,
              _bytes(name, "name"), a.ctypes.data if a.size else None,
              a.size)

    def load_weights(self, path):
        _call("optim_trajectory_load_weights", self._handle,
              _bytes(path, "path"))

    def set_seed(self, seed):
        """The seed of the rule's random numbers; only while no step is
        recorded."""
        _call("optim_trajectory_set_seed", self._handle,
              _uint(seed, "seed", 2**64, "2**64"))

    def reset_state(self):
        _call("optim_trajectory_reset_state", self._handle)

    def truncate(self):
        _call("optim_trajectory_truncate", self._handle)

    @property
    def tape_length(self):
        out = _c.c_size_t()
        _call("optim_trajectory_tape_length", self._handle, _c.byref(out))
        return out.value

    @property
    def step_count(self):
        out = _c.c_int64()
        _call("optim_trajectory_step_count", self._handle, _c.byref(out))
        return out.value

    def step(self, grads, inputs=None):
        """Records one step: one gradient per parameter (arrays of the
        rule's dtype and the parameters' sizes), and the rule's inputs as
        for Optimizer.step."""
        if inputs is None and self.rule.inputs:
            raise _inputs_needed(self.rule)
        grads = [self._check(g, "gradient %d" % i)
                 for i, g in enumerate(grads)]
        pointers, sizes = self._arrays(grads)
        table, keep = self._input_table(inputs or {}, len(grads))
        _call("optim_trajectory_step_" + self.rule.dtype, self._handle,
              pointers, sizes, len(grads), table, len(inputs or {}))

    def backward(self, dl_dparams):
        """The reverse mode over the recorded steps. `dl_dparams[k][i]`:
        dL/dθ_i after recorded step k (an array of the rule's dtype, or
        None), tape_length lists of one entry per parameter. Returns
        {"weights": {name: array of the weights' shape, float64}, "hypers":
        {name: float}}; param_adjoint() and state_adjoint() then give dL/dθ
        and dL/dstate before the first recorded step."""
        n = len(self._shapes)
        keep = []
        flat = []
        for k, row in enumerate(dl_dparams):
            if isinstance(row, np.ndarray) or not hasattr(row, "__len__"):
                raise TypeError("dl_dparams[%d] must be a list with one entry "
                                "per parameter" % k)
            if len(row) != n:
                raise ValueError("dl_dparams[%d] has %d entries; expected %d, "
                                 "one per parameter" % (k, len(row), n))
            for i, a in enumerate(row):
                if a is None:
                    flat.append(None)
                    continue
                a = self._check(a, "dl_dparams[%d][%d]" % (k, i))
                if a.size != self._sizes[i]:
                    raise ValueError("dl_dparams[%d][%d] has %d elements, "
                                     "parameter %d has %d"
                                     % (k, i, a.size, i, self._sizes[i]))
                keep.append(a)
                flat.append(a.ctypes.data if a.size else None)
        pointers = (_c.c_void_p * max(len(flat), 1))(*flat)
        _call("optim_trajectory_backward_" + self.rule.dtype, self._handle,
              pointers, len(flat))
        result = {"weights": {}, "hypers": {}}
        for name, shape in self.rule.weights.items():
            data = _c.POINTER(_c.c_double)()
            count = _c.c_int64()
            _call("optim_trajectory_weights_gradient", self._handle,
                  _bytes(name, "name"), _c.byref(data), _c.byref(count))
            result["weights"][name] = np.ctypeslib.as_array(
                data, (count.value,)).copy().reshape(shape)
        for name in self.rule.hypers:
            out = _c.c_double()
            _call("optim_trajectory_hyper_gradient", self._handle,
                  _bytes(name, "name"), _c.byref(out))
            result["hypers"][name] = out.value
        return result

    def param_adjoint(self, i):
        """A copy of dL/dθ_i before the first recorded step (after
        backward)."""
        i, data, count = self._pointer("optim_trajectory_param_adjoint", i)
        return _copy_out(data, count, self._dtype, self._shapes[i])

    def state_adjoint(self, i, name):
        """A copy of dL/d(state `name` of parameter i) before the first
        recorded step, shaped as state()."""
        cname = _bytes(name, "name")
        i, data, count = self._pointer("optim_trajectory_state_adjoint", i,
                                       cname)
        return _copy_out(data, count, self._dtype,
                         _state_shape(self.rule, cname.decode(),
                                      self._shapes[i]))


_QP_STATUSES = ("solved", "iteration limit", "primal infeasible",
                "dual infeasible", "numerical error")


def _flag(value, what):
    if not isinstance(value, (bool, np.bool_) if np is not None else bool):
        raise TypeError("%s must be True or False, got %r" % (what, value))
    return bool(value)


def compile_layer_file(path, layer=None, f64=False):
    """Compiles QP layer `layer` of the .optim file at `path` (None: its
    only layer) for the CPU, float64 if `f64`, else float32."""
    f64 = _flag(f64, "f64")
    out = _layer_p()
    _call("optim_compile_layer_file", _bytes(path, "path"),
          _bytes(layer, "layer"), 1 if f64 else 0, _c.byref(out))
    return Layer(out.value)


def compile_layer_source(source, layer=None, f64=False, name=None):
    """Compiles QP layer `layer` of the program text `source`; `name` names
    it in diagnostics."""
    f64 = _flag(f64, "f64")
    out = _layer_p()
    _call("optim_compile_layer_source", _bytes(source, "source"),
          _bytes(name, "name"), _bytes(layer, "layer"), 1 if f64 else 0,
          _c.byref(out))
    return Layer(out.value)


def _void_array(ptrs):
    return (_c.c_void_p * max(1, len(ptrs)))(*ptrs)


class Layer:
    """A compiled QP layer (compile_layer_file): `name`, `dtype` ("f32" or
    "f64"), `inputs`, `weights` and `outputs` ({name: shape}, in declaration
    order; inputs and outputs per batch element), `output_kinds` ({name:
    "z", "nu" or "lam"}) and `sizes` (n, m, p of its QP).

        layer = optim_mlir.compile_layer_file("examples/sudoku.optim")
        out = layer.forward({"puzzle": P}, {"A": A, "log_z0": l})  # P: [B, 64]
        dins, dws = layer.backward({"z": dz})   # dws["A"] summed over B

    forward() takes arrays of shape [B, *shape] for each input and of the
    weights' shapes, copied to C-contiguous arrays of the layer's dtype
    (and kept: backward() reads them again), and returns {output: array
    [B, *shape]}; with statuses=True it returns (outputs, [status per
    element]) instead of raising OptimError for an unsolved problem.
    backward() takes {output: gradient [B, *shape]} (a missing output: zero)
    and returns ({input: gradient}, {weights: gradient summed over the
    batch}) through the last forward(), whose problems must all be solved.
    A forward() that raises changes nothing: backward() still refers to the
    last one that returned.
    """

    def __init__(self, handle):
        self._handle = handle
        name = _c.c_char_p()
        _call("optim_layer_name", handle, _c.byref(name))
        self.name = name.value.decode()
        dtype = _c.c_int()
        _call("optim_layer_dtype", handle, _c.byref(dtype))
        self.dtype = "f64" if dtype.value == 1 else "f32"
        self._np_dtype = (np.float64 if self.dtype == "f64" else np.float32
                          ) if np is not None else None
        kinds = {}
        lists = []
        for kind in range(3):
            count = _c.c_size_t()
            _call("optim_layer_num_tensors", handle, kind, _c.byref(count))
            entries = {}
            for i in range(count.value):
                info = _LayerTensorInfo()
                _call("optim_layer_tensor", handle, kind, i, _c.byref(info))
                key = info.name.decode()
                entries[key] = tuple(info.shape[d] for d in range(info.rank))
                if kind == 2:
                    kinds[key] = ("z", "nu", "lam")[info.output_kind]
            lists.append(entries)
        self.inputs, self.weights, self.outputs = lists
        self.output_kinds = kinds
        n, m, p = _c.c_int64(), _c.c_int64(), _c.c_int64()
        _call("optim_layer_sizes", handle, _c.byref(n), _c.byref(m),
              _c.byref(p))
        self.sizes = (n.value, m.value, p.value)
        self._kept = None
        self._batch = 0

    def __del__(self):
        if getattr(self, "_handle", None) and _lib is not None:
            _lib.optim_layer_release(self._handle)
            self._handle = None

    def __repr__(self):
        return "<optim_mlir.Layer %s (%s): inputs %s, weights %s, outputs " \
            "%s>" % (self.name, self.dtype, self.inputs, self.weights,
                     self.outputs)

    def set_threads(self, threads):
        """Solver threads over the batch (0: one per hardware thread); the
        results do not depend on it. Drops the last forward()."""
        _call("optim_layer_set_threads", self._handle,
              _uint(threads, "threads", 2**32, "2**32"))

    def _arrays(self, given, spec, what, batch):
        """The arrays of `given` (a dict by name, or a list in declaration
        order) for `spec` ({name: shape}), converted and checked."""
        if np is None:
            raise ImportError("optim_mlir.Layer needs numpy")
        names = list(spec)
        if given is None:
            given = {}
        if isinstance(given, dict):
            unknown = [k for k in given if k not in spec]
            if unknown:
                raise KeyError("layer %s has no %s %s (its %s: %s)" % (
                    self.name, what, ", ".join(repr(k) for k in unknown),
                    what, ", ".join(names) or "none"))
            values = [given.get(k) for k in names]
        else:
            values = list(given)
            if len(values) != len(names):
                raise ValueError("layer %s takes %d %s (%s), got %d" % (
                    self.name, len(names), what, ", ".join(names),
                    len(values)))
        out = []
        for name, value in zip(names, values):
            if value is None:
                out.append(None)
                continue
            # Real numbers only: numpy would drop an imaginary part (with a
            # warning) and turn None into NaN.
            raw = np.asarray(value)
            if raw.dtype.kind not in "biuf":
                raise TypeError("%s %r of layer %s must be an array of real "
                                "numbers, got dtype %s" % (
                                    what.rstrip("s"), name, self.name,
                                    raw.dtype))
            # A copy: backward() reads the inputs and weights again, and a
            # caller reusing its array in between must not change them.
            a = np.array(raw, dtype=self._np_dtype, order="C", copy=True)
            want = spec[name] if batch is None else (batch,) + spec[name]
            if a.shape != want:
                raise ValueError("%s %r of layer %s must have shape %s, got "
                                 "%s" % (what.rstrip("s"), name, self.name,
                                         want, a.shape))
            out.append(a)
        return out

    def forward(self, inputs, weights=None, statuses=False, batch=None):
        """Solves the batch; see the class. `batch` is needed only by a
        layer without inputs."""
        if np is None:
            raise ImportError("optim_mlir.Layer needs numpy")
        statuses = _flag(statuses, "statuses")
        if batch is None:
            # From the first input given, which must have the leading batch
            # dimension (without it, its first size would be taken for B).
            given = (inputs.items() if isinstance(inputs, dict)
                     else zip(self.inputs, list(inputs or [])))
            first = next(((k, v) for k, v in given if v is not None), None)
            if first is None:
                raise ValueError("layer %s has no inputs given: give batch=B"
                                 % self.name)
            key, value = first
            shape = np.shape(value)
            want = self.inputs.get(key)
            if want is not None and (len(shape) != len(want) + 1
                                     or tuple(shape[1:]) != want):
                raise ValueError(
                    "input %r of layer %s must have shape (B,) + %s with a "
                    "leading batch dimension B, got %s" % (
                        key, self.name, want, tuple(shape)))
            batch = int(shape[0]) if shape else 0
        if isinstance(batch, (bool, np.bool_)):
            raise TypeError("batch must be an int, got %r" % (batch,))
        batch = operator.index(batch)
        if batch < 1:
            raise ValueError("the batch size must be at least 1, got %d"
                             % batch)
        ins = self._arrays(inputs, self.inputs, "inputs", batch)
        ws = self._arrays(weights, self.weights, "weights", None)
        for name, a in zip(list(self.inputs) + list(self.weights), ins + ws):
            if a is None:
                raise ValueError("layer %s needs %r" % (self.name, name))
        outs = {k: np.zeros((batch,) + shape, self._np_dtype)
                for k, shape in self.outputs.items()}
        status = (_c.c_int32 * batch)() if statuses else None
        _call("optim_layer_forward", self._handle, batch,
              _void_array([a.ctypes.data for a in ins]), len(ins),
              _void_array([a.ctypes.data for a in ws]), len(ws),
              _void_array([a.ctypes.data for a in outs.values()]),
              len(outs), status)
        # The layer reads them again in backward(): kept alive here.
        self._kept = (ins, ws)
        self._batch = batch
        if statuses:
            return outs, [_QP_STATUSES[v] if 0 <= v < 5 else str(v)
                          for v in status]
        return outs

    def backward(self, doutputs):
        """Gradients through the last forward(); see the class."""
        if self._kept is None:
            raise OptimError(1, "OPTIM_ERROR_INVALID_ARGUMENT",
                             "layer '%s': backward() needs a forward() first"
                             % self.name)
        douts = self._arrays(doutputs, self.outputs, "outputs", self._batch)
        dins = {k: np.zeros((self._batch,) + shape, self._np_dtype)
                for k, shape in self.inputs.items()}
        dws = {k: np.zeros(shape, self._np_dtype)
               for k, shape in self.weights.items()}
        _call("optim_layer_backward", self._handle,
              _void_array([None if a is None else a.ctypes.data
                           for a in douts]), len(douts),
              _void_array([a.ctypes.data for a in dins.values()]), len(dins),
              _void_array([a.ctypes.data for a in dws.values()]), len(dws))
        return dins, dws
