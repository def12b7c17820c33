import Foundation

/// A small, fast, seedable generator: SplitMix64 (Steele, Lea, Flood 2014).
///
/// Parameter initialization keys one generator per tensor with `(seed, name)`,
/// so every value depends only on the seed and the tensor's name: not on the
/// rank count, the sharding, or the order in which units are initialized.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    private var spareNormal: Double?

    public init(seed: UInt64) { state = seed }

    /// A generator keyed by a seed and a string (FNV-1a of its UTF-8 bytes, mixed once).
    public init(seed: UInt64, key: String) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        state = SeededGenerator.mix(seed ^ SeededGenerator.mix(h))
    }

    /// A generator keyed by a seed and a list of integers (used for data positions).
    public init(seed: UInt64, keys: [UInt64]) {
        var s = SeededGenerator.mix(seed)
        for k in keys { s = SeededGenerator.mix(s ^ SeededGenerator.mix(k &+ 0x9E37_79B9_7F4A_7C15)) }
        state = s
    }

    /// SplitMix64's output function: a bijective 64-bit mixer.
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SeededGenerator.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal by the Box-Muller transform: each pair of uniforms (u1, u2)
    /// gives sqrt(-2 ln(1-u1)) * (cos(2 pi u2), sin(2 pi u2)); the sine half is kept
    /// for the next call. Computed in Double, so results are the same on every
    /// platform whose libm is correctly rounded to within an ulp of Double
    /// (far below Float resolution).
    public mutating func nextNormal() -> Double {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        let u1 = nextUniform(), u2 = nextUniform()
        let r = (-2 * Foundation.log(1 - u1)).squareRoot()
        let theta = 2 * Double.pi * u2
        spareNormal = r * Foundation.sin(theta)
        return r * Foundation.cos(theta)
    }

    /// Fills `buffer` with normal(mean, std) values rounded to Float.
    public mutating func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float) {
        for i in buffer.indices { buffer[i] = Float(Double(mean) + Double(std) * nextNormal()) }
    }
}
