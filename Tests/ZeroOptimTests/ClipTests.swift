import Foundation
import Testing
import ZeroOptim

struct ClipFixture: Decodable {
    var sizes: [Int]
    var seed: Int
    var scale: Float
    var special: [Double]
    var max_norm: Float
    var torch_total_norm: UInt32
    var sum_of_squares: String
    var clipped: [UInt32]

    var units: [[Float]] {
        var flat = Inputs.gradient(seed: seed, step: 1, count: sizes.reduce(0, +)).map { $0 * scale }
        flat[Int(special[0])] = Float(special[1])
        var out: [[Float]] = [], at = 0
        for s in sizes { out.append(Array(flat[at..<(at + s)])); at += s }
        return out
    }
}

/// Block sums of unit shards for N simulated ranks, added sequentially in (unit, rank, block) order
/// exactly as `GlobalNorm.norm(unitShards:communicator:)` does after its all-gathers.
func partitionedSumOfSquares(_ units: [[Float]], ranks: Int) -> Double {
    var total = 0.0
    for u in units {
        let chunk = GlobalNorm.blockSize * ranks
        let padded = (u.count + chunk - 1) / chunk * chunk
        var full = u + [Float](repeating: 0, count: padded - u.count)
        let shard = padded / ranks
        var gathered: [Double] = []
        full.withUnsafeMutableBufferPointer { f in
            for r in 0..<ranks {
                var sums = [Double](repeating: .nan, count: shard / GlobalNorm.blockSize)
                sums.withUnsafeMutableBufferPointer {
                    GlobalNorm.sumsOfSquares(UnsafeBufferPointer(rebasing: f[(r * shard)..<((r + 1) * shard)]), into: $0)
                }
                gathered += sums
            }
        }
        for x in gathered { total += x }
    }
    return total
}

@Suite("Global-norm clipping")
struct ClipTests {
    @Test func matchesTorchClipGradNorm() throws {
        let f: ClipFixture = try loadFixture("clip", as: ClipFixture.self)
        let units = f.units
        // Our fp64 definition, computed independently in Python: bit-exact.
        var blockSums: [Double] = []
        for u in units {
            var sums = [Double](repeating: 0, count: GlobalNorm.blockCount(u.count))
            u.withUnsafeBufferPointer { up in sums.withUnsafeMutableBufferPointer { GlobalNorm.sumsOfSquares(up, into: $0) } }
            blockSums += sums
        }
        let sum = blockSums.withUnsafeBufferPointer { GlobalNorm.combine($0) }
        #expect(sum.bitPattern == UInt64(f.sum_of_squares, radix: 16)!)
        let flatUnits = units.flatMap { $0 }
        let norm = flatUnits.withUnsafeBufferPointer { all in
            var at = 0
            let parts = units.map { u in defer { at += u.count }; return UnsafeBufferPointer(rebasing: all[at..<(at + u.count)]) }
            return GlobalNorm.norm(units: parts)
        }
        #expect(norm == sum.squareRoot())
        // torch's float32 norm-of-norms agrees to float32 rounding.
        let torchNorm = Float(bitPattern: f.torch_total_norm)
        #expect(ulpDistance(Float(norm), torchNorm) <= 2)
        // From torch's own norm the coefficient and the clipped gradients are bit-exact.
        let c = GlobalNorm.clipCoefficient(totalNorm: torchNorm, maxNorm: f.max_norm)
        var flat = units.flatMap { $0 }
        flat.withUnsafeMutableBufferPointer { GlobalNorm.scale($0, by: c) }
        #expect(flat.map(\.bitPattern) == f.clipped)
        // Through `clip`, with our norm: within an ulp.
        var mine = units.flatMap { $0 }
        let result = try mine.withUnsafeMutableBufferPointer { try GlobalNorm.clip([$0], norm: norm, maxNorm: f.max_norm) }
        #expect(result.isFinite && result.clipped && result.norm == norm)
        #expect(zip(mine, floats(f.clipped)).allSatisfy { ulpDistance($0, $1) <= 1 })
    }

    @Test(arguments: [1, 2, 4, 8])
    func rankCountIndependent(_ ranks: Int) throws {
        let units: [[Float]] = [700, 5000, 33, 2048, 9999].enumerated().map { k, n in
            Inputs.gradient(seed: 60 + k, step: 1, count: n).map { $0 * Float(k + 1) }
        }
        let single = units.reduce(0.0) { acc, u in  // sequential over every block in layout order
            var sums = [Double](repeating: 0, count: GlobalNorm.blockCount(u.count))
            u.withUnsafeBufferPointer { up in sums.withUnsafeMutableBufferPointer { GlobalNorm.sumsOfSquares(up, into: $0) } }
            return sums.reduce(acc, +)
        }
        #expect(partitionedSumOfSquares(units, ranks: ranks).bitPattern == single.bitPattern)
    }

    @Test func nonFiniteNormSkipsOrThrows() throws {
        var g: [Float] = [1, 2, .infinity, 4]
        let norm = g.withUnsafeBufferPointer { GlobalNorm.norm(units: [$0]) }
        #expect(!norm.isFinite)
        let r = try g.withUnsafeMutableBufferPointer { try GlobalNorm.clip([$0], norm: norm, maxNorm: 1) }
        #expect(!r.isFinite && !r.clipped)
        #expect(g == [1, 2, .infinity, 4])
        #expect(throws: NonFiniteGradientError.self) {
            try g.withUnsafeMutableBufferPointer { try GlobalNorm.clip([$0], norm: .nan, maxNorm: 1, nonFinite: .error) }
        }
    }

    @Test func coefficientIsClampedAndFloat32() {
        #expect(GlobalNorm.clipCoefficient(totalNorm: 0.5, maxNorm: 1) == 1)
        let c = GlobalNorm.clipCoefficient(totalNorm: 3, maxNorm: 1)
        #expect(c == (1 / (Float(3) + Float(1e-6))) * 1)
        #expect(GlobalNorm.clipCoefficient(totalNorm: .nan, maxNorm: 1).isNaN)
    }
}
