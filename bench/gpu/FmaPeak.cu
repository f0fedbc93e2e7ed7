//===- FmaPeak.cu - the card's fp32 FMA rate, measured -------------------===//
//
// The denominator of the learned rule's "% of the FMA peak" in
// bench/gpu/run.sh: a kernel that does nothing but fp32 fused multiply-adds,
// measured on the same card in the same run (clocks under load differ from
// the data sheet's boost clock). Each thread runs kFmaPeakChains independent
// chains, so that every scheduler always has an FMA ready despite the FMA
// latency (4 cycles): 16 chains x 8 warps per scheduler are far more than
// needed. b and c are arguments so that the compiler cannot fold the chains;
// the sum is stored so that it cannot drop them. Registers stay under 32 per
// thread (__launch_bounds__(256, 8)): 2,048 threads per SM, full occupancy.
//
// optim-gpu-learned (LearnedGpuBench.cpp) loads the cubin through the
// driver API and counts 2 * kFmaPeakChains * iters flops per thread; the two
// must agree on kFmaPeakChains. Compiled by prepare.sh (sm_80, sm_90) and by
// run.sh with the device machine's nvcc when it has one:
//   nvcc -cubin -arch=sm_90 -O3 -o fma_peak.sm_90.cubin FmaPeak.cu
//
//===----------------------------------------------------------------------===//

constexpr int kFmaPeakChains = 16;

extern "C" __global__ void __launch_bounds__(256, 8)
    optim_fma_peak(float *out, int iters, float b, float c) {
  float a[kFmaPeakChains];
#pragma unroll
  for (int k = 0; k < kFmaPeakChains; ++k)
    a[k] = float(threadIdx.x) * 1e-3f + float(k);
  // Unrolled so that the loop's counter and branch are a few percent of the
  // issued instructions.
#pragma unroll 8
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int k = 0; k < kFmaPeakChains; ++k)
      a[k] = fmaf(a[k], b, c);
  }
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kFmaPeakChains; ++k)
    sum += a[k];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}
