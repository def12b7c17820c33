import CZeroKernels

extension Kernels {
    /// LayerNorm epsilon, as in GPT-2 (Hugging Face `layer_norm_epsilon`).
    public static let layerNormEpsilon: Float = 1e-5

    /// out[N, C] = (inp - mean) * rstd * weight + bias per row; saves mean[N] and rstd[N] for backward.
    /// Variance is the biased one (divide by C), as torch.nn.LayerNorm. Row sums use 8 running
    /// lane sums added in lane order (C kernel, elementwise.h).
    public static func layerNormForward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int
    ) {
        zt_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, layerNormEpsilon)
    }

    /// dinp[N, C] += dx; dweight[C] += sum_n norm * dout; dbias[C] += sum_n dout.
    public static func layerNormBackward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, N: Int, C: Int
    ) {
        zt_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C)
    }
}
