/*===- KernelABI.h - the contract between compiled kernels and the runtime -===*
 *
 * This header is the ONLY thing the compiler and the runtime share. It is
 * plain C so that kernels, the C++ runtime and foreign callers agree on it
 * without LLVM or MLIR headers.
 *
 * An update rule compiles to one function that applies the rule to every
 * coordinate of a range of chunks:
 *
 *   void optim_rule_<name>(void *const *ptrs, const int64_t *lengths,
 *                          const int64_t *strides, int64_t begin,
 *                          int64_t end, const double *hypers, int64_t step,
 *                          const void *const *weights,
 *                          const uint64_t *rng);
 *
 * - A chunk is a contiguous run of coordinates of one parameter tensor.
 *   Chunk c has `lengths[c]` coordinates and 2 + I + S pointers at
 *   `ptrs[c * (2 + I + S)]`: the parameters, the gradients, then one per
 *   input (I = number of `input` declarations of the rule, in declaration
 *   order; read only, like the gradients), then one per state (S = number
 *   of states of the rule), each already offset to the chunk's first
 *   coordinate. Elements are of the rule's element type (f32 or f64).
 *   Inputs are version 7; rules without inputs have the same table as
 *   before (I = 0).
 * - A vector state `h[N]` is stored component-major for the whole tensor:
 *   component j of coordinate i of the chunk lives at
 *   `state_ptr + j * strides[c] + i`, where strides[c] is the number of
 *   coordinates of the chunk's tensor. Scalar states ignore strides.
 * - Chunks [begin, end) are processed; threads take disjoint ranges, and
 *   every coordinate is computed independently, so the result does not
 *   depend on how chunks are split among threads.
 * - `hypers` holds the value of every hyperparameter in declaration order
 *   (const ones included, which the kernel ignores: their value is compiled
 *   in). `step` is t, 1-based.
 * - `weights` holds one pointer per declared weights tensor (learned rules),
 *   row-major, of the rule's element type; NULL when there are none.
 * - Pointers must be aligned to the element type; nothing more is needed.
 *
 *===----------------------------------------------------------------------===*/

