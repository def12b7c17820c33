import Foundation
import ZeroComm
import ZeroModels
import ZeroOptim
import ZeroTensor

/// What one optimizer step did, as the metrics file records it.
public struct StepRecord: Sendable {
    public var step: Int            // 1-based index of the step just finished
    public var loss: Double         // mean over the G micro-batches, rank-count independent
    public var learningRate: Double
    public var gradNormPreclip: Double
    public var skipped: Bool
    public var tokens: Int
    public var seconds: Double
}

extension Trainer {
    /// Runs one optimizer step over G = ranks * A micro-batches.
    public func trainStep() throws -> StepRecord {
        let start = ContinuousClock.now
        let s = step
        var losses = [Float](repeating: 0, count: accumulationSteps)
        for a in 0..<accumulationSteps {
            losses[a] = try microBatch(accumulationStep: a)
        }
        let loss = try globalMeanLoss(losses)

        // Finish the canonical sums and average over G.
        var sums: [FlatBuffer<Float>] = []
        let scale = Float(globalMicroBatches)
        for u in 0..<partition.unitCount {
            let total = accumulators[u].finish()
            let p = total.pointer
            for i in p.indices { p[i] = p[i] / scale }
            sums.append(total)
        }
        defer { for u in sums.indices { accumulators[u].recycle(sums[u]) } }

        // Global norm over the owned range of every unit (fixed blocks, fixed order).
        let owned: [UnsafeBufferPointer<Float>] = (0..<partition.unitCount).map { u in
            if plan.fullMaster {
                return UnsafeBufferPointer(rebasing: sums[u].readOnly[partition.shardRange(unit: u, rank: rank)])
            }
            return sums[u].readOnly
        }
        let norm = try GlobalNorm.norm(unitShards: owned, communicator: communicator)
        let lr = schedule.learningRate(at: s)
        var skipped = false
        if !norm.isFinite || !loss.isFinite {
            if config.errorIfNonfinite {
                throw TrainingError("non-finite \(loss.isFinite ? "gradient norm" : "loss") at step \(s + 1) (--error-if-nonfinite)")
            }
            skipped = true
            skippedSteps += 1
            consecutiveSkips += 1
            if consecutiveSkips >= config.maxSkips {
                throw TrainingError("\(consecutiveSkips) steps in a row had a non-finite loss or gradient norm (last at step \(s + 1)); stopping. Lower --lr or check the data.")
            }
        } else {
            consecutiveSkips = 0
            if config.clip > 0 {
                let coef = GlobalNorm.clipCoefficient(totalNorm: Float(norm), maxNorm: Float(config.clip))
                for g in sums { GlobalNorm.scale(g.pointer, by: coef) }
            }
            updatesApplied += 1
            try update(sums: sums, learningRate: lr)
        }
        if schedule.config.kind == .reduceOnPlateau { schedule.observe(metric: loss) }
        step += 1
        let seconds = (ContinuousClock.now - start).seconds
        return StepRecord(step: step, loss: loss, learningRate: lr, gradNormPreclip: norm, skipped: skipped,
                          tokens: globalMicroBatches * config.microBatch * config.seqLen, seconds: seconds)
    }

    /// Forward and backward of micro-batch g = a * ranks + rank; returns its loss.
    func microBatch(accumulationStep a: Int) throws -> Float {
        let g = a * ranks + rank
        dataset.fill(step: step, microBatch: g, seed: config.seed, batchSize: config.microBatch,
                     sequenceLength: config.seqLen, tokens: tokens.pointer, targets: targets.pointer)
        model.setBatch(tokens: tokens.readOnly, targets: targets.readOnly,
                       batchSize: config.microBatch, sequenceLength: config.seqLen)
        let ops = opUnits.count
        for op in 0..<ops {
            let w = try residentWeights(op: op)
            model.forward(op: op, weights: w)
        }
        let loss = model.loss

        if !plan.reduceGradientsPerUnit { for g in fullGrads { g.fill(0) } }
        var live = Set<Int>()
        for op in stride(from: ops - 1, through: 0, by: -1) {
            let w = try residentWeights(op: op)
            var grads = [UnsafeMutableBufferPointer<Float>?](repeating: nil, count: partition.unitCount)
            for u in opUnits[op] {
                let buffer = gradientBuffer(unit: u)
                if plan.reduceGradientsPerUnit && !live.contains(u) { buffer.update(repeating: 0); live.insert(u) }
                grads[u] = buffer
            }
            model.backward(op: op, weights: w, gradients: grads)
            if plan.reduceGradientsPerUnit {
                for u in opUnits[op] where lastBackwardOp[u] == op {
                    try reduceGradient(unit: u)
                    live.remove(u)
                }
            }
        }
        if !plan.reduceGradientsPerUnit {
            for u in 0..<partition.unitCount { try reduceGradient(unit: u) }
        }
        return loss
    }

    /// Mean of the G micro-batch losses, summed in g order in fp64 so the value
    /// does not depend on how the micro-batches were spread over ranks.
    func globalMeanLoss(_ local: [Float]) throws -> Double {
        let a = accumulationSteps, n = ranks
        var gathered = [Float](repeating: 0, count: a * n)
        try local.withUnsafeBufferPointer { l in
            try gathered.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) }
        }
        var sum = 0.0
        for g in 0..<(a * n) {
            let (step, r) = g.quotientAndRemainder(dividingBy: n)
            sum += Double(gathered[r * a + step])
        }
        return sum / Double(a * n)
    }

    /// Updates the owned range of every unit and refreshes the working weights.
    func update(sums: [FlatBuffer<Float>], learningRate: Double) throws {
        let context = StepContext(step: updatesApplied, learningRate: learningRate, communicator: communicator)
        for u in 0..<partition.unitCount {
            let m = master[u].pointer
            let workingRange = plan.fullMaster || !plan.fullWorkingWeights
                ? 0 ..< m.count : partition.shardRange(unit: u, rank: rank)
            if bf16 {
                let w = workingBF16[u].slice(workingRange)
                try optimizers[u].step(master: m, gradient: sums[u].readOnly, working: w, context: context)
            } else {
                try optimizers[u].step(master: m, gradient: sums[u].readOnly, working: nil, context: context)
                _ = workingF32[u].slice(workingRange).update(fromContentsOf: m)
            }
            if plan.gathersWeightsAfterUpdate {
                // All-gather the updated shards into the full replica (source copied out first:
                // the own chunk of the output is the input's home).
                if bf16 {
                    let src = shardScratchBF16.slice(0..<workingRange.count)
                    _ = src.update(fromContentsOf: workingBF16[u].slice(workingRange))
                    try communicator.allGather(UnsafeBufferPointer(src), into: workingBF16[u].pointer)
                } else {
                    let src = shardScratch.slice(0..<workingRange.count)
                    _ = src.update(fromContentsOf: workingF32[u].slice(workingRange))
                    try communicator.allGather(UnsafeBufferPointer(src), into: workingF32[u].pointer)
                }
            }
        }
    }
}
