import ZeroComm
import ZeroTensor

// Adafactor's equations as transforms (torch's `_single_tensor_adafactor`, per tensor, step t):
// ```
// rho = min(lr, 1/sqrt(t)) ; alpha = max(eps2, ||p|| / sqrt(numel)) * rho    ScaleByRelativeStep
// p *= f32(1 - lr*wd)                                                          Masked(DecayWeights)
// b = t^beta2Decay ; matrix [R, C]: row_var = lerp(row_var, sum_j g^2 / C, b)  ScaleByFactoredRMS
//   col_var = lerp(col_var, sum_i g^2 / R, b) ; est_ij = row_var_i col_var_j / max(mean(row_var), eps1)
//   vector: var = lerp(var, g*g, b); est = var ; u = g / sqrt(max(est, eps1^2))
// p = fma(u, f32(-alpha / max(1, ||u|| / (sqrt(numel) * d))), p)               ClipByBlockRMS
// ```
// Every whole-tensor statistic is an exact integer sum (`ExactSquareSum`) over the pieces that
// the ranks hold, so the bits do not depend on how the unit is cut.

/// The unit's tensors (sorted, disjoint, unit coordinates) and which piece of each this shard
/// (`offset ..< offset + count`) holds.
public struct TensorPieces: Sendable {
    public let tensors: [ParameterShape]
    public let offset: Int
    public let count: Int
    public init(tensors: [ParameterShape], offset: Int, count: Int) {
        self.tensors = tensors
        self.offset = offset
        self.count = count
    }

    /// Shard-relative range of tensor k's elements held here (may be empty).
    public func piece(_ k: Int) -> Range<Int> {
        let r = tensors[k].range.clamped(to: offset ..< offset + count)
        return (r.lowerBound - offset) ..< (r.upperBound - offset)
    }
    /// Index within tensor k of the first element of its piece.
    func first(_ k: Int) -> Int { piece(k).lowerBound + offset - tensors[k].range.lowerBound }

    /// Largest |x| of each tensor's piece of `xs`, then over all ranks.
    func maxima(_ xs: UnsafeMutableBufferPointer<Float>, _ communicator: (any Communicator)?) throws -> [Double] {
        try ExactSquareSum.maxOverRanks(tensors.indices.map { ExactSquareSum.maxAbs(xs[piece($0)]) }, communicator)
    }

    /// ||x||^2 of each whole tensor (exact, over all ranks), as Double.
    func squareNorms(_ xs: UnsafeMutableBufferPointer<Float>, _ communicator: (any Communicator)?) throws -> [Double] {
        let scales = try maxima(xs, communicator).map(ExactSquareSum.Scale.init(maxAbs:))
        var sums = ExactSquareSum.Sums(count: tensors.count)
        for k in tensors.indices { for i in piece(k) { sums.add(scales[k].term(xs[i]), at: k) } }
        try sums.sumOverRanks(communicator)
        return tensors.indices.map { scales[$0].value(sums[$0]) }
    }
}

/// Relative step size: each tensor's update is scaled by -alpha = -max(eps2, rms(p)) * rho,
/// set as the tensor's pending factor. Reads the parameters, so it comes before weight decay.
public final class ScaleByRelativeStep: GradientTransform {
    public let pieces: TensorPieces, eps2: Double
    public init(pieces: TensorPieces, eps2: Double) {
        self.pieces = pieces
        self.eps2 = eps2
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard u.segmentScales == nil, u.divisor == nil else {
            throw OptimizerError("ScaleByRelativeStep must be the first scaling transform")
        }
        let rho = min(u.learningRate, 1 / cPow(Double(u.step), 0.5))
        let norms = try pieces.squareNorms(u.params, u.communicator)
        u.segmentScales = pieces.tensors.indices.map { k in
            let n = Double(pieces.tensors[k].range.count)
            let alpha = max(eps2, Float(norms[k].squareRoot()).asDouble / cPow(n, 0.5)) * rho
            return SegmentScale(range: pieces.piece(k), numerator: -alpha)
        }
    }
}

/// Adafactor's second moment: factored (row and column variances) for matrices, per element
/// for vectors; the update becomes g / sqrt(max(est, eps1^2)). The variances of every tensor
/// of the unit live on every rank (replicated), updated identically from the combined sums.
public final class ScaleByFactoredRMS: GradientTransform {
    public let pieces: TensorPieces
    public let beta2Decay: Double, eps1: Double
    /// Where tensor k's variances start in `variance` (R rows then C columns, or one per element).
    let offsets: [Int]
    public let variance: FlatBuffer<Float>

