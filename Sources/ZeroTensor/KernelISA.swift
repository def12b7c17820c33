import CZeroKernels

/// Instruction set of the elementwise C kernels (GELU, LayerNorm, softmax, cross-entropy,
/// residual and bias adds, bf16 conversion). The package is built for haswell (AVX2 + FMA);
/// the AVX-512 copies are compiled per function and chosen at run time, so the binary still
/// runs on AVX2-only machines. Both give the same bits.
public enum KernelISA: String, Sendable, CaseIterable {
    case avx2, avx512

    init(code: Int32) { self = code == Int32(ZT_ISA_AVX512) ? .avx512 : .avx2 }
    var code: Int32 { self == .avx512 ? Int32(ZT_ISA_AVX512) : Int32(ZT_ISA_AVX2) }
}

extension Kernels {
    /// The set in use: the best the CPU runs, or AVX2 when the environment sets
    /// `ZERO_TRAIN_KERNELS=avx2`.
    public static var isa: KernelISA { KernelISA(code: zt_kernels_isa()) }

    /// The best set this CPU runs.
    public static var bestISA: KernelISA { KernelISA(code: zt_kernels_best_isa()) }

    /// Selects the kernels' instruction set for the whole process (tests and benchmarks);
    /// returns false, changing nothing, when the CPU lacks it.
    @discardableResult
    public static func setISA(_ isa: KernelISA) -> Bool { zt_kernels_set_isa(isa.code) == 0 }
}

extension Kernels {
    /// out[i] = e^inp[i] with exactly glibc expf's bits (the vector port the softmax and
    /// cross-entropy kernels use).
    public static func exp(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        zt_expf_array(out, inp, n)
    }
}
