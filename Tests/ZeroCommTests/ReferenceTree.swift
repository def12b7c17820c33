import ZeroComm

/// The canonical order written out plainly, one element at a time, as the tests' oracle:
/// tree(lo, hi) = tree(lo, mid) + tree(mid, hi), mid = lo + largest power of two < hi - lo.
func referenceTree(_ values: [Float]) -> Float {
    func tree(_ lo: Int, _ hi: Int) -> Float {
        if hi - lo == 1 { return values[lo] }
        var p = 1
        while p * 2 < hi - lo { p *= 2 }
        return tree(lo, lo + p) + tree(lo + p, hi)
    }
    return tree(0, values.count)
}

/// Element-wise reference over per-rank vectors.
func referenceTree(ranks inputs: [[Float]]) -> [Float] {
    (0..<inputs[0].count).map { i in referenceTree(inputs.map { $0[i] }) }
}

/// Deterministic inputs of mixed magnitude (2^-20 ... 2^20, both signs), so that the
/// order of addition shows in the low bits.
func mixedInputs(count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678
    func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
    return (0..<count).map { _ in
        let mantissa = Float(next() % 1_000_000) / 1_000_000 + 0.5
        let exponent = Int(next() % 41) - 20
        let sign: Float = next() % 2 == 0 ? 1 : -1
        return sign * mantissa * Float(sign: .plus, exponent: exponent, significand: 1)
    }
}

func bfloat16Inputs(count: Int, seed: UInt64) -> [UInt16] {
    mixedInputs(count: count, seed: seed).map { UInt16(truncatingIfNeeded: ($0.bitPattern &+ 0x7FFF &+ (($0.bitPattern >> 16) & 1)) >> 16) }
}

func widen(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

func bits(_ xs: [Float]) -> [UInt32] { xs.map(\.bitPattern) }
