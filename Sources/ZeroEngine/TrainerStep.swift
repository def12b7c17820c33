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
    /// Non-finite values in this rank's updated master weights (0 when the step was
    /// skipped); `runTraining` sums them over ranks and stops before the step is saved.
    public var nonFiniteWeights = 0
}

extension Trainer {
    /// Runs one optimizer step over G = ranks * A micro-batches.
    public func trainStep() throws -> StepRecord {
        if let lbfgs { return try lbfgsStep(lbfgs) }
        let start = ContinuousClock.now
        let losses = try stepMicroBatches()
        let loss = try globalMeanLoss(losses)
        let gradients = units.map { $0.averageGradient(over: globalMicroBatches) }
        let norm = try gradientNorm()
        let clip = try GlobalNorm.clip(gradients, norm: norm, maxNorm: config.clip > 0 ? Float(config.clip) : .infinity)
        let lr = schedule.learningRate(at: step)
        let applied = try admitUpdate(normIsFinite: clip.isFinite, lossIsFinite: loss.isFinite)
        if applied {
            let context = StepContext(step: updatesApplied, learningRate: lr, communicator: communicator)
            for unit in units {
                try unit.step(context)
                try unit.refreshWorkingReplica()
            }
        } else {
            for unit in units { unit.discardGradient() }
        }
        let nonFinite = applied ? units.reduce(0) { $0 + countNonFinite($1.master.readOnly) } : 0
        if schedule.config.kind == .reduceOnPlateau { schedule.observe(metric: loss) }
        step += 1
        return StepRecord(step: step, loss: loss, learningRate: lr, gradNormPreclip: norm, skipped: !applied,
                          tokens: globalMicroBatches * config.microBatch * config.rowLength,
                          seconds: (ContinuousClock.now - start).seconds, nonFiniteWeights: nonFinite)
    }

    /// The global norm of the averaged gradient, over every unit's owned (possibly uneven) shard.
    func gradientNorm() throws -> Double {
        try GlobalNorm.norm(unitShards: units.map(\.ownedGradient), shardCounts: units.map(\.shardCounts), communicator: communicator)
    }

    /// Loads micro-batch g of `step` from `data` and runs the forward over every op, each with
    /// its unit's weights gathered; returns the loss.
    func forward(microBatch g: Int, of step: Int, in data: any MicroBatchSource) throws -> Float {
        try load(microBatch: g, of: step, in: data)
        try forwardThrough(op: opUnits.count - 1)
        return model.loss
    }

    /// Loads micro-batch g of `step` from `data` into the model.
    func load(microBatch g: Int, of step: Int, in data: any MicroBatchSource) throws {
        try data.load(step: step, microBatch: g, seed: config.seed, batchSize: config.microBatch, sequenceLength: config.rowLength,
                      into: model, tokens: tokens.pointer, targets: targets.pointer)
    }

    /// The forward of ops 0...last over the loaded micro-batch, each op's units unsharded
    /// (at stage 3 with overlap, the next op's gather is issued before the op computes).
    /// `keepingLast` leaves the last op's units unsharded and returns their weights (for its
    /// backward, which comes next); `thenPrefetch` is the op whose gather the last op issues.
    @discardableResult
    func forwardThrough(op last: Int, keepingLast: Bool = false, thenPrefetch after: Int? = nil) throws -> [UnsafeBufferPointer<Float>?]? {
        for op in 0...last {
            let weights = try unshard(op: op, next: op < last ? op + 1 : after)
            try model.forward(op: op, weights: weights)
            if op == last && keepingLast { return weights }
            reshard(op: op)
        }
        return nil
    }

    /// Forward and backward of micro-batch g = a * ranks + rank; returns its loss.
    /// `beforeBackward` runs between the two (the global-batch InfoNCE sets its output gradient there).
    ///
    /// A unit's gradient reduction is issued once its last backward op is done (after the
    /// next op's gathers, `issueReductions`) and completed only when its slot or its sum is
    /// needed (`claimGradientSlot`, `completeReductions`), so with overlap it runs while
    /// backward goes on with earlier ops.
    func microBatch(accumulationStep a: Int, beforeBackward: () -> Void = {}) throws -> Float {
        try load(microBatch: a * ranks + rank, of: step, in: dataset)
        // Stage 3 with overlap: the last op's backward follows its forward at once, so its
        // units stay gathered (one all-gather less per micro-batch) and the gather of the op
        // before it is issued during the last op's forward.
        let last = opUnits.count - 1
        let keep = allocation.overlap && allocation.weightGather == .beforeEachOp
        var kept = try forwardThrough(op: last, keepingLast: keep, thenPrefetch: keep && last > 0 ? last - 1 : nil)
        let loss = model.loss
        beforeBackward()
        for op in opUnits.indices.reversed() {
            for u in allocation.gradientStarts[op] { try claimGradientSlot(for: u) }
            let weights = try kept ?? unshard(op: op, next: op > 0 ? op - 1 : nil)
            kept = nil
            try model.backward(op: op, weights: weights, gradients: gradients(op: op))
            reshard(op: op)
            toReduce += allocation.gradientReductions[op]
            // Without per-op gathers there is nothing to let ahead: reduce at once.
            if allocation.weightGather != .beforeEachOp { issueReductions() }
        }
        return loss
    }

