import ZeroTensor

/// torch.optim.Adafactor (torch >= 2.5) over the whole tensors that a shard holds.
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
/// Norms and means are accumulated in fp64 (torch uses float32 reductions), so results agree with
/// torch to a few ulp, not bit for bit. The row and column statistics and both norms need the
/// whole tensor, so every tensor must lie wholly inside one shard (see docs/optimizers.md); the
/// state is per tensor, not per element, hence `supportsResharding == false`.
final class AdafactorOptimizer: ShardOptimizer {
    let config: OptimizerConfig
    let count: Int
    let decay: DecaySegments
    let shapes: [ParameterShape]
    /// Per shape: row variances (R) then column variances (C) for matrices, or the variance (n) for vectors.
    let variances: [FlatBuffer<Float>]
    let decays: [Bool]

    init(config: OptimizerConfig, count: Int, decay: DecaySegments, shapes: [ParameterShape]?, ledger: MemoryLedger?) throws {
        let shapes = shapes ?? [.vector(0..<count)]
        var at = 0
        for s in shapes {
            guard s.range.lowerBound == at, s.rows * s.cols == s.range.count, s.rows >= 1 else {
                throw OptimizerError("Adafactor: parameter shapes must cover the shard in order with rows*cols == size (at \(at), got \(s))")
            }
            at = s.range.upperBound
        }
        guard at == count else {
            throw OptimizerError("Adafactor: shapes cover \(at) of \(count) parameters; every tensor must lie wholly inside one shard")
        }
        self.config = config
        self.count = count
        self.decay = decay
        self.shapes = shapes
        variances = shapes.map { s in
            FlatBuffer(count: s.isMatrix ? s.rows + s.cols : s.range.count, category: .optimizerState, ledger: ledger)
        }
        // Weight decay is per tensor in torch (param groups); a tensor decays if its first element does.
        decays = shapes.map { s in decay.runs.first { $0.range.contains(s.range.lowerBound) }?.decays ?? false }
    }

    var state: [OptimizerStateArray] {
        variances.enumerated().map { k, buffer in
            OptimizerStateArray(name: "variance_\(k)", parametersPerBlock: shapes[k].range.count,
                                bytesPerBlock: buffer.byteCount, bytes: UnsafeMutableRawBufferPointer(buffer.pointer))
        }
    }
    var supportsResharding: Bool { false }

    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: master, gradient: gradient, working: working, context: context)
        let t = Double(context.step), lr = context.learningRate
        let oneMinusBeta2 = Float(cPow(t, config.beta2Decay))
        let rho = min(lr, 1 / cPow(t, 0.5))
        let eps1 = config.adafactorEps1 ?? Double(Float.ulpOfOne)
        let eps1f = Float(eps1), eps1Squared = Float(eps1 * eps1)
        let small = abs(oneMinusBeta2) < 0.5
        @inline(__always) func lerp(_ a: Float, _ b: Float) -> Float {
            small ? a.addingProduct(oneMinusBeta2, b - a) : b.addingProduct(oneMinusBeta2 - 1, b - a)
        }
        var update = [Float]()
        for (k, s) in shapes.enumerated() {
            let p = master.part(s.range), g = gradient.part(s.range), st = variances[k].pointer
            let n = s.range.count
            var pNorm = 0.0
            for x in p { pNorm += Double(x) * Double(x) }
            let alpha = max(config.adafactorEps2, Float(pNorm.squareRoot()).asDouble / cPow(Double(n), 0.5)) * rho
            if decays[k] && config.weightDecay != 0 {
                let c = Float(1 - lr * config.weightDecay)
                for i in 0..<n { p[i] = p[i] * c }
            }
            update = [Float](repeating: 0, count: n)
            if s.isMatrix {
                let R = s.rows, C = s.cols
                for r in 0..<R {
                    var sq = 0.0
                    for c in 0..<C { let x = Double(g[r * C + c]); sq += x * x }
                    let norm = Float(sq.squareRoot())
                    st[r] = lerp(st[r], (norm * norm) / Float(C))
                }
                var colSq = [Double](repeating: 0, count: C)
                for r in 0..<R { for c in 0..<C { let x = Double(g[r * C + c]); colSq[c] += x * x } }
                for c in 0..<C {
                    let norm = Float(colSq[c].squareRoot())
                    st[R + c] = lerp(st[R + c], (norm * norm) / Float(R))
                }
                var rowSum = 0.0
                for r in 0..<R { rowSum += Double(st[r]) }
                let rowMean = max(Float(rowSum / Double(R)), eps1f)
                for r in 0..<R {
                    for c in 0..<C {
                        let est = max((st[r] * st[R + c]) / rowMean, eps1Squared)
                        update[r * C + c] = (1 / est.squareRoot()) * g[r * C + c]
                    }
                }
            } else {
                for i in 0..<n {
                    st[i] = lerp(st[i], g[i] * g[i])
                    update[i] = (1 / max(st[i], eps1Squared).squareRoot()) * g[i]
                }
            }
            var uNorm = 0.0
            for x in update { uNorm += Double(x) * Double(x) }
            let denom = max(1.0, Float(uNorm.squareRoot()).asDouble / (cPow(Double(n), 0.5) * config.clipThreshold))
            let a = Float(-alpha / denom)
            for i in 0..<n { p[i] = p[i].addingProduct(update[i], a) }
        }
        writeBack(master, working)
    }
}

extension Float {
    /// torch's `.item()` of a float32 scalar: the exact Double of the float.
    var asDouble: Double { Double(self) }
}
