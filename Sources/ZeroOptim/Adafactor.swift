import ZeroComm
import ZeroTensor

/// torch.optim.Adafactor (torch >= 2.5) over whole tensors, whichever ranks hold their pieces.
///
/// Per tensor and step t (torch's `_single_tensor_adafactor`):
/// ```
/// b = t^beta2Decay ; rho = min(lr, 1/sqrt(t)) ; alpha = max(eps2, ||p|| / sqrt(numel)) * rho
/// p *= f32(1 - lr*wd)                                   (if wd != 0)
/// matrix [R, C]: row_var = lerp(row_var, sum_j g^2 / C, b); col_var = lerp(col_var, sum_i g^2 / R, b)
///                est_ij = row_var_i * col_var_j / max(mean(row_var), eps1)
/// vector:        var = lerp(var, g*g, b); est = var
/// u = g / sqrt(max(est, eps1^2)) ; p = fma(u, f32(-alpha / max(1, ||u|| / (sqrt(numel) * d))), p)
/// ```
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
    /// The unit's tensors, sorted and disjoint, in unit coordinates; the shard is
    /// `shardOffset ..< shardOffset + count`.
    let tensors: [ParameterShape]
    let shardOffset: Int
    /// Other ranks hold other pieces of these tensors: statistics are combined over ranks.
    let sharded: Bool
    /// Whether tensor k takes weight decay (from its first element in this shard).
    let decays: [Bool]
    /// Where tensor k's variances start in `variance` (R rows then C columns, or one per element).
    let varianceOffsets: [Int]
    let variance: FlatBuffer<Float>
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
        self.tensors = shapes
        self.shardOffset = shardOffset
        self.sharded = sharded
        var offsets: [Int] = [], total = 0
        for s in shapes {
            offsets.append(total)
            total += s.isMatrix ? s.rows + s.cols : s.range.count
        }
        varianceOffsets = offsets
        variance = FlatBuffer(count: total, category: .optimizerState, ledger: ledger)
        // Weight decay is per tensor in torch (param groups); a tensor decays if its first element here does.
        decays = shapes.map { s in
            let local = s.range.clamped(to: shard)
            guard !local.isEmpty else { return false }
            return decay.runs.first { $0.range.contains(local.lowerBound - shardOffset) }?.decays ?? false
        }
        update = [Float](repeating: 0, count: count)
    }

    var state: [OptimizerStateArray] {
        [OptimizerStateArray(name: "factored_variance", parametersPerBlock: 1, bytesPerBlock: 4,
                             bytes: UnsafeMutableRawBufferPointer(variance.pointer), isReplicated: true)]
    }
    var supportsResharding: Bool { true }

    /// Shard-relative range of tensor k's elements that this shard holds (may be empty).
    func piece(_ k: Int) -> Range<Int> {
        let r = tensors[k].range.clamped(to: shardOffset ..< shardOffset + count)
        return (r.lowerBound - shardOffset) ..< (r.upperBound - shardOffset)
    }

    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: master, gradient: gradient, working: working, context: context)
        let communicator = sharded ? context.communicator : nil
        if sharded && communicator == nil { throw OptimizerError("Adafactor over a sharded unit needs the step's communicator") }
        let t = Double(context.step), lr = context.learningRate
        let oneMinusBeta2 = Float(cPow(t, config.beta2Decay))
        let rho = min(lr, 1 / cPow(t, 0.5))
        let eps1 = config.adafactorEps1 ?? Double(Float.ulpOfOne)
        let eps1f = Float(eps1), eps1Squared = Float(eps1 * eps1)
        let small = abs(oneMinusBeta2) < 0.5
        @inline(__always) func lerp(_ a: Float, _ b: Float) -> Float {
            small ? a.addingProduct(oneMinusBeta2, b - a) : b.addingProduct(oneMinusBeta2 - 1, b - a)
        }
        let T = tensors.count

        // 1. Largest |p| and |g| of every tensor, over all ranks: the scales of the exact sums.
        var maxima = [Double](repeating: 0, count: 2 * T)
        for k in 0..<T {
            let r = piece(k)
            maxima[2 * k] = ExactSquareSum.maxAbs(master[r])
            maxima[2 * k + 1] = ExactSquareSum.maxAbs(gradient[r])
        }
        maxima = try ExactSquareSum.maxOverRanks(maxima, communicator)

        // 2. Exact sums: ||p||^2, then row and column sums of g^2 (matrices) or g itself (vectors,
        //    as bit patterns: exactly one rank holds each element, the others add zero).
        var sums = ExactSquareSum.Sums(count: T + variance.count)
        for k in 0..<T {
            let s = tensors[k], r = piece(k), at = T + varianceOffsets[k]
            let pScale = ExactSquareSum.Scale(maxAbs: maxima[2 * k]), gScale = ExactSquareSum.Scale(maxAbs: maxima[2 * k + 1])
            for i in r { sums.add(pScale.term(master[i]), at: k) }
            let first = r.lowerBound + shardOffset - s.range.lowerBound  // index of the piece's first element in the tensor
            if s.isMatrix {
                for i in r {
                    let j = first + i - r.lowerBound, term = gScale.term(gradient[i])
                    sums.add(term, at: at + j / s.cols)
                    sums.add(term, at: at + s.rows + j % s.cols)
                }
            } else {
                for i in r { sums.add(UInt64(gradient[i].bitPattern), at: at + first + i - r.lowerBound) }
            }
        }
        try sums.sumOverRanks(communicator)

        // 3. Every rank updates every tensor's variances identically; then the update of its pieces.
        let st = variance.pointer
        var alphas = [Double](repeating: 0, count: T), uMaxima = [Double](repeating: 0, count: T)
        for k in 0..<T {
            let s = tensors[k], r = piece(k), at = varianceOffsets[k], n = s.range.count
            let pNorm = ExactSquareSum.Scale(maxAbs: maxima[2 * k]).value(sums[k])
            alphas[k] = max(config.adafactorEps2, Float(pNorm.squareRoot()).asDouble / cPow(Double(n), 0.5)) * rho
            let first = r.lowerBound + shardOffset - s.range.lowerBound
            if s.isMatrix {
                let R = s.rows, C = s.cols, gScale = ExactSquareSum.Scale(maxAbs: maxima[2 * k + 1])
                for i in 0..<(R + C) {
                    let norm = Float(gScale.value(sums[T + at + i]).squareRoot())
                    st[at + i] = lerp(st[at + i], (norm * norm) / Float(i < R ? C : R))
                }
                var rowSum = 0.0
                for i in 0..<R { rowSum += Double(st[at + i]) }
                let rowMean = max(Float(rowSum / Double(R)), eps1f)
                for i in r {
                    let j = first + i - r.lowerBound
                    let est = max((st[at + j / C] * st[at + R + j % C]) / rowMean, eps1Squared)
                    update[i] = (1 / est.squareRoot()) * gradient[i]
                }
            } else {
                for j in 0..<n {
                    let g = Float(bitPattern: UInt32(truncatingIfNeeded: sums[T + at + j]))
                    st[at + j] = lerp(st[at + j], g * g)
                }
                for i in r {
                    update[i] = (1 / max(st[at + first + i - r.lowerBound], eps1Squared).squareRoot()) * gradient[i]
                }
            }
            uMaxima[k] = ExactSquareSum.maxAbs(update[r])
        }
        uMaxima = try ExactSquareSum.maxOverRanks(uMaxima, communicator)

        // 4. ||u|| over the whole tensor, then decay and apply.
        var uSums = ExactSquareSum.Sums(count: T)
        for k in 0..<T {
            let scale = ExactSquareSum.Scale(maxAbs: uMaxima[k])
            for i in piece(k) { uSums.add(scale.term(update[i]), at: k) }
        }
        try uSums.sumOverRanks(communicator)
        for k in 0..<T {
            let r = piece(k), n = tensors[k].range.count
            let uNorm = ExactSquareSum.Scale(maxAbs: uMaxima[k]).value(uSums[k])
            if decays[k] && config.weightDecay != 0 {
                let c = Float(1 - lr * config.weightDecay)
                for i in r { master[i] = master[i] * c }
            }
            let denom = max(1.0, Float(uNorm.squareRoot()).asDouble / (cPow(Double(n), 0.5) * config.clipThreshold))
            let a = Float(-alphas[k] / denom)
            for i in r { master[i] = master[i].addingProduct(update[i], a) }
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
