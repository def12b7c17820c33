import Foundation

extension Kernels {
    /// sqrt(2 / pi), the GELU tanh approximation's scale.
    static let geluScale: Float = 0.7978845608028654

    /// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's "gelu_new".
    public static func geluForward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let x = inp[i]
            let u = geluScale * (x + 0.044715 * x * x * x)
            out[i] = 0.5 * x * (1 + Foundation.tanh(u))
        }
    }

    /// dinp = dout * gelu'(inp); overwrites `dinp` (which may alias `dout`).
    public static func geluBackward(dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let x = inp[i]
            let u = geluScale * (x + 0.044715 * x * x * x)
            let th = Foundation.tanh(u)
            let sech2 = 1 - th * th
            let grad = 0.5 * (1 + th) + 0.5 * x * sech2 * geluScale * (1 + 3 * 0.044715 * x * x)
            dinp[i] = dout[i] * grad
        }
    }
}
