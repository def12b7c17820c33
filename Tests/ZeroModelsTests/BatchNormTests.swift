import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// The BatchNorm kernels against torch.nn.BatchNorm1d in training mode
/// (Tests/Fixtures/make_norm_fixtures.py): the batch of 24 rows is cut into 4 parts, each part's
/// partial statistics and gradient sums are computed alone and combined in part order, as the
/// trainer combines micro-batches; the result must be torch's on the whole batch.
@Suite struct BatchNormKernelTests {
    /// The statistics of `x` ([parts x rows, C]) computed part by part and combined in part
    /// order, as the trainer combines micro-batches.
    static func combined(_ x: [Float], parts: Int, rows N: Int, channels C: Int) -> BatchNormStatistics {
        var stats = BatchNormStatistics(channels: C)
        for p in 0..<parts {
            var part = [Double](repeating: 0, count: 2 * C)
            part.withUnsafeMutableBufferPointer { b in
                BatchNorm.partialStatistics(inp: Array(x[p * N * C ..< (p + 1) * N * C]), N: N, C: C, mean: b.baseAddress!, m2: b.baseAddress! + C)
                stats.add(rows: N, mean: UnsafeBufferPointer(rebasing: b[0 ..< C]), m2: UnsafeBufferPointer(rebasing: b[C ..< 2 * C]))
            }
        }
        return stats
    }

    @Test func partsCombinedInOrderMatchTorchOnTheWholeBatch() throws {
        let file = try fixture("batchnorm.safetensors")
        let parts = meta(file, "parts")
        let x = try file.floats("x"), dy = try file.floats("dy")
        let weight = try file.floats("weight"), bias = try file.floats("bias")
        let C = weight.count, M = x.count / C, N = M / parts
        #expect(M == 24 && C == 5 && N * parts == M)

        let stats = Self.combined(x, parts: parts, rows: N, channels: C)
        #expect(stats.count == M)
        let mean = stats.mean, rstd = stats.rstd
        var y = [Float](repeating: 0, count: M * C), xhat = y
        for p in 0..<parts {
            let range = p * N * C ..< (p + 1) * N * C
            let slice = Array(x[range])
            var out = [Float](repeating: 0, count: N * C), xh = out
            BatchNorm.forward(out: &out, xhat: &xh, inp: slice, mean: mean, rstd: rstd, weight: weight, bias: bias, N: N, C: C)
            y.replaceSubrange(range, with: out)
            xhat.replaceSubrange(range, with: xh)
        }
        let yDiff = Difference(y, try file.floats("y"))
        #expect(yDiff.relL2 <= 1e-6 && yDiff.maxAbs <= 1e-5, "y: \(yDiff)")

        // Running statistics after one step from (0, 1): momentum 0.1, unbiased variance.
        let m = Float(BatchNorm.momentum)
        let runningMean = mean.map { m * Float($0) }
        let runningVar = stats.unbiasedVariance.map { (1 - m) + m * Float($0) }
        #expect(Difference(runningMean, try file.floats("running_mean")).relL2 <= 1e-6)
        #expect(Difference(runningVar, try file.floats("running_var")).relL2 <= 1e-6)

        // Backward: per-part gradient sums, summed in part order over all M rows.
        var sums = [Double](repeating: 0, count: 2 * C)
        for p in 0..<parts {
            var part = [Double](repeating: 0, count: 2 * C)
            part.withUnsafeMutableBufferPointer { b in
                BatchNorm.partialGradientSums(dout: Array(dy[p * N * C ..< (p + 1) * N * C]), xhat: Array(xhat[p * N * C ..< (p + 1) * N * C]),
                                              N: N, C: C, sumDout: b.baseAddress!, sumDoutXhat: b.baseAddress! + C)
            }
            for i in 0 ..< 2 * C { sums[i] += part[i] }
        }
        let meanDout = sums[0 ..< C].map { $0 / Double(M) }, meanDoutXhat = sums[C ..< 2 * C].map { $0 / Double(M) }
        var dx = [Float](repeating: 0, count: M * C), dweight = [Float](repeating: 0, count: C), dbias = dweight
        for p in 0..<parts {
            let range = p * N * C ..< (p + 1) * N * C
            var out = [Float](repeating: 0, count: N * C)
            BatchNorm.backward(dinp: &out, dweight: &dweight, dbias: &dbias, dout: Array(dy[range]), xhat: Array(xhat[range]), weight: weight,
                               rstd: rstd, meanDout: meanDout, meanDoutXhat: meanDoutXhat, N: N, C: C)
            dx.replaceSubrange(range, with: out)
        }
        let dxDiff = Difference(dx, try file.floats("dx"))
        #expect(dxDiff.relL2 <= 1e-5, "dx: \(dxDiff)")
        #expect(Difference(dweight, try file.floats("dweight")).relL2 <= 1e-6)
        #expect(Difference(dbias, try file.floats("dbias")).relL2 <= 1e-6)
        // The whole-batch formula is what makes parts couple: the per-part formula is not it.
        #expect(Difference(dx, dy).relL2 > 0.01)
        print("batchnorm kernels vs torch: y \(yDiff), dx \(dxDiff)")
    }

    /// Chan's combination of parts equals the statistics of the whole batch at once (to fp64
    /// rounding), and a channel far from zero keeps its small variance (no E[x^2] - E[x]^2 loss).
    @Test func combinedPartsEqualTheWholeBatch() {
        let N = 6, C = 2, parts = 4
        let x: [Float] = (0 ..< parts * N * C).map { i in i % 2 == 0 ? Float(i) * 0.25 : 10_000 + Float(i % 7) * 1e-2 }
        var whole = [Double](repeating: 0, count: 2 * C)
        whole.withUnsafeMutableBufferPointer { BatchNorm.partialStatistics(inp: x, N: parts * N, C: C, mean: $0.baseAddress!, m2: $0.baseAddress! + C) }
        let stats = Self.combined(x, parts: parts, rows: N, channels: C)
        for c in 0..<C {
            #expect(abs(stats.mean[c] - whole[c]) <= 1e-12 * abs(whole[c]))
            #expect(abs(stats.m2[c] - whole[C + c]) <= 1e-9 * whole[C + c])
        }
        #expect(stats.variance[1] > 1e-5 && stats.variance[1] < 1e-3)
    }
}