#ifndef OPTIM_KERNELABI_H
#define OPTIM_KERNELABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever anything above changes; recorded in AOT manifests.
 * Version 7: per-coordinate inputs (RuleInfo::inputs, "inputs" in AOT
 * manifests) in every chunk table, CPU and GPU, forward and reverse.
 * Version 8: every rule-family kernel (CPU and GPU, rule, reduce and VJP)
 * takes `const uint64_t *rng` as its LAST argument: random numbers drawn
 * by the rule (`rand()`, `randn()`; section "Random numbers" below).
 * Version 9: nested tensor reductions (a reduction of a value computed from
 * another reduction's result): optim_reduce_ takes `const double *reduced`
 * and `int64_t stage` before `rng`, CPU and GPU (section "Rules with tensor
 * reductions" below).
 * Version 10: row and column states and reductions (section "Axes" below):
 * rules that have any use another chunk table; every other rule's kernels
 * are unchanged. Libraries of rules with states define optim_states_<name>
 * (same section).
 * Version 11: matrix functions (newton_schulz, Muon's orthogonalization)
 * and the shape values rows and cols (section "Matrix functions and shape
 * values" below). Other rules' kernels are unchanged. */
#define OPTIM_KERNEL_ABI_VERSION 11

/* ---- Random numbers (version 8) --------------------------------------------
 * A rule may draw random numbers per coordinate (`rand()`: uniform on
 * [0, 1); `randn()`: standard normal). Each call in the body is one draw
 * site, numbered k = 0, 1, ... in body order (optim.random ops); the rule's
 * sites are RuleInfo::random (optim/Rule.h) and "random" in AOT manifests,
 * and the library defines `const char optim_random_<name>[]`, their kinds
 * in order, comma-separated ("normal,uniform"; only for rules that draw,
 * in global memory on CUDA as optim_reductions_<name>); loaders refuse a
 * manifest that disagrees with it.
 *
 * - `rng` (the last argument of every kernel of a rule: optim_rule_,
 *   optim_reduce_, the three VJP kernels; CPU and GPU) points to 1 + C
 *   uint64 values for a table of C chunks: rng[0] is the seed
 *   (OptimizerOptions::seed), rng[1 + c] the global index of chunk c's
 *   first coordinate: the position of that coordinate in the concatenation
 *   of all the optimizer's parameters in parameter order (groups
 *   flattened). A kernel reads rng[0] and rng[1 + c] for the chunks
 *   c in [begin, end) it processes. For a rule that draws nothing the
 *   kernels never read it and it may be NULL. On CUDA it is a device
 *   pointer (the runtime keeps it in the chunk table's allocation).
 * - The draw of site k at coordinate i (global index) and step t is
 *   Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32_10) with
 *     key     = (seed mod 2^32, seed >> 32)
 *     counter = (i mod 2^32, i >> 32, t mod 2^32, k)
 *   giving four 32-bit words w0..w3. Hence the values depend on the seed,
 *   the coordinate, the step and the site only: not on chunking, threads,
 *   vector width, the pass (reduce, rule or VJP kernels recompute the same
 *   values) or the backend. Steps t and t + 2^32 draw the same numbers.
 * - Conversion, in the rule's element type T:
 *     U32(w)     = (w >> 8) * 2^-24                       (f32, on [0, 1))
 *     U64(a, b)  = (((uint64)b << 32 | a) >> 11) * 2^-53  (f64, on [0, 1))
 *     rand():   f32: U32(w0);                f64: U64(w0, w1)
 *     randn():  Box-Muller, the cosine branch:
 *               u1 = 1 - U_a, u2 = U_b, z = sqrt(-2 log u1) * cos(2 pi u2)
 *               f32: U_a = U32(w0), U_b = U32(w1);
 *               f64: U_a = U64(w0, w1), U_b = U64(w2, w3);
 *               with 2 pi and the product 2 pi Ub rounded to T, and log,
 *               sqrt and cos to within the target's rounding: on the CPU
 *               evaluated in f64 (log by exponent and mantissa, cos by
 *               quarter turns, both series in SIMD lanes) and rounded once
 *               to T; on CUDA in T with libdevice's log and cospi(2 Ub)
 *               (which skips the rounding of 2 pi Ub). Equal across
 *               backends up to their rounding, not bit for bit.
 *               |z| <= sqrt(-2 log 2^-24) ~ 5.77 (f32), ~ 8.57 (f64).
 * - Random values are constants of the reverse mode: no cotangent, and
 *   the VJP kernels recompute the forward step's values from rng. */
#define OPTIM_RANDOM_SYMBOL_PREFIX "optim_random_"

/* The prefix of every rule kernel's symbol: optim_rule_<rule name>. */
#define OPTIM_RULE_SYMBOL_PREFIX "optim_rule_"

typedef void (*optim_rule_kernel)(void *const *ptrs, const int64_t *lengths,
                                  const int64_t *strides, int64_t begin,
                                  int64_t end, const double *hypers,
                                  int64_t step, const void *const *weights,
                                  const uint64_t *rng);

/* ---- Rules with tensor reductions (version 6) ------------------------------
 * A rule that calls tensor_sum/mean/norm/max/min or global_sum/... (R > 0
 * reductions; RuleInfo::reductions in optim/Rule.h, "reductions" in AOT
 * manifests, one per optim.tensor_reduce op in the rule's body order) makes
 * two passes over memory, with two functions:
 *
 *   void optim_reduce_<name>(void *const *ptrs, const int64_t *lengths,
 *                            const int64_t *strides, int64_t begin,
 *                            int64_t end, const double *hypers,
 *                            int64_t step, const void *const *weights,
 *                            double *partials, const double *reduced,
 *                            int64_t stage, const uint64_t *rng);
 *   void optim_rule_<name>(void *const *ptrs, const int64_t *lengths,
 *                          const int64_t *strides, int64_t begin,
 *                          int64_t end, const double *hypers, int64_t step,
 *                          const void *const *weights,
 *                          const double *reduced, const uint64_t *rng);
 *
 * - Both take the chunk table, hypers, step and weights of the rule kernel
 *   above, for the same step. optim_reduce_ reads p, g, the inputs and the
 *   states and writes nothing but `partials`: for each chunk c of [begin, end) and each
 *   reduction r it OVERWRITES partials[c * R + r] with the chunk's partial,
 *   in double: the sum of the reduced value (sum, mean), the sum of its
 *   squares (norm), its maximum (max) or minimum (min); NaN propagates
 *   through max and min; an empty chunk gives 0, -inf or +inf. A chunk's
 *   partials depend only on the chunk (lanes are combined in a fixed order).
 * - The runtime combines the partials of the chunks of a tensor (or, for a
 *   global reduction, of every tensor of the optimizer, in parameter order)
 *   in chunk order: sum, max or min; then mean = sum / coordinates and
 *   norm = sqrt(sum). It passes the result of reduction r for chunk c's
 *   tensor as reduced[c * R + r] to optim_rule_, which otherwise is the rule
 *   kernel above. The results do not depend on the number of threads.
 * - The library also defines `const char optim_reductions_<name>[]`, the
 *   reductions the kernels were compiled for, in order, comma-separated,
 *   each its kind with "@global" appended for a global one
 *   ("norm,sum@global"); loaders refuse a manifest that disagrees with it
 *   (the kernels write and read R values per chunk).
 * - Rules without reductions are unchanged (and have neither symbol);
 *   runtimes that predate version 6 refuse manifests of either kind.
 * - Nested reductions (version 9). Reduction r has a LEVEL: 0 when its
 *   operand x_r depends on no reduction's result, else 1 + the largest
 *   level of the reductions x_r depends on (through any chain of ops). A
 *   rule whose largest level is L makes L + 2 passes over memory: stages
 *   s = 0 .. L of optim_reduce_, then optim_rule_. The call with `stage` s
 *   computes, for each chunk c of [begin, end), the partials of the
 *   reductions of level s only (OVERWRITES partials[c * R + r] for
 *   level(r) == s; leaves every other slot as it was), reading the results
 *   of lower levels as reduced[c * R + r'] (level(r') < s; the values the
 *   runtime combined after the earlier stages, exactly as optim_rule_ reads
 *   them). It never reads a slot of reduced of level >= s; for stage 0 it
 *   reads none (`reduced` may then be NULL). A value computed from reduced
 *   values is computed bit for bit as in optim_rule_. A stage outside
 *   [0, L] writes nothing. The runtime runs stage 0 over every chunk,
 *   combines the level-0 slots (as above), runs stage 1, combines the
 *   level-1 slots, ..., then optim_rule_ with every slot combined. The
 *   descriptor optim_reductions_<name> appends ":<level>" to an entry of
 *   level > 0 ("norm,mean:1,sum@global:2"; ReductionSpec::level in
 *   optim/Rule.h), and so do manifests' "reductions"; loaders refuse a
 *   disagreement, as for kinds. The reverse mode (below) runs its second
 *   kernel once per level. */
#define OPTIM_REDUCE_SYMBOL_PREFIX "optim_reduce_"
#define OPTIM_REDUCTIONS_SYMBOL_PREFIX "optim_reductions_"

typedef void (*optim_reduce_kernel)(void *const *ptrs, const int64_t *lengths,
                                    const int64_t *strides, int64_t begin,
                                    int64_t end, const double *hypers,
                                    int64_t step, const void *const *weights,
                                    double *partials, const double *reduced,
                                    int64_t stage, const uint64_t *rng);
typedef void (*optim_reduced_rule_kernel)(
    void *const *ptrs, const int64_t *lengths, const int64_t *strides,
    int64_t begin, int64_t end, const double *hypers, int64_t step,
    const void *const *weights, const double *reduced, const uint64_t *rng);

/* ---- Axes: row and column states and reductions (version 10) --------------
 * A rule may keep a state per row or per column of a parameter instead of
 * per coordinate (`row state r`, `col state c`; StateSpec::axis in
 * optim/Rule.h) and reduce a value along each row or column (row_sum(x),
 * col_mean(x), ...: ReductionSpec::axis, "@row" / "@col" in the descriptor
 * and manifests; never global): factored second moments (Adafactor, CAME),
 * SM3's cover sets, per-row statistics (Nero, Adam-mini). Such a rule
 * (RuleInfo::hasAxes()) keeps the symbols and signatures above
 * (optim_rule_, and optim_reduce_ with the reduced optim_rule_ when it has
 * reductions) but takes this chunk table, on the CPU and on CUDA (see "GPU
 * rule kernels" for how a launch covers it; their reverse mode, CPU only:
 * "Reverse mode of rules with axes").
 *
 * - Shape. The runtime sees each parameter as B matrices of R rows and C
 *   columns, row-major: C = the last dimension of the shape the host gave,
 *   R = the one before it (1 for a 1-D shape), B = the product of the others
 *   (1); a parameter given without a shape is [1, 1, n] (one row). The
 *   coordinate at flat index k of the tensor is in row k / C (of B * R,
 *   matrices stacked) and column (k / (R * C)) * C + k % C (of B * C). A
 *   row state of the tensor holds B * R values, a column state B * C; a
 *   row reduction has B * R results, a column reduction B * C.
 * - Chunks are rectangles inside one matrix b: rows [r0, r0 + nr) x columns
 *   [c0, c0 + nc), with either whole rows (c0 = 0, nc = C) or a part of
 *   one row (nr = 1): contiguous in memory, nr * nc coordinates, row r of
 *   the chunk at chunk offset r * nc. `lengths` holds FOUR values per
 *   chunk: lengths[4c .. 4c + 3] = nr, nc, r0, c0. `strides[c]` is still
 *   the tensor's coordinate count (vector states), and rng[1 + c] the
 *   global index of the chunk's first coordinate (chunk offset r * nc + j
 *   adds to it).
 * - Pointers: 2 + I + S + A + 2X per chunk (A = row and column states,
 *   X = row and column reductions): p, g, the inputs and the states as
 *   above, where a row (column) state's pointer is its CURRENT buffer
 *   offset to the chunk's first row b * R + r0 (first column b * C + c0),
 *   so that the chunk's row r reads [r] and column j reads [j]; then for
 *   each row or column state, in declaration order, its NEXT buffer, offset
 *   alike; then for each row or column reduction, in body order, a
 *   `double *` to the chunk's partials of it; then for each, in body
 *   order, a `const double *` to its combined results, offset as a state.
 * - optim_rule_ computes every coordinate as usual with a row state's
 *   value at the coordinate's row (current buffer) and writes the new
 *   value of each row state to next[r] for the chunk's rows when c0 == 0
 *   (the chunk holding the row's first column), of each column state to
 *   next[j] for the chunk's columns when r0 == 0 (chunks holding the
 *   matrix's first row): every row and column of a non-empty matrix is
 *   written exactly once a step, and nothing reads a next buffer. The new
 *   value of a row state is the same at every coordinate of the row (the
 *   verifier checks that it is computed from uniform values, row states and
 *   row reductions only). After the step the runtime copies each next
 *   buffer of a non-empty tensor into the current one (so a checkpoint,
 *   Optimizer::state and the next step see it).
 * - Row and column reductions have levels (version 9) and stages as tensor
 *   reductions. Stage s OVERWRITES, for each row or column reduction of
 *   level s, nr partials (row: partial[r] = the chunk's columns of row r,
 *   in column order, vector lanes accumulated apart and combined in lane
 *   order, then the scalar tail) or nc partials (column: partial[j] = the
 *   chunk's rows of column j in row order), in double: sum, sum of squares
 *   (norm), max or min as for tensor reductions. It reads lower levels'
 *   results from the reduced pointers ([r] or [j]), rounded to the element
 *   type. The tensor reductions keep partials[c * R + r] and
 *   reduced[c * R + r], R counting every reduction of the rule (the slots
 *   of row and column ones are never read or written by the kernels).
 * - The runtime combines each row's partials over the chunks holding it
 *   (one chunk with whole rows; the parts of a split row in order), each
 *   column's over the chunks of its matrix in order; then mean = sum / C
 *   for a row, sum / R for a column; norm = sqrt(sum); the results are in
 *   double. Chunking depends on the shapes and OptimizerOptions::chunkSize
 *   only, never on the threads, so results do not depend on the number of
 *   threads: with K = chunkSize, or 16 * chunkSize for a rule with a column
 *   reduction (whose partials are a double per column of each chunk: chunks
 *   of few rows would write up to a double per coordinate), rows of C <= K
 *   coordinates go floor(K / C) to a chunk; longer rows are cut into parts
 *   of K.
 * - The library of every rule with states (S > 0, with axes or without)
 *   defines `const char optim_states_<name>[]`, the states the kernels were
 *   compiled for, in declaration order, comma-separated, each its
 *   per-coordinate size with "@row" / "@col" appended for a row or column
 *   state ("1,1@row,1@col,20"; optim::statesDescriptor in optim/Rule.h).
 *   The chunk table's pointers and the sizes of the state buffers follow
 *   from the states, so library loaders refuse a manifest that disagrees
 *   with it, one that lists states for a library without it (compiled
 *   before it existed: recompile it) and one that lists none for a library
 *   with it. Rules without states have no such symbol; CUDA modules do not
 *   define it (their loader does not read it). */
#define OPTIM_STATES_SYMBOL_PREFIX "optim_states_"

/* ---- Matrix functions and shape values (version 11) ------------------------
 * Two more kinds of ReductionSpec (optim/Rule.h), numbered among a rule's
 * reductions in body order like the others, with the same symbols.
 *
 * Matrix functions. `newton_schulz(x)` (kind NewtonSchulz, axis Matrix,
 * "newton_schulz(<steps>;<a>;<b>;<c>;<eps>)@matrix[:level]" in the
 * descriptor and manifests, numbers spelled by optim::descriptorNumber) is
 * a function of each whole matrix of the parameter ([B, R, C] view of
 * "Axes"): its result at a coordinate is that coordinate's entry of NS(X),
 * X the R x C matrix of x values holding the coordinate. A rule with one is
 * a rule with axes (RuleInfo::hasAxes) and takes the chunk table of "Axes"
 * (any rectangles; no constraint on chunking).
 *
 * - Among the "row and column reductions" of that table (X: two pointers
 *   each, in body order) count the matrix ones: the first pointer is a
 *   `T *` (the rule's element type, not double) into the reduction's matrix
 *   buffer for the chunk's tensor, a buffer of one T per coordinate of the
 *   tensor indexed by flat coordinate index, already offset to the chunk's
 *   first coordinate; the second is the same address as `const T *`. Row r
 *   column j of the chunk is at [r * nc + j] in both.
 * - Stage s = level(r) of optim_reduce_ OVERWRITES [r * nc + j] with x at
 *   every coordinate of the chunk (x rounded to T, as the kernel computed
 *   it). Then the runtime replaces each non-empty matrix b of each tensor
 *   (flat [b R C, (b + 1) R C)) of the buffer by NS(X), in T. Later stages
 *   and optim_rule_ read the result at [r * nc + j] through the second
 *   pointer (a per-coordinate value). Nothing else reads or writes the
 *   buffer; the partials[c * R + r] / reduced[c * R + r] slots of a matrix
 *   reduction are never read or written by kernels.
 * - NS(X) with steps k, coefficients (a, b, c) and epsilon e: Y = X^T if
 *   R > C, else X (m x n, m <= n); s = the Frobenius norm of Y accumulated
 *   in double and rounded to T; every entry y <- y / max(s, T(e)); then k
 *   times: A = Y Y^T (m x m), B = b A + c (A A), Y <- a Y + B Y, each
 *   product in T (a general matrix product: cblas_?gemm of a
 *   single-threaded OpenBLAS when one is installed, one whole product per
 *   call, else the runtime's own loops on the optimizer's threads); the
 *   result is Y (transposed back when R > C). This is torch.optim.Muon's
 *   _zeropower_via_newtonschulz in T instead of bfloat16. The order of the
 *   products' sums is the BLAS library's: results are identical for any
 *   OptimizerOptions::threads, not necessarily across BLAS libraries.
 * - On CUDA: "Matrix functions on CUDA" below. Their reverse mode:
 *   "Reverse mode of rules with axes" (CPU only).
 *
 * Shape values. `rows()` and `cols()` (kinds Rows and Cols: axis None, not
 * global, level 0; "rows" and "cols" in the descriptor and manifests) are
 * the R and C of the parameter's [B, R, C] view, the same at every
 * coordinate of a tensor, with either chunk table, CPU and CUDA.
 * - The runtime writes reduced[c * R + r] = R or C (as a double) for every
 *   chunk c before anything runs; no kernel writes their partials slots,
 *   and every stage of optim_reduce_, stage 0 included, and optim_rule_ may
 *   read them (`reduced` is then non-NULL at stage 0 too).
 * - They do not raise the level of what depends on them (a reduction of a
 *   value computed from rows() alone has level 0), and a stage whose level
 *   has no other reduction is not run: a rule whose reductions are all
 *   shape values makes one pass (optim_rule_ only, although the library
 *   defines optim_reduce_ as for any rule with reductions).
 * - The reverse mode treats them as constants: the VJP kernels read them
 *   from rho (reduced / ru) as the forward ones do, the runtime gives them
 *   u_r = 0, and optim_vjp_reductions_kernel_ propagates nothing through
 *   their operands. The runtime fills them in before each recorded step
 *   (TrajectoryOptions::shapes). */

/* ---- GPU rule kernels (version 5) ------------------------------------------
 * `optimc --target=cuda --emit=ptx|cubin` compiles an update rule to a CUDA
 * kernel `optim_rule_<name>` (PTX .entry, in a cubin for one architecture,
 * with a manifest whose "target" is "nvptx64-nvidia-cuda sm_XY"):
 *
 *   __global__ void optim_rule_<name>(void *const *ptrs,
 *                                     const int64_t *lengths,
 *                                     const int64_t *strides, int64_t begin,
 *                                     int64_t step, T hyper_0, ...,
 *                                     T hyper_{H-1}, const uint64_t *rng);
 *
 * - ptrs, lengths and strides are the chunk table exactly as for CPU rule
 *   kernels (2 + I + S pointers per chunk, then lengths, then strides), in
 *   DEVICE memory; the runtime keeps all three in one allocation. Every
 *   pointer of the table is a device (global) pointer aligned to the
 *   element type.
 * - One launch covers chunks [begin, begin + gridDim.x): block b takes chunk
 *   begin + b; its blockDim.x threads (any count; y = z = 1; no dynamic
 *   shared memory) stride over the chunk's coordinates.
 * - T is the rule's element type (float or double): every hyperparameter
 *   in declaration order, by value (const ones included and ignored);
 *   `step` is t, 1-based.
 * - When all of a chunk's pointers are 16-byte aligned, each thread handles
 *   16 bytes of every input and output at a time (128-bit loads and
 *   stores) and the remainder one coordinate per thread; otherwise the
 *   whole chunk goes one coordinate per thread. Chunk lengths that are
 *   multiples of 4 keep every chunk of an aligned tensor aligned.
 * - Vector states are laid out as for CPU kernels (component j of
 *   coordinate i of chunk c at state_ptr + j * strides[c] + i; the state
 *   buffer of a tensor of n coordinates holds N * n elements), in update
 *   rules and learned rules alike; each component is a stream of its own.
 *   In an update rule it also takes the 128-bit path, which then needs
 *   strides[c] * sizeof(T) to be a multiple of 16 too (tensors of a
 *   multiple of 4 coordinates in f32, 2 in f64). The reduce kernel below
 *   reads components the same way. (Until 2026-11-29 the compiler refused
 *   vector states in update rules for the GPU; the layout did not change,
 *   so the version did not either.)
 * - Learned rules (W weights tensors) take one more argument per weights
 *   tensor, after the hyperparameters, in declaration order:
 *     ..., T hyper_{H-1}, const T *weights_0, ..., const T *weights_{W-1},
 *     const uint64_t *rng);
 *   each a device (global) pointer to the tensor, row-major as for CPU
 *   kernels. The kernel copies them all into static shared memory (at most
 *   48 KiB: the compiler refuses more) and synchronizes the block (one
 *   barrier, before any coordinate; blockDim.x is still any count).
 *   Each thread takes one coordinate at a time (no 128-bit path), so that
 *   consecutive threads touch consecutive addresses of every component of
 *   the vector states.
 *   Version unchanged: the kernels above are unaffected, and runtimes
 *   that predate this refuse manifests with weights.
 * - Rules with row and column states or reductions ("Axes", version 10)
 *   take that chunk table (four lengths per chunk; 2 + I + S + A + 2X
 *   pointers) with the same meaning and the same partials: block b takes
 *   chunk begin + b, its threads stride over the chunk's nr * nc
 *   coordinates (k = r * nc + j, one per thread and iteration: no 128-bit
 *   path), a row state's new value is written to its next buffer by the
 *   thread of column 0 when c0 == 0, a column state's by the threads of the
 *   matrix's first row. The reduce kernel overwrites a row reduction's
 *   partial[r] (a warp per row: its lanes take the row's columns lane,
 *   lane + 32, ..., combined by a butterfly of shuffles, so blockDim.x must
 *   be a multiple of 32) and a column reduction's partial[j] (a thread per
 *   column, the rows in order). The runtime combines them per row and
 *   column in chunk order as the CPU's does, uploads the results and,
 *   after the rule kernel, copies each next buffer over the current one
 *   (cuMemcpyDtoDAsync, in stream order).
 * - Rules with tensor reductions (version 6; update rules only, no weights)
 *   have two kernels, as on the CPU, with the launch above:
 *     __global__ void optim_reduce_<name>(ptrs, lengths, strides, begin,
 *                                         step, T hyper_0, ...,
 *                                         T hyper_{H-1}, double *partials,
 *                                         const double *reduced,
 *                                         int64_t stage,
 *                                         const uint64_t *rng);
 *     __global__ void optim_rule_<name>(ptrs, lengths, strides, begin,
 *                                       step, T hyper_0, ...,
 *                                       T hyper_{H-1},
 *                                       const double *reduced,
 *                                       const uint64_t *rng);
 *   Block b of optim_reduce_ OVERWRITES partials[c * R + r] (c = begin + b)
 *   with chunk c's partial of reduction r, as the CPU's: each thread
 *   accumulates its coordinates (threadIdx.x, + blockDim.x, ...) in order
 *   in double, the block combines its threads' values by a tree of fixed
 *   shape in static shared memory (8 KiB; blockDim.x <= 1024). A reduced
 *   value is computed by the per-coordinate code of optim_rule_ (bit for
 *   bit), and a chunk's partial depends only on the chunk and blockDim.x:
 *   GPU results are deterministic for a given launch shape and equal the
 *   CPU's up to the order of the f64 sums (not bit for bit across
 *   backends; max and min are exact). The runtime combines the chunks'
 *   partials on the host in chunk order (as the CPU executor) and passes
 *   the results as reduced[c * R + r]; optim_rule_ reads its chunk's R
 *   values once per thread. The module also defines the descriptor
 *   optim_reductions_<name> of the CPU contract, as a __device__ char
 *   array in global memory; the loader reads it (cuModuleGetGlobal) and
 *   refuses a manifest that disagrees, and a manifest listing no
 *   reductions for a module with optim_reduce_<name>. Nested reductions
 *   (version 9) run as on the CPU: one launch of optim_reduce_ per stage
 *   (`stage` = 0 .. L, `reduced` a device pointer to the values combined
 *   after the earlier stages, NULL allowed for stage 0), each followed by
 *   the host combine of that level's slots, then optim_rule_.
 * - Matrix functions (version 11; "Matrix functions on CUDA" below).
 * The runtime's launch path is optim::cuda::Optimizer (optim/Cuda.h;
 * Optimizer::setWeights for learned rules). */

/* ---- Matrix functions on CUDA ----------------------------------------------
 * A rule with `newton_schulz` compiles for CUDA as for the CPU ("Matrix
 * functions" above): its pair of chunk-table pointers addresses the
 * reduction's matrix buffer (device memory, T, the chunk's first
 * coordinate), stage level(r) of optim_reduce_ overwrites [r * nc + j] with
 * x at each coordinate of the chunk, and later stages and optim_rule_ read
 * NS(X) at [r * nc + j]. In between, the runtime computes NS(X) of each
 * non-empty matrix on the device with four kernels that the module
 * defines for the rule's element type t (f32 or f64), whatever the rule:
 *
 *   optim_matrix_gemm_<t>(int64_t M, int64_t N, int64_t K, T alpha,
 *                         const T *A, int64_t ars, int64_t acs, int64_t sA,
 *                         const T *B, int64_t brs, int64_t bcs, int64_t sB,
 *                         T beta, const T *D, int64_t sD, T *C, int64_t sC,
 *                         int64_t kc, T *P);
 *     C = alpha A B + beta D (M x N, row-major; D like C, or NULL: not
 *     read), A(i, k) = A[i ars + k acs], B(k, j) = B[k brs + j bcs]; grid
 *     (ceil(N / 64), ceil(M / 64), Z S), 256 threads, 2 * 16 * 68 *
 *     sizeof(T) bytes of dynamic shared memory. Blocks of z take the
 *     batch's matrix b = z / S: A + b sA, B + b sB, D + b sD, C + b sC
 *     (elements). With 0 < kc < K the product is split in S = ceil(K / kc)
 *     slices: block z computes slice s = z % S (k in [s kc, min(K,
 *     (s + 1) kc))) without alpha, beta or D, into P + z M N; else S = 1
 *     and P is not read.
 *   optim_matrix_combine_<t>(int64_t M, int64_t N, T alpha, const T *P,
 *                            int64_t S, T beta, const T *D, int64_t sD,
 *                            T *C, int64_t sC);
 *     a split product's end: C = alpha (P_0 + ... + P_{S-1}) + beta D for
 *     matrix z (P_s at P + (z S + s) M N, summed in order; D + z sD,
 *     C + z sC); grid (any, 1, Z), 256 threads, no shared memory.
 *   optim_matrix_sumsq_<t>(const T *x, int64_t n, int64_t sx,
 *                          double *partials);
 *     partials[z G + b] = block b's part of the sum of x[z sx + i]^2 over
 *     i < n (in double); grid (G, 1, Z), G = optim::matrixblock::sumBlocks
 *     (n), 256 threads, 2 KiB.
 *   optim_matrix_scale_<t>(T *y, int64_t yrs, int64_t ycs, int64_t sy,
 *                          const T *x, int64_t xrs, int64_t xcs, int64_t sx,
 *                          int64_t m, int64_t n, const double *partials,
 *                          int64_t numPartials, double eps);
 *     y(i, j) = x(i, j) / max(T(sqrt(sum of the partials)), T(eps)) over
 *     i < m, j < n (strided as in gemm; no division by 0; with
 *     numPartials == 0 a plain copy), matrix z at y + z sy, x + z sx and
 *     partials + z numPartials; grid (any, 1, Z), 256 threads, no shared
 *     memory.
 *
 * What a block does is optim/MatrixBlock.h (header-only, freestanding):
 * the module's kernels call it through lib/Device/MatrixNVPTX.cpp, and the
 * runtime's tests run it on the CPU. The runtime's NS(X): Y = X^T if
 * R > C, else X (strides, no copy), s from sumsq over X, Y0 = scale(Y) in
 * a work buffer, then k times A = Y Y^T, B = c (A A) + b A, Y' = B Y + a Y
 * (three gemm launches), and the last Y copied back (transposed when
 * R > C); each launch covers a group of a tensor's matrices (Z <= 65535,
 * and about 4M elements of scratch). The two m x m products are split
 * over K (then combined) when the group's tiles are fewer than the
 * device's multiprocessors and K is at least 512: S = min(ceil(2 SMs /
 * tiles), K / 256). Each product entry is one fused multiply-add chain
 * over k < K in order, or the in-order sum of its slices' chains: results
 * depend on the matrix and the device's multiprocessor count only, and
 * differ from the CPU's (OpenBLAS or the runtime's loops) in rounding
 * only. */
#define OPTIM_MATRIX_SYMBOL_PREFIX "optim_matrix_"

/* ---- Vector-Jacobian products of rules (version 3) -------------------------
 * A rule compiled with its reverse mode (CompileOptions::vjp) also has
 *
 *   void optim_vjp_kernel_<name>(void *const *ptrs, const int64_t *lengths,
 *                                const int64_t *strides, int64_t begin,
 *                                int64_t end, const double *hypers,
 *                                int64_t step, const void *const *weights,
 *                                void *partials, const uint64_t *rng);
 *
 * the vector-Jacobian product of ONE step (optim_rule_<name> with the same
 * hypers, step and weights) with respect to the incoming parameter, the
 * incoming state, the hyperparameters and the weights; the gradient g is a
 * constant (no cotangent).
 * - Chunk c has 3 + I + 2S pointers at `ptrs[c * (3 + I + 2S)]`: p, g,
 *   the I inputs (constants, as g: no cotangent) and the S states as they
 *   were BEFORE the step (read only), then the cotangent of p and one per
 *   state. On entry those hold the cotangents of the step's
 *   outputs (dL/dp', dL/dstate'); the kernel overwrites them with the
 *   cotangents of its inputs (dL/dp, dL/dstate). Vector states and their
 *   cotangents are component-major with `strides[c]`, as for the rule.
 * - `partials` (of the rule's element type) holds P = H + W values per
 *   chunk, H = number of hyperparameters, W = total number of weights:
 *   chunk c OVERWRITES `partials[c * P ... c * P + P)` with its own sums
 *   dL/dhyper (declaration order; 0 for const ones) then dL/dweights (each
 *   weights tensor row-major, in declaration order). The full gradient is
 *   the sum over all chunks; add them in chunk order for a result that does
 *   not depend on the number of threads (a chunk's sums depend only on the
 *   chunk: lanes are added in a fixed order).
 * - Otherwise as for rule kernels: chunks [begin, end), threads take
 *   disjoint ranges, `hypers` holds every hyperparameter's value. */
#define OPTIM_VJP_SYMBOL_PREFIX "optim_vjp_kernel_"

typedef void (*optim_vjp_kernel)(void *const *ptrs, const int64_t *lengths,
                                 const int64_t *strides, int64_t begin,
                                 int64_t end, const double *hypers,
                                 int64_t step, const void *const *weights,
                                 void *partials, const uint64_t *rng);

/* ---- Reverse mode of rules with tensor reductions (JIT only) ---------------
 * A rule with R > 0 tensor reductions compiled with CompileOptions::vjp has
 * no optim_vjp_kernel_<name>; its reverse mode is two kernels of the
 * optim_reduced_vjp_kernel type below, run around a combine by the runtime
 * (no artifact format carries VJP kernels: the ABI version is unchanged).
 * For one step, with rho[c * R + r] the reduced values the step ran with
 * (as passed to optim_rule_<name>), and x_r(i) the per-coordinate operand of
 * reduction r (slot order as in optim_reductions_<name>):
 *
 * 1. optim_vjp_reduced_kernel_<name>(ptrs, lengths, strides, begin, end,
 *        hypers, step, weights, partials, rho)
 *    is optim_vjp_kernel_<name> with the reduced values held constant: it
 *    overwrites the cotangents of p and the states with their cotangents
 *    through the per-coordinate paths, and chunk c OVERWRITES
 *    partials[c * P1 ... + P1), P1 = H + W + 2R: dL/dhyper (H), dL/dweights
 *    (W values), then for each r the chunk's sum of dL/drho_r (the
 *    coordinates' contributions), then for each r the number of the chunk's
 *    coordinates with x_r(i) == rho_r (max and min; 0 for the other kinds).
 *    All of the rule's element type, lanes added in a fixed order.
 * 2. The runtime adds the chunks' values in chunk order, per tensor or over
 *    all tensors for a global reduction (as the forward combine), into
 *    D_r and n_r, and sets the factor u_r that turns a coordinate's operand
 *    into its cotangent (step 3: dL/dx_r(i) = u_r times 1, x_r(i) or the
 *    tie indicator)
 *      u_r = D_r                       sum
 *            D_r / N                   mean (N coordinates reduced over)
 *            rho_r > 0 ? D_r / rho_r : 0          norm
 *            n_r > 0 ? D_r / n_r : 0              max, min (ties share it)
 * 3. optim_vjp_reductions_kernel_<name>(ptrs, lengths, strides, begin, end,
 *        hypers, step, weights, partials, ru)
 *    with ru[c * 2R + r] = rho_r and ru[c * 2R + R + r] = u_r of chunk c's
 *    tensor: each coordinate's cotangent of x_r(i),
 *      u_r (sum, mean),  u_r * x_r(i) (norm),  x_r(i) == rho_r ? u_r : 0
 *      (max, min),
 *    is propagated back through the ops that compute x_r(i) and ADDED to the
 *    cotangents of p and the states (which hold the results of step 1);
 *    chunk c OVERWRITES partials[c * P2 ... + P2), P2 = H + W + R, with this
 *    path's dL/dhyper and dL/dweights, then for each r the chunk's sum of
 *    what reaches rho_r (nonzero only when a reduction's operand is
 *    computed from rho_r: nested reductions, version 9). The gradient of
 *    the step is the sum of the kernels' hyperparameter and weight partials
 *    (add each in chunk order: the result does not depend on the number of
 *    threads).
 * Nested reductions of largest level L: step 3 runs L + 1 times, for
 * level l = L down to 0, with u_r of the reductions of level l only
 * (u_r = 0 for the others; rho_r as above). After the call for level l the
 * runtime adds, in chunk order, each chunk's last R partials of the
 * reductions of level < l to that chunk's sums D_r of step 2 (in double),
 * so that D_r holds every contribution before level(r)'s call computes u_r
 * from it. Level 0 alone (every rule without nested reductions) is one
 * call, as above.
 * The chunk table, hypers, step and weights are as for optim_vjp_kernel_. */
/* ---- Reverse mode of rules with axes (JIT only) ----------------------------
 * A rule with row or column states or reductions ("Axes") compiled with
 * CompileOptions::vjp has the VJP kernels above, on the FLAT chunk table of
 * rules without axes (one length per chunk), with row and column values
 * turned into per-coordinate ones:
 * - A row or column state is one of the S states: its pointers address one
 *   value per coordinate, the coordinate's row's (column's) value before
 *   the step and the coordinate's cotangent buffer. The runtime gives each
 *   coordinate its row's value, the cotangent of the row's new value to the
 *   coordinate that writes it in the forward pass (column 0 of the row; for
 *   a column, the matrix's first row) and 0 to the others (every coordinate
 *   computes the same new value), and after the step's last kernel sums the
 *   coordinates' cotangents over the row (in coordinate order, in double)
 *   into the row's cotangent. A tensor without coordinates keeps its rows'
 *   and columns' values, and their cotangents.
 * - Each row or column reduction, in body order, adds two pseudo-states
 *   after the S states (so that the kernels count S + 2X states): its
 *   result (value: the row's rho at the coordinate; the first kernel
 *   returns the coordinate's share of its cotangent, the second, given u
 *   of the row at the coordinate in that slot, returns what reaches rho
 *   from the operands of higher levels) and a tie slot (value unused; the
 *   first kernel returns the max / min tie indicator, the second 0). The
 *   runtime sums both over the row into D and n, sets u = D, D / C (row
 *   mean; / R for a column), D / rho (norm, rho > 0), D / n (max, min,
 *   n > 0), and runs the second kernel once per level as above, adding
 *   what reaches lower levels' results to their D.
 * - Their slots among the R reductions' rho, u and partials are unused
 *   (the kernels return 0 there), as the forward's are.
 * - A matrix function (newton_schulz) is counted among them with the same
 *   two pseudo-states, per coordinate without expansion: value NS(X) at the
 *   coordinate; the first kernel returns the coordinate's cotangent of it;
 *   the runtime maps each matrix's cotangents of NS(X) to those of X (the
 *   VJP of NS) and gives them to the second kernel's pass for its level in
 *   that slot, which seeds the operand with them (neither scaled nor
 *   masked); what comes back there from higher levels is added to the
 *   cotangents of NS(X) first. The runtime keeps each step's X and NS(X). */

#define OPTIM_REDUCED_VJP_SYMBOL_PREFIX "optim_vjp_reduced_kernel_"
#define OPTIM_REDUCTIONS_VJP_SYMBOL_PREFIX "optim_vjp_reductions_kernel_"

typedef void (*optim_reduced_vjp_kernel)(
    void *const *ptrs, const int64_t *lengths, const int64_t *strides,
    int64_t begin, int64_t end, const double *hypers, int64_t step,
    const void *const *weights, void *partials, const double *reduced,
    const uint64_t *rng);


/* ---- QP layers (version 2) -------------------------------------------------
 * The batched QP solver of `optim.qp` (docs/qp.md), implemented by the
 * runtime (runtime/lib/QPCApi.cpp) and called by compiled layers and foreign
 * callers. For a batch of `batch` problems
 *   minimize 1/2 z^T Q z + q^T z  subject to  A z = b,  G z <= h
 * with n variables, m equalities and p inequalities. Operands are row-major
 * arrays of the element type `dtype`: Q [n, n] (NULL: 0, a linear program),
 * q [n], A [m, n], b [m] (NULL iff m = 0), G [p, n], h [p] (NULL iff p = 0).
 * Bit i of `batched` (OPTIM_QP_BATCHED_Q ... _h) set: operand i holds `batch`
 * consecutive copies; clear: one copy shared by the batch, whose gradient is
 * summed over the batch. Outputs: z [batch, n], nu [batch, m],
 * lam [batch, p], status [batch] (OPTIM_QP_SOLVED, ...), iterations [batch]
 * (may be NULL). Gradient outputs have the operand's layout; NULL: not
 * wanted. Incoming gradients dz, dnu, dlam: [batch, n|m|p], NULL: zero.
 * Functions return 0, or -1 with a message in optim_qp_error(solver).
 * optim_qp_backward uses the factorization kept by the last forward call on
 * the same solver, whose operands must be passed again, unchanged. */
#define OPTIM_QP_SOLVED 0
#define OPTIM_QP_ITERATION_LIMIT 1
#define OPTIM_QP_PRIMAL_INFEASIBLE 2
#define OPTIM_QP_DUAL_INFEASIBLE 3
#define OPTIM_QP_NUMERICAL_ERROR 4

#define OPTIM_QP_F32 0
#define OPTIM_QP_F64 1

#define OPTIM_QP_BATCHED_Q 1u
#define OPTIM_QP_BATCHED_q 2u
#define OPTIM_QP_BATCHED_A 4u
#define OPTIM_QP_BATCHED_b 8u
#define OPTIM_QP_BATCHED_G 16u
#define OPTIM_QP_BATCHED_h 32u

typedef struct optim_qp_problem {
  int32_t dtype; /* OPTIM_QP_F32 or OPTIM_QP_F64 */
  uint32_t batched;
  int64_t batch, n, m, p;
  const void *Q, *q, *A, *b, *G, *h;
} optim_qp_problem;

typedef struct optim_qp_solver optim_qp_solver;

/* ---- Compiled layers (version 4) ------------------------------------------
 * A `layer NAME` whose outputs are results of its qp compiles
 * (optim-lower-layers) to the functions that compute the qp's operands from
 * the layer's inputs and weights, and their vector-Jacobian product; the
 * runtime's optim::Layer calls them around the solver above.
 *
 *   void optim_layer_<name>_data(const void *const *inputs,
 *                                const void *const *weights, int64_t batch,
 *                                void *const *data);
 *   void optim_layer_<name>_vjp(const void *const *inputs,
 *                               const void *const *weights, int64_t batch,
 *                               const void *const *ddata,
 *                               void *const *dinputs, void *const *dweights);
 *
 * - inputs[i]: input i of `batch` elements, [batch, shape...]; weights[w]:
 *   weights tensor w, shared; row-major, the layer's element type.
 * - data[k]: the k-th present operand of the qp in the order Q, q, A, b, G,
 *   h. An operand that depends on no input is written once (shared), the
 *   others `batch` times ([batch, shape...]).
 * - ddata[k]: cotangents in the same layout (a shared operand's summed over
 *   the batch, as optim_qp_backward gives it). The vjp OVERWRITES dinputs[i]
 *   ([batch, shape...]) and dweights[w] (summed over the batch); every
 *   pointer must be valid. */
#define OPTIM_LAYER_SYMBOL_PREFIX "optim_layer_"

typedef void (*optim_layer_data_fn)(const void *const *inputs,
                                    const void *const *weights, int64_t batch,
                                    void *const *data);
typedef void (*optim_layer_vjp_fn)(const void *const *inputs,
                                   const void *const *weights, int64_t batch,
                                   const void *const *ddata,
                                   void *const *dinputs,
                                   void *const *dweights);

/* ---- GPU layer kernels -----------------------------------------------------
 * `optimc LAYER.optim --emit=cubin` (optim-lower-layers-to-gpu) makes four
 * kernels; the layer manifest (optim/LayerManifest.h) gives the launch, and
 * optim::qpblock::kernelLayout (optim/QPBlock.h) the workspace's layout.
 * Every argument is a device pointer unless said otherwise.
 *
 *   optim_layer_<name>_qp(inputs..., weights..., z, nu, lam, status,
 *                         iterations, work)
 *     grid = batch, block = the manifest's threads, its shared_bytes of
 *     dynamic shared memory. Block e writes z[e], nu[e], lam[e] (the
 *     layer's type), status[e], iterations[e] (int32), and uses
 *     work + e * work_doubles (float64), which keeps what the backward needs.
 *   optim_layer_<name>_qp_grad(gz, gnu, glam, dops, work)
 *     the same launch, after a forward whose problems were all solved; g*
 *     [batch, ...] of the layer's type or null (zero); writes the operands'
 *     cotangents of problem e to dops + e * data_doubles (float64).
 *   optim_layer_<name>_qp_reduce(dops, dshared, int64_t batch)
 *     any launch; dshared [data_doubles]: shared operands' cotangents summed
 *     over the batch.
 *   optim_layer_<name>_qp_vjp(inputs..., weights..., dops, dshared,
 *                             dinputs..., dweights..., int64_t batch)
 *     any launch; overwrites every dinputs[i] and dweights[w] (as
 *     optim_layer_<name>_vjp). */

/* tol <= 0: the default, 1e-8 (f32 problems are solved in f64 arithmetic,
 * rounded once at the end); threads 0: one per
 * hardware thread, at most 1024. NULL on bad arguments (max_iter < 0), with
 * the message in optim_qp_error(NULL). A handle destroyed (or destroyed
 * twice) is refused by every function, optim_qp_error(handle) saying so.
 * A solver is used by one thread at a time, except that optim_qp_destroy may
 * run while another thread is inside a call on it: it waits for that call
 * to return, and calls begun after it has begun are refused (as optim.h). */
optim_qp_solver *optim_qp_create(double tol, int64_t max_iter,
                                 int32_t threads);
void optim_qp_destroy(optim_qp_solver *solver);
const char *optim_qp_error(const optim_qp_solver *solver);
int optim_qp_forward(optim_qp_solver *solver, const optim_qp_problem *problem,
                     void *z, void *nu, void *lam, int32_t *status,
                     int32_t *iterations);
int optim_qp_backward(optim_qp_solver *solver,
                      const optim_qp_problem *problem, const void *dz,
                      const void *dnu, const void *dlam, void *dQ, void *dq,
                      void *dA, void *db, void *dG, void *dh);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPTIM_KERNELABI_H */
