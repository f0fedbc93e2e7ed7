//===- Passes.td - optim lowering passes -------------------*- tablegen -*-===//

#ifndef OPTIM_CONVERSION_PASSES
#define OPTIM_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def LowerRulesToKernels
    : Pass<"optim-lower-rules-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Turn each optim.rule into one fused CPU kernel over a chunk table";
  let description = [{
    Replaces every `optim.rule` by a `func.func @optim_rule_<name>` with the
    ABI of runtime/include/optim/KernelABI.h: it loops over a range of chunks
    and, in each, over the chunk's coordinates, reading p, g, the inputs and
    the state once and writing p and the state once.

    The body is split by a uniformity analysis: what depends only on the
    hyperparameters and the step (bias corrections, `1 - beta`, ...) is
    computed once per call, in scalar form, before any loop; what depends on
    p, g, an input or the state is computed per coordinate, `vector-width` coordinates
    at a time (SIMD lanes = coordinates), with a scalar loop for the
    remainder of each chunk.

    A per-coordinate vector (`state h[N]`, `log_sign`) is N values per
    coordinate, each `vector-width` coordinates wide; a vector state is
    stored component-major (component j at `state + j * stride`).
    Reductions (`sum`, `mean`, `dot`) add the components in order.

    Learned rules: `lstm_cell` and `linear` read their weights (uniform,
    row-major, from the kernel's `weights` argument) in loops over rows and
    inputs, with the per-coordinate inputs and outputs in stack buffers: an
    unrolled 2x20 LSTM is ~10k instructions that LLVM needs close to a
    minute to optimize. z = b + W [x; h] sums the bias first, then the
    inputs in order. Blocks of four vectors of coordinates give every weight
    broadcast four independent FMAs per row, and each block prefetches the
    next block's state lines. A block's four gate rows keep 16 vectors of
    `learned-vector-width` lanes in registers (0, the default, means
    `vector-width`): the compiler picks 16 on a host with AVX-512 (32
    registers of 16 floats: blocks of 64 coordinates), 4 with AVX2 (16
    registers of 8 floats: blocks of 16) or on AArch64, and 2 on older
    x86 (half of the register file for accumulators); blocks of 64 on AVX2
    spill the accumulators and ran 1.7x slower on a Zen 3 host
    (docs/benchmarks.md). Every width computes the same bits. The
    activations are arithmetic, never a call per lane: in f32 a rational
    tanh with two divisions per cell, in f64 e^x and tanh from expm1 of a
    reduced argument (a degree-13 polynomial, 2^n built from its bits),
    within 3 ulps of long double (libm's, called per lane, made f64 steps
    2.5x slower).

    Update rules prefetch each stream (p, g, every input read, every state) `prefetch-distance`
    bytes ahead in their vector loop, on chunks of at least four times that
    length: the loads in flight are bounded by the reorder buffer, and a rule
    with heavy arithmetic (Adam's divisions and square root) otherwise keeps
    too few cache lines in flight to run at the memory limit.

    A rule with tensor reductions (`optim.tensor_reduce`, KernelABI.h
    version 6) also gets `func.func @optim_reduce_<name>`, the first of its
    two passes over memory: per chunk, it computes the values that the
    reductions take (only those, by the same code as the rule kernel, on the
    same vector and scalar paths), extends them to f64 and accumulates them
    per lane (sum; sum of squares for `norm`; NaN-propagating max and min),
    adds the lanes in order, then the scalar tail, and overwrites
    `partials[c * R + r]` for reduction r of R (in body order) of chunk c.
    The rule kernel takes one more argument, `const double *reduced`: per
    chunk, it loads reduction r from `reduced[c * R + r]` and computes what
    depends only on reductions and uniform values once, before the
    coordinate loops. A reduction of a value that depends on
    `lstm_cell`/`linear` is refused.

    Nested reductions (KernelABI.h version 9): a reduction of a value
    computed from other reductions' results has level 1 + their largest
    level. The reduce kernel takes `const double *reduced` and
    `int64_t stage` after `partials` and has one chunk loop per level:
    stage s loads the lower levels' values of its chunk from `reduced`,
    computes what depends on them as the rule kernel does (the same ops,
    once per chunk), and overwrites the partials of level s only; any other
    stage writes nothing. `optim_reductions_<name>` appends `:<level>` to
    the entries of level > 0.

    Every kernel takes `const uint64_t *rng` as its last argument
    (KernelABI.h, version 8). A kernel that computes an `optim.random` draw
    loads the seed `rng[0]` once per call and the chunk's first global index
    `rng[1 + c]` once per chunk, and computes Philox4x32-10 of (seed; index,
    step, site) on vectors whose lanes are coordinates, each 32-bit word
    zero-extended in an i64 lane (`arith.muli` of two such words is one
    32 x 32 -> 64-bit multiply per lane, vpmuludq on x86, whose halves are a
    shift and a mask; in i32 lanes the high halves cost shuffles), then the
    conversion to the element type (uniform: 24 or 53 bits times a power of
    two; normal: Box-Muller's cosine branch, whose log and cos(2 pi u) are
    evaluated in f64 lanes without libm (exponent and mantissa, an atanh
    series; quarter turns and Taylor series of sin and cos, an fma
    recovering the phase's rounding) and rounded once to the element type:
    libm's log and cos of a vector are one call per lane, ~20 ns per
    coordinate): every lane count and the scalar tail give a coordinate the same value, and the reduce
    kernel recomputes the draws its reductions take. Kernels of rules that
    draw nothing never read `rng`. Rules with draw sites also get the
    constant `optim_random_<name>` (their kinds, "normal,uniform").

    By default every operation rounds as written (IEEE): `m / (1 - beta1 **
    t)` costs a division per coordinate, and no multiply-add is fused. With
    `relaxed-fp`, a division of a per-coordinate value by a uniform one
    becomes a multiplication by the reciprocal computed once per call (as
    PyTorch's own Adam arranges its formula), and the per-coordinate
    arithmetic may contract into fused multiply-adds; results then differ
    from the exact ones by about an ulp per operation. The values that
    reductions take never contract, in either kernel: LLVM decides
    contractions from the surrounding code, and the first pass must reduce
    the values that the rule kernel computes, bit for bit.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::arith::ArithDialect"
  ];
  let options = [
    Option<"vectorWidth", "vector-width", "unsigned", /*default=*/"16",
           "Coordinates processed together (SIMD lanes); 1 disables vectors">,
    Option<"learnedVectorWidth", "learned-vector-width", "unsigned",
           /*default=*/"0",
           "vector-width for learned rules (0: vector-width). Their kernel "
           "keeps 16 vectors of this width in registers: 16 suits 32 "
           "registers of 16 floats (AVX-512), 4 suits 16 of 8 (AVX2)">,
    Option<"relaxedFP", "relaxed-fp", "bool",
           /*default=*/"false",
           "Relaxed rounding: divide by uniform values (bias corrections) by "
           "multiplying with reciprocals computed once per call, and let "
           "multiplies and adds fuse into FMAs; faster, about an ulp per "
           "operation from the exact formula">,
    Option<"prefetchDistance", "prefetch-distance", "unsigned",
           /*default=*/"1024",
           "How many bytes ahead the vector loop of an update rule "
           "prefetches each stream (p, g, inputs, states); 0 disables. Keeps "
           "enough cache lines in flight when the arithmetic is heavy">
  ];
}

def LowerRulesToGPU : Pass<"optim-lower-rules-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Turn each optim.rule into one CUDA kernel over a whole chunk table";
  let description = [{
    Replaces every `optim.rule` by a `gpu.func @optim_rule_<name>` kernel in
    `gpu.module @optim_kernels`, with the GPU ABI of
    runtime/include/optim/KernelABI.h: one launch processes a whole chunk
    table (the multi-tensor pattern), thread block b takes chunk
    `begin + b`, and the block's threads take its coordinates (threads =
    coordinates).

    What depends only on the hyperparameters and the step (bias
    corrections, `1 - beta`, ...) is computed once per thread before any
    loop; hyperparameters and the step are kernel arguments, so a schedule
    never recompiles. When every pointer of the chunk is 16-byte aligned,
    each thread reads and writes `128 / element bits` coordinates at a time
    (128-bit vector loads and stores), the rest of the chunk is done one
    coordinate per thread; otherwise the whole chunk takes the scalar path.
    Every coordinate is read once and written once.

    `math.sqrt` becomes NVVM's correctly rounded square root (sqrt.rn in
    PTX; libdevice's, which convert-gpu-to-nvvm would call, is sqrt.approx)
    unless `relaxed-fp` is given; `relaxed-fp` also turns divisions by
    uniform values into multiplications by a reciprocal computed once per
    thread, and lets multiplies and adds contract into FMAs.

    Learned rules (weights, `optim.log_sign`, `optim.lstm_cell`,
    `optim.linear`) become one kernel each with the weights as extra
    pointer arguments: the block copies them into shared memory (a
    workgroup attribution) and synchronizes, then each thread takes one
    coordinate at a time, with the inputs of each matrix-vector product in
    registers, a loop over hidden units, and every new state component
    written to global memory as soon as it is computed. The shared copy of
    each `optim.lstm_cell` weight is gate-interleaved (the four gate
    weights of a unit and input side by side, 16-byte aligned), so one
    vector load feeds four FMAs; the c input of each hidden unit is loaded
    one unit ahead. The f32 cells compute the CPU kernel's exact rational
    activations, also with `relaxed-fp`, so the GPU gives the CPU's bits.
    In other rules a per-coordinate vector (`state h[N]`, `log_sign`) is N
    components, each a stream of its own in memory (component j at
    `h + j * stride + i`, the 128-bit path needing `stride` aligned too),
    and the other ops are elementwise per coordinate. Update rules with
    tensor reductions (`optim.tensor_reduce`) also get
    `gpu.func @optim_reduce_<name>` (f64 accumulation per thread, then a
    fixed tree in shared memory), with `partials`, `reduced` and `stage`
    before `rng` and one branch per level of nesting (KernelABI.h, versions
    6 and 9). Rules with row and column states or reductions take the chunk
    table of rectangles (version 10, one coordinate per thread): a row
    reduction gives each row of the chunk to a warp (shuffles), a column
    reduction each column to a thread; a row or column state's new value
    goes to its next buffer from the row's first column or the matrix's
    first row. A matrix function (`newton_schulz`) stores its operand per
    coordinate into its matrix buffer in its stage and is read back per
    coordinate; the module then also gets `optim_matrix_gemm_<t>`,
    `optim_matrix_combine_<t>`, `optim_matrix_sumsq_<t>` and
    `optim_matrix_scale_<t>`, kernels that
    call the block functions of lib/Device/MatrixNVPTX.cpp, with which the
    runtime computes NS(X) between the passes (KernelABI.h, "Matrix
    functions on CUDA").

    Every kernel takes `rng` (a device pointer) as its last parameter
    (KernelABI.h, version 8); a kernel that draws (`optim.random`) reads
    `rng[0]` and `rng[1 + c]` once per thread and computes each of its
    coordinates' draws (the 128-bit path's four or two lanes each), with
    `mul.hi.u32`/`mul.lo.s32` for Philox, `sqrt.rn` and libdevice's `cospi`
    of `2 u` for Box-Muller's cosine (no Payne-Hanek argument reduction, so
    no local memory); the module carries `optim_random_<name>` in global
    memory.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::arith::ArithDialect", "::mlir::math::MathDialect"
  ];
  let options = [
    Option<"vectorBits", "vector-bits", "unsigned", /*default=*/"128",
           "Bits read and written per thread and state at a time on aligned "
           "chunks; the element width disables vectors">,
    Option<"relaxedFP", "relaxed-fp", "bool", /*default=*/"false",
           "Approximate square roots, reciprocals of uniform divisors and "
           "fused multiply-adds">
  ];
}

def LowerVJPToKernels
    : Pass<"optim-lower-vjp-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Turn each rule's per-coordinate VJP into one fused CPU kernel";
  let description = [{
    Replaces every function that `optim-differentiate` marked with
    `optim.vjp_of` (and the rule's `@optim_step_<rule>`) by a
    `func.func @optim_vjp_kernel_<rule>` with the VJP ABI of
    runtime/include/optim/KernelABI.h. Per coordinate, `vector-width`
    coordinates at a time (SIMD lanes = coordinates) with a scalar loop for
    each chunk's remainder, it reads p, g, the inputs, the state and the cotangents of
    the new p and state once, recomputes the step, and overwrites the
    cotangents with those of the incoming p and state.

    The weight and hyperparameter cotangents are sums over all coordinates,
    into accumulators zeroed per chunk: hyperparameters and `linear_vjp`
    weights into per-lane ones (their lanes added in order at the end of the
    chunk, widest loop first, then the scalar tail), `lstm_cell_vjp` weights
    into a column-major one (below). Either way a chunk's result depends
    only on the chunk, never on the thread that ran it; the runtime adds
    the chunks in chunk order.

    Learned rules (`lstm_cell`, `linear`) run blocks of four vectors of
    coordinates first, like the forward kernel, with its rational f32
    activations; `lstm_cell_vjp` reuses the activations of the `lstm_cell`
    with the same operands (the recomputed forward step) and
    register-tiles the two products of the backward pass: `W^T dz` over
    tiles of input columns, and `dW += dz [x; h; 1]^T` by transposing the
    block's `dz` in registers (`vector.shuffle`, `vector-width` square) so
    that each vector holds gate rows of one coordinate, then updating each
    (row vectors x columns) tile of the column-major accumulator with one
    FMA per coordinate, in coordinate order. The tiles are sized for the
    target's register file (`vector-registers` of `vector-register-bytes`:
    AVX-512's 32 of 64 by default, AVX2's 16 of 32 from the compiler on
    such a host: tiles sized for AVX-512 spill on AVX2), which changes no
    bit. The lanes stay `vector-width` for learned rules too (the forward
    kernel's `learned-vector-width` is not used here): the per-lane
    accumulators of the hyperparameters' and `linear` weights' cotangents
    are summed across lanes at the end, so the lane count sets their
    rounding, and meta-training gives the same bits on every host.
    A weight cotangent must be a
    sum (`arith.addf`) of `lstm_cell_vjp` / `linear_vjp` contributions and
    zeros, which is what `optim-differentiate` produces.

    A rule with R tensor reductions (`optim.vjp_layout` [H, S, W, R]) has
    two VJP functions, each lowered the same way to a kernel with a tenth
    argument, `const double *reduced` (KernelABI.h, "Reverse mode of rules
    with tensor reductions"): chunk c's values are loaded once per chunk,
    rounded to the element type and broadcast to the coordinates.
    `@optim_vjp_<rule>` becomes `optim_vjp_reduced_kernel_<rule>` (R values
    per chunk, rho; P1 = H + W + 2R partials per chunk, the cotangents of
    rho and the tie indicators summed like hyperparameter cotangents), and
    `@optim_vjp_reductions_<rule>` (marked `optim.vjp_reductions`)
    `optim_vjp_reductions_kernel_<rule>` (2R values per chunk, rho then u;
    P2 = H + W + R partials per chunk, the last R the cotangents of rho that
    flow back from the operands of higher levels, for nested reductions).

    Every VJP kernel takes `const uint64_t *rng` last (KernelABI.h, version
    8): a draw (`optim.random`) is a constant of the reverse mode, and the
    kernel recomputes the forward step's draws from `rng` exactly as
    `optim-lower-rules-to-kernels` does (seed once per call, `rng[1 + c]`
    once per chunk, Philox per lane).
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::arith::ArithDialect", "::mlir::math::MathDialect"
  ];
  let options = [
    Option<"vectorWidth", "vector-width", "unsigned", /*default=*/"16",
           "Coordinates processed together (SIMD lanes); 1 disables vectors">,
    Option<"vectorRegisterBytes", "vector-register-bytes", "unsigned",
           /*default=*/"64",
           "Bytes of one SIMD register of the target (64: AVX-512, 32: "
           "AVX2), which sizes the register tiles of learned rules' products">,
    Option<"vectorRegisters", "vector-registers", "unsigned",
           /*default=*/"32",
           "SIMD registers of the target (32: AVX-512, 16: AVX2)">
  ];
}

def LowerLayers : Pass<"optim-lower-layers", "::mlir::ModuleOp"> {
  let summary = "Turn each optim.layer into the functions that compute its QP's data and their VJP";
  let description = [{
    Replaces every `optim.layer @<name>` whose outputs are results of one
    `optim.qp` by two functions with the ABI of
    runtime/include/optim/KernelABI.h (the runtime solves the QP itself,
    optim_qp_*):

    - `optim_layer_<name>_data(inputs, weights, batch, data)` writes the
      qp's operands (Q, q, A, b, G, h, the present ones in that order): an
      operand that does not depend on the inputs once, the others once per
      batch element;
    - `optim_layer_<name>_vjp(inputs, weights, batch, ddata, dinputs,
      dweights)` maps cotangents of those operands (shared ones summed over
      the batch, as the solver's backward gives them) to cotangents of the
      inputs (per element) and of the weights (summed over the batch).

    Each element of an operand is computed by evaluating its expression at
    that index, and each element of a cotangent by summing the contributions
    of the value's uses at that index; nothing is materialized between ops
    (an element of a matrix-vector product is a loop over its row). Supported
    in a layer's data: inputs and weights, splat constants and broadcasts of
    constant scalars, `optim.eye`, `optim.matvec`, and elementwise arith and
    math ops (differentiable: add, sub, mul, div, neg, exp, log, sqrt, tanh,
    cos, sin, remf, select of a comparison; floor, ceil and comparisons
    with derivative 0); anything else is a clear error.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect", "::mlir::arith::ArithDialect",
    "::mlir::math::MathDialect"
  ];
}

def LowerLayersToGPU : Pass<"optim-lower-layers-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Turn each optim.layer into one CUDA kernel: a thread block per problem builds its QP's data and solves it";
  let description = [{
    Replaces every `optim.layer @<name>` (the same layers as
    `optim-lower-layers`) by a kernel `optim_layer_<name>_qp` in the
    `gpu.module @optim_kernels`, launched with one block of `threads`
    threads per problem of the batch:

    ```
    optim_layer_<name>_qp(inputs..., weights..., z, nu, lam, status,
                          iterations, work)
    ```

    Block e computes the operands of problem e (Q, q, A, b, G, h: each
    element by evaluating its expression at that index, as
    `optim-lower-layers` does, the elements spread over the block's threads)
    into its slice of the global workspace `work`, in float64, then calls
    `optim_qp_block_solve` (runtime/include/optim/QPBlock.h, linked from
    bitcode by the NVVM target), which solves the problem with the block's
    threads and writes z, nu, lam (the layer's element type), the status and
    the iteration count of problem e. The layout (threads, dynamic shared
    memory, workspace per problem) is `optim::qpblock::kernelLayout`; the
    manifest records it. Only the forward pass: the VJP of layers is not
    compiled for GPUs.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::gpu::GPUDialect",
    "::mlir::scf::SCFDialect", "::mlir::arith::ArithDialect",
    "::mlir::math::MathDialect"
  ];
  let options = [
    Option<"threads", "threads", "int64_t", /*default=*/"0",
           "Threads per block (0: 32 for problems with at most 32 variables "
           "and constraints, else 256)">,
    Option<"sharedBytes", "shared-bytes", "int64_t", /*default=*/"101376",
           "Dynamic shared memory per block at most (the solver's buffers "
           "that do not fit go to global memory)">
  ];
}

def CheckLowered : Pass<"optim-check-lowered", "::mlir::ModuleOp"> {
  let summary = "Fail on optim ops that no lowering took";
  let description = [{
    The last step of the lowering pipelines (`optim-lower-to-llvm`, the JIT,
    `optimc`, the CUDA pipeline): every `optim` op left in the module is an
    error at its location. The lowerings replace rules and layers and the
    functions that `optim-differentiate` derives from rules (when the VJP is
    asked for); what they leave would otherwise pass through the upstream
    conversions untouched and reach LLVM IR translation, or be silently
    dropped from a GPU binary. The verifier already rejects optim ops
    outside a rule or a layer; what remains are rules and layers that are
    not at the top level of the module and the per-coordinate ops of step
    and VJP functions that `optim-lower-vjp-to-kernels` did not lower.
  }];
}

#endif // OPTIM_CONVERSION_PASSES