    /// Issues the reductions of gradients that are finished: at once at stages 0-2, and at
    /// stage 3 after the next gathers (`unshard(op:next:)` calls this after them), since the
    /// op about to compute needs its weights before anyone needs these sums. Every rank
    /// issues in this same order; a gradient slot claim or the step's end issues what is left.
    func issueReductions() {
        for u in toReduce {
            units[u].startGradientReduction()
            reducing.append(u)
        }
        toReduce.removeAll(keepingCapacity: true)
    }

    /// Begins unit u's micro-batch gradient once a slot is free: its own previous reduction
    /// and, while every slot it may use is still reducing, the oldest reductions complete first.
    func claimGradientSlot(for u: Int) throws {
        issueReductions()
        if units[u].isReducing { try completeReduction(of: u) }
        while slots.freeGradientSlot(for: u) == nil {
            guard let oldest = reducing.first else { preconditionFailure("unit \(u): no gradient slot and no reduction to wait for") }
            try completeReduction(of: oldest)
        }
        units[u].beginGradient()
    }

    func completeReduction(of u: Int) throws {
        try units[u].completeGradientReduction()
        reducing.removeAll { $0 == u }
    }

    /// Completes every reduction in flight (before the step's sums are read).
    func completeReductions() throws {
        issueReductions()
        while let u = reducing.first { try completeReduction(of: u) }
    }

    /// fp32 weights of the units op reads (nil for the rest), resident until `reshard(op:)`.
    /// At stage 3 with overlap, the gather of `next`'s units is issued (into free slots)
    /// before this op's gathers are waited for: a prefetch that runs while op computes.
    func unshard(op: Int, next: Int? = nil) throws -> [UnsafeBufferPointer<Float>?] {
        if allocation.weightGather == .beforeEachOp {
            var gathers = 0
            for u in opUnits[op] where !units[u].isGathered {
                guard units[u].startGather() else { preconditionFailure("unit \(u): no free gathered slot") }
                gathers += 1
            }
            if allocation.overlap, let next {
                for u in opUnits[next] where !units[u].isGathered && !opUnits[op].contains(u) && units[u].startGather() {
                    gathers += 1
                }
            }
            // Finished gradients go after the gathers that compute waits for first; an op that
            // gathers nothing (its weights came early) leaves them for the next one that does.
            if gathers > 0 { issueReductions() }
        }
        var weights = [UnsafeBufferPointer<Float>?](repeating: nil, count: units.count)
        for u in opUnits[op] { weights[u] = try units[u].unshard() }
        return weights
    }

    func reshard(op: Int) { for u in opUnits[op] { units[u].reshard() } }

    func gradients(op: Int) -> [UnsafeMutableBufferPointer<Float>?] {
        var grads = [UnsafeMutableBufferPointer<Float>?](repeating: nil, count: units.count)
        for u in opUnits[op] { grads[u] = units[u].gradient }
        return grads
    }

    /// Whether this step's update goes ahead. A non-finite loss or gradient norm skips it
    /// (counted; `maxSkips` in a row stop the run) or, with --error-if-nonfinite, stops at once.
    func admitUpdate(normIsFinite: Bool, lossIsFinite: Bool) throws -> Bool {
        guard !(normIsFinite && lossIsFinite) else {
            consecutiveSkips = 0
            updatesApplied += 1
            return true
        }
        if config.errorIfNonfinite {
            throw TrainingError("non-finite \(lossIsFinite ? "gradient norm" : "loss") at step \(step + 1) (--error-if-nonfinite)")
        }
        skippedSteps += 1
        consecutiveSkips += 1
        if consecutiveSkips >= config.maxSkips {
            throw TrainingError("\(consecutiveSkips) steps in a row had a non-finite loss or gradient norm (last at step \(step + 1)); stopping. Lower --lr or check the data.")
        }
        return false
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
}

/// NaN and ±inf among `values` (exponent all ones), in one branch-free pass.
func countNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int {
    values.withMemoryRebound(to: UInt32.self) { bits in
        var n = 0
        for b in bits { n &+= (b & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
        return n
    }
}

extension Trainer {
    /// Refuses initial weights with NaN or inf, naming the first tensor that has them
    /// (every rank reads the same full values, so all agree without communicating).
    func checkFinite(_ unitValues: [[Float]], source: String) throws {
        for t in model.layout.tensors {
            let bad = unitValues[t.unit].withUnsafeBufferPointer { countNonFinite(UnsafeBufferPointer(rebasing: $0[t.offset ..< t.offset + t.count])) }
            if bad > 0 {
                throw ConfigError("\(source): tensor \(t.name) has \(bad) non-finite values (NaN or inf) of \(t.count); training cannot start from it")
            }
        }
    }
}