    public init(pieces: TensorPieces, beta2Decay: Double, eps1: Double, ledger: MemoryLedger? = nil) {
        self.pieces = pieces
        self.beta2Decay = beta2Decay
        self.eps1 = eps1
        var offsets: [Int] = [], total = 0
        for s in pieces.tensors {
            offsets.append(total)
            total += s.isMatrix ? s.rows + s.cols : s.range.count
        }
        self.offsets = offsets
        variance = FlatBuffer(count: total, category: .optimizerState, ledger: ledger)
    }

    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        let tensors = pieces.tensors, g = u.values, st = variance.pointer
        let oneMinusBeta2 = Float(cPow(Double(u.step), beta2Decay))
        let eps1f = Float(eps1), eps1Squared = Float(eps1 * eps1)
        let small = abs(oneMinusBeta2) < 0.5
        @inline(__always) func lerp(_ a: Float, _ b: Float) -> Float {
            small ? a.addingProduct(oneMinusBeta2, b - a) : b.addingProduct(oneMinusBeta2 - 1, b - a)
        }
        // Row and column sums of g^2 (matrices) or g itself (vectors, as bit patterns: exactly
        // one rank holds each element, the others add zero), over all ranks.
        let scales = try pieces.maxima(g, u.communicator).map(ExactSquareSum.Scale.init(maxAbs:))
        var sums = ExactSquareSum.Sums(count: variance.count)
        for k in tensors.indices {
            let s = tensors[k], r = pieces.piece(k), at = offsets[k], first = pieces.first(k)
            for i in r {
                let j = first + i - r.lowerBound
                if s.isMatrix {
                    let term = scales[k].term(g[i])
                    sums.add(term, at: at + j / s.cols)
                    sums.add(term, at: at + s.rows + j % s.cols)
                } else {
                    sums.add(UInt64(g[i].bitPattern), at: at + j)
                }
            }
        }
        try sums.sumOverRanks(u.communicator)

        for k in tensors.indices {
            let s = tensors[k], r = pieces.piece(k), at = offsets[k], first = pieces.first(k)
            if s.isMatrix {
                let R = s.rows, C = s.cols
                for i in 0..<(R + C) {
                    let norm = Float(scales[k].value(sums[at + i]).squareRoot())
                    st[at + i] = lerp(st[at + i], (norm * norm) / Float(i < R ? C : R))
                }
                var rowSum = 0.0
                for i in 0..<R { rowSum += Double(st[at + i]) }
                let rowMean = max(Float(rowSum / Double(R)), eps1f)
                for i in r {
                    let j = first + i - r.lowerBound
                    let est = max((st[at + j / C] * st[at + R + j % C]) / rowMean, eps1Squared)
                    g[i] = (1 / est.squareRoot()) * g[i]
                }
            } else {
                for j in 0..<s.range.count {
                    let x = Float(bitPattern: UInt32(truncatingIfNeeded: sums[at + j]))
                    st[at + j] = lerp(st[at + j], x * x)
                }
                for i in r { g[i] = (1 / max(st[at + first + i - r.lowerBound], eps1Squared).squareRoot()) * g[i] }
            }
        }
    }
}

/// Update clipping by block RMS: each tensor's factor is divided by max(1, rms(u) / d).
public final class ClipByBlockRMS: GradientTransform {
    public let pieces: TensorPieces, threshold: Double
    public init(pieces: TensorPieces, threshold: Double) {
        self.pieces = pieces
        self.threshold = threshold
    }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard var scales = u.segmentScales, scales.count == pieces.tensors.count else {
            throw OptimizerError("ClipByBlockRMS needs per-tensor factors (ScaleByRelativeStep) first")
        }
        let norms = try pieces.squareNorms(u.values, u.communicator)
        for k in scales.indices {
            let n = Double(pieces.tensors[k].range.count)
            scales[k].denominator *= max(1.0, Float(norms[k].squareRoot()).asDouble / (cPow(n, 0.5) * threshold))
        }
        u.segmentScales = scales
    }
}

extension Recipes {
    /// torch.optim.Adafactor over the tensors of `pieces`. Weight decay is per tensor in torch
    /// (param groups): a tensor decays if the first element of its piece is in `decaySegments`.
    public static func adafactor(_ config: OptimizerConfig, pieces: TensorPieces, decaySegments: [Range<Int>],
                                 ledger: MemoryLedger? = nil) -> Chain {
        let decaying = pieces.tensors.indices.map(pieces.piece).filter { piece in
            !piece.isEmpty && decaySegments.contains { $0.contains(piece.lowerBound) }
        }
        return Chain([
            ScaleByRelativeStep(pieces: pieces, eps2: config.adafactorEps2),
            ScaleByFactoredRMS(pieces: pieces, beta2Decay: config.beta2Decay,
                               eps1: config.adafactorEps1 ?? Double(Float.ulpOfOne), ledger: ledger),
            ClipByBlockRMS(pieces: pieces, threshold: config.clipThreshold),
            Masked(DecayWeights(weightDecay: config.weightDecay), segments: decaying),
        ])
    }
}
