import CZeroKernels

/// bfloat16 as a 16-bit pattern: the top half of an IEEE float32.
///
/// Conversion from Float rounds to nearest even exactly as `torch.bfloat16`
/// (docs/precision.md, "The rounding rule"): NaN stays a quiet NaN with its sign, overflow rounds
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

// MARK: - Bulk conversions (C kernels, AVX2 or AVX-512: elementwise.h)

extension BFloat16 {
    /// Rounds every float to a bf16 pattern (round to nearest even, NaN kept quiet with its
    /// sign), bit-identical to the scalar `round(_:)`. `dst.count` must equal `src.count`.
    public static func round(_ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableBufferPointer<UInt16>) {
        precondition(dst.count == src.count, "bf16 round: \(src.count) values into \(dst.count) slots")
        guard src.count > 0 else { return }
        zt_bf16_round(src.baseAddress!, dst.baseAddress!, src.count)
    }

    /// Widens bf16 patterns to floats (exact: a 16-bit shift).
    public static func widen(_ src: UnsafeBufferPointer<UInt16>, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(dst.count == src.count, "bf16 widen: \(src.count) values into \(dst.count) slots")
        guard src.count > 0 else { return }
        zt_bf16_widen(src.baseAddress!, dst.baseAddress!, src.count)
    }

    /// Replaces every float by the nearest bf16 value (round then widen), in place.
    public static func quantize(inPlace buffer: UnsafeMutableBufferPointer<Float>) {
        guard buffer.count > 0 else { return }
        zt_bf16_quantize(buffer.baseAddress!, buffer.count)
    }

    /// Eight float bit patterns to eight bf16 patterns (the scalar rule, lane-wise).
    @inline(__always)
    static func round8(_ u: SIMD8<UInt32>) -> SIMD8<UInt16> {
        let rounded = (u &+ 0x7FFF &+ ((u &>> 16) & 1)) &>> 16
        let nan = (u & 0x7FFF_FFFF) .> 0x7F80_0000
        let quiet = (u &>> 16) | 0x40
        return SIMD8<UInt16>(truncatingIfNeeded: rounded.replacing(with: quiet, where: nan))
    }
}
