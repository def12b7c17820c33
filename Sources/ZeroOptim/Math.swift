#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// C's `pow` on doubles: what Python's `beta ** step` calls, so bias corrections match torch bit for bit.
@inline(__always) func cPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }

extension UnsafeMutableBufferPointer where Element == Float {
    /// The sub-buffer of `range` (no copy).
    @inline(__always) func part(_ range: Range<Int>) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: self[range])
    }
}

extension UnsafeBufferPointer where Element == Float {
    @inline(__always) func part(_ range: Range<Int>) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: self[range])
    }
}
