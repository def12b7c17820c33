import ZeroComm
import ZeroTensor

/// torch.optim.Adafactor (torch >= 2.5) over whole tensors, whichever ranks hold their pieces:
/// the chain `ScaleByRelativeStep`, `ScaleByFactoredRMS`, `ClipByBlockRMS`, decoupled decay
/// (AdafactorTransforms.swift). The chain is the production path; Adafactor has no fused kernel.
///
/// Rank-count independence: every whole-tensor sum of squares (||p||, ||u||, row and column
/// sums) is an exact integer sum of per-element terms `trunc(x^2 * 2^(60 - 2e))`, e the
/// exponent of the tensor's largest |x| (taken over all ranks first). Integer addition is
/// exact, so per-rank partial sums combined over the ranks in any order give the same bits
/// however the tensor is cut, and the same as one rank holding it whole. The truncation
/// error is below 2^-60 of the largest square per element: results agree with torch (float32
/// reductions) to a few ulp, not bit for bit.
///
/// State: the factored variances of every matrix and the variance of every vector element of
/// the unit, on every rank (replicated; `OptimizerStateArray.isReplicated`). Every rank
/// updates all of it from the combined statistics, so it does not depend on the rank count
/// and a checkpoint reshards. Elements outside every tensor (padding) are left unchanged.
final class AdafactorOptimizer: ShardOptimizer {
    let config: OptimizerConfig
    let count: Int
    /// Other ranks hold other pieces of these tensors: statistics are combined over ranks.
    let sharded: Bool
    let chain: Chain
    let factored: ScaleByFactoredRMS
    private var update: [Float]

    init(config: OptimizerConfig, count: Int, decay: DecaySegments, shapes: [ParameterShape]?,
         shardOffset: Int, sharded: Bool, ledger: MemoryLedger?) throws {
        let shapes = shapes ?? [.vector(shardOffset ..< shardOffset + count)]
        var at = Int.min
        for s in shapes {
            guard s.range.lowerBound >= at, s.rows * s.cols == s.range.count, s.rows >= 1 else {
                throw OptimizerError("Adafactor: tensor shapes must be sorted, disjoint, with rows*cols == size (got \(s))")
            }
            at = s.range.upperBound
        }
        let shard = shardOffset ..< shardOffset + count
        if !sharded, let cut = shapes.first(where: { !$0.range.isEmpty && $0.range.clamped(to: shard) != $0.range }) {
            throw OptimizerError("Adafactor: tensor \(cut.range) is cut by the shard \(shard), and the optimizer was not told it is sharded across ranks")
        }
        self.config = config
        self.count = count
        self.sharded = sharded
        let pieces = TensorPieces(tensors: shapes, offset: shardOffset, count: count)
        chain = Recipes.adafactor(config, pieces: pieces, decaySegments: decay.runs.filter(\.decays).map(\.range), ledger: ledger)
        factored = chain.transforms.lazy.compactMap { $0 as? ScaleByFactoredRMS }.first!
        update = [Float](repeating: 0, count: count)
    }

    var state: [OptimizerStateArray] {
        [OptimizerStateArray(name: "factored_variance", parametersPerBlock: 1, bytesPerBlock: 4,
                             bytes: UnsafeMutableRawBufferPointer(factored.variance.pointer), isReplicated: true)]
    }
    var supportsResharding: Bool { true }

    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: master, gradient: gradient, working: working, context: context)
        if sharded && context.communicator == nil { throw OptimizerError("Adafactor over a sharded unit needs the step's communicator") }
        try update.withUnsafeMutableBufferPointer { values in
            _ = values.initialize(from: gradient)
            var u = ShardUpdate(params: master, values: values, step: context.step, learningRate: context.learningRate)
            u.communicator = sharded ? context.communicator : nil
            try chain.update(&u, range: 0..<count)
            applyUpdates(u)
        }
        writeBack(master, working)
    }
}

/// Sums of squares that do not depend on how the elements are split over ranks (see
/// `AdafactorOptimizer`): fixed-point terms scaled by the largest |x|, added as 128-bit integers.
enum ExactSquareSum {
    /// Largest |x|, NaN if any x is NaN.
    static func maxAbs<S: Sequence<Float>>(_ xs: S) -> Double {
        var m: Float = 0
        for x in xs { let a = abs(x); if a > m || a.isNaN { m = a }; if m.isNaN { break } }
        return Double(m)
    }

    /// Element-wise maximum over ranks (NaN wins), through an all-gather.
    static func maxOverRanks(_ local: [Double], _ communicator: (any Communicator)?) throws -> [Double] {
        guard let communicator, communicator.size > 1 else { return local }
        var all = [Double](repeating: 0, count: local.count * communicator.size)
        try local.withUnsafeBufferPointer { l in try all.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        var out = local
        for q in 0..<communicator.size {
            for i in out.indices { let x = all[q * local.count + i]; if x > out[i] || x.isNaN { out[i] = x } }
        }
        return out
    }

    /// The fixed point of one tensor's terms: x^2 * 2^shift, truncated, is below 2^62.
    struct Scale {
        let factor: Double, inverse: Double, valid: Bool, special: Double
        init(maxAbs: Double) {
            valid = maxAbs.isFinite && maxAbs > 0
            special = maxAbs * maxAbs  // 0, inf or NaN when not valid
            let shift = valid ? 60 - 2 * Int(maxAbs.exponent) : 0
            factor = Double(sign: .plus, exponent: shift, significand: 1)
            inverse = Double(sign: .plus, exponent: -shift, significand: 1)
        }
        @inline(__always) func term(_ x: Float) -> UInt64 {
            valid ? UInt64(Double(x) * Double(x) * factor) : 0  // the square of a float is exact in Double
        }
        func value(_ s: UInt128) -> Double {
            valid ? Double(s) * inverse : special
        }
    }

    /// 128-bit unsigned accumulators.
    struct Sums {
        private(set) var words: [UInt128]
        init(count: Int) { words = [UInt128](repeating: 0, count: count) }
        @inline(__always) mutating func add(_ term: UInt64, at i: Int) { words[i] &+= UInt128(term) }
        subscript(i: Int) -> UInt128 { words[i] }

        /// Adds every rank's accumulators (exact, so the order does not matter).
        mutating func sumOverRanks(_ communicator: (any Communicator)?) throws {
            guard let communicator, communicator.size > 1 else { return }
            let n = words.count * 2
            var all = [Double](repeating: 0, count: n * communicator.size)
            try words.withUnsafeBytes { raw in
                try all.withUnsafeMutableBufferPointer { out in
                    try communicator.allGather(raw.bindMemory(to: Double.self), into: out)
                }
            }
            all.withUnsafeBytes { raw in
                for i in words.indices { words[i] = 0 }
                for q in 0..<communicator.size {
                    for i in words.indices {
                        words[i] &+= raw.loadUnaligned(fromByteOffset: (q * words.count + i) * 16, as: UInt128.self)
                    }
                }
            }
        }
    }
}

extension Float {
    /// torch's `.item()` of a float32 scalar: the exact Double of the float.
    var asDouble: Double { Double(self) }
}
