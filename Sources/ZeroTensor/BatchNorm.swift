/// BatchNorm over the rows of x [N, C] (per channel c), with its statistics taken over a batch
/// larger than one call sees: the global batch of a step, cut into micro-batches.
///
/// The statistics are computed in fp64 from per-micro-batch partials combined in a fixed
/// order (`BatchNormStatistics`), so the result depends on the micro-batches and their order
/// only, never on which process computed which partial. The per-element transforms round
/// once to fp32. Epsilon and momentum are torch.nn.BatchNorm1d's defaults.
public enum BatchNorm {
    public static let epsilon = 1e-5
    public static let momentum = 0.1

    /// Per-channel mean[C] and centred sum of squares m2[C] of x [N, C], in fp64, summed in
    /// row order (two passes: the mean, then the squares about it).
    public static func partialStatistics(inp: UnsafePointer<Float>, N: Int, C: Int,
                                         mean: UnsafeMutablePointer<Double>, m2: UnsafeMutablePointer<Double>) {
        mean.update(repeating: 0, count: C)
        m2.update(repeating: 0, count: C)
        for n in 0..<N {
            let row = inp + n * C
            for c in 0..<C { mean[c] += Double(row[c]) }
        }
        for c in 0..<C { mean[c] /= Double(N) }
        for n in 0..<N {
            let row = inp + n * C
            for c in 0..<C { let d = Double(row[c]) - mean[c]; m2[c] += d * d }
        }
    }

    /// Per-channel sums of dout and of dout * xhat over the N rows, in fp64, in row order:
    /// the two batch reductions BatchNorm's backward needs (they are also dbeta and dgamma).
    public static func partialGradientSums(dout: UnsafePointer<Float>, xhat: UnsafePointer<Float>, N: Int, C: Int,
                                           sumDout: UnsafeMutablePointer<Double>, sumDoutXhat: UnsafeMutablePointer<Double>) {
        sumDout.update(repeating: 0, count: C)
        sumDoutXhat.update(repeating: 0, count: C)
        for n in 0..<N {
            let dy = dout + n * C, xh = xhat + n * C
            for c in 0..<C {
                sumDout[c] += Double(dy[c])
                sumDoutXhat[c] += Double(dy[c]) * Double(xh[c])
            }
        }
    }

    /// out = xhat * weight + bias with xhat = (x - mean) * rstd (fp64, rounded once to fp32 and
    /// saved for backward). `out` may alias `inp`.
    public static func forward(out: UnsafeMutablePointer<Float>, xhat: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                               mean: UnsafePointer<Double>, rstd: UnsafePointer<Double>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, N: Int, C: Int) {
        for n in 0..<N {
            let x = inp + n * C, xh = xhat + n * C, y = out + n * C
            for c in 0..<C {
                let h = Float((Double(x[c]) - mean[c]) * rstd[c])
                xh[c] = h
                y[c] = h * weight[c] + bias[c]
            }
        }
    }

    /// Backward over a micro-batch of a larger batch whose per-channel means of dout and of
    /// dout * xhat are `meanDout` and `meanDoutXhat` (over all M rows of that batch):
    /// dinp = weight * rstd * (dout - meanDout - xhat * meanDoutXhat), in fp64, rounded once;
    /// dweight[c] += sum_n dout * xhat and dbias[c] += sum_n dout over this call's rows
    /// (fp64 sums, rounded once, then added). `dinp` may alias `dout`.
    public static func backward(dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
                                dout: UnsafePointer<Float>, xhat: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rstd: UnsafePointer<Double>, meanDout: UnsafePointer<Double>, meanDoutXhat: UnsafePointer<Double>,
                                N: Int, C: Int) {
        var sumDout = [Double](repeating: 0, count: C), sumDoutXhat = [Double](repeating: 0, count: C)
        sumDout.withUnsafeMutableBufferPointer { s in
            sumDoutXhat.withUnsafeMutableBufferPointer { sx in
                partialGradientSums(dout: dout, xhat: xhat, N: N, C: C, sumDout: s.baseAddress!, sumDoutXhat: sx.baseAddress!)
                for c in 0..<C {
                    dweight[c] += Float(sx[c])
                    dbias[c] += Float(s[c])
                }
            }
        }
        for n in 0..<N {
            let dy = dout + n * C, xh = xhat + n * C, dx = dinp + n * C
            for c in 0..<C {
                let scale = Double(weight[c]) * rstd[c]
                dx[c] = Float(scale * (Double(dy[c]) - meanDout[c] - Double(xh[c]) * meanDoutXhat[c]))
            }
        }
    }
}

/// Mean and biased variance of a batch from the partials of its parts, combined in the order
/// given (Chan et al.'s pairwise update, fp64): for parts a (n_a rows) and b,
/// delta = mean_b - mean_a, mean = mean_a + delta * n_b / n, m2 = m2_a + m2_b + delta^2 n_a n_b / n.
/// Folding the parts left to right in a fixed order gives the same bits wherever they came from.
public struct BatchNormStatistics: Sendable {
    public private(set) var count = 0
    public private(set) var mean: [Double]
    public private(set) var m2: [Double]

    public init(channels: Int) {
        mean = [Double](repeating: 0, count: channels)
        m2 = [Double](repeating: 0, count: channels)
    }

    /// Adds the next part: `rows` rows with per-channel `mean` and centred sum of squares `m2`.
    public mutating func add(rows: Int, mean partMean: UnsafeBufferPointer<Double>, m2 partM2: UnsafeBufferPointer<Double>) {
        precondition(partMean.count == mean.count && partM2.count == m2.count, "channel count differs")
        let na = Double(count), nb = Double(rows), n = na + nb
        for c in mean.indices {
            let delta = partMean[c] - mean[c]
            mean[c] += delta * (nb / n)
            m2[c] += partM2[c] + delta * delta * (na * nb / n)
        }
        count += rows
    }

    /// The biased variance (divide by the row count), which normalizes in training.
    public var variance: [Double] { m2.map { $0 / Double(count) } }
    /// The unbiased variance (divide by count - 1), which the running average tracks (as torch).
    public var unbiasedVariance: [Double] { m2.map { $0 / Double(count - 1) } }
    /// 1 / sqrt(variance + epsilon) per channel.
    public var rstd: [Double] { variance.map { 1 / ($0 + BatchNorm.epsilon).squareRoot() } }
}
