/// bfloat16 as a 16-bit pattern: the top half of an IEEE float32.
///
/// Conversion from Float rounds to nearest even exactly as `torch.bfloat16`
/// (REFERENCE.md section 5): NaN stays a quiet NaN with its sign, overflow rounds
/// to infinity, subnormals and signed zeros survive. Widening is a 16-bit shift.
public struct BFloat16: Sendable, Hashable, BitwiseCopyable {
    public var bitPattern: UInt16

    @inlinable public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    @inlinable public init(_ value: Float) { bitPattern = BFloat16.round(value) }

    @inlinable public var float: Float { Float(bitPattern: UInt32(bitPattern) << 16) }

    /// Round-to-nearest-even of a float32 to a bf16 pattern.
    @inlinable @inline(__always)
    public static func round(_ value: Float) -> UInt16 {
        let u = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x0040) }
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    /// The float32 nearest to `value` that a bf16 can hold (round then widen).
    @inlinable @inline(__always)
    public static func quantize(_ value: Float) -> Float {
        Float(bitPattern: UInt32(round(value)) << 16)
    }
}
