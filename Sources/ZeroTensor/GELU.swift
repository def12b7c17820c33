import CZeroKernels

extension Kernels {
    /// out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): GPT-2's "gelu_new".
    ///
    /// Computed as x * sigmoid(2u), the same function (0.5 (1 + tanh u) = 1 / (1 + e^-2u)),
    /// with a vector exp (Cody-Waite reduction, Cephes's degree-6 polynomial, about 1 ulp, inputs
    /// clamped to [-87.3, 88.3]); libm's tanhf stays scalar and cost a third of a gpt-small step.
    /// Agrees with the Double reference to ~2e-7 relative (see KernelTests.gelu). C kernel,
    /// AVX2 or AVX-512 (elementwise.h), bit-identical to the former Swift one (`SwiftKernels`).
    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        zt_gelu_forward(out, inp, n)
    }

    /// dinp = dout * gelu'(inp); overwrites `dinp` (which may alias `dout`).
    /// With s = sigmoid(2u): gelu' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    public static func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        zt_gelu_backward(dinp, inp, dout, n)
    }
}
