import Foundation
import ZeroComm
import ZeroOptim

/// `--optimizer lbfgs`: torch.optim.LBFGS with a closure, over the sharded master weights.
///
/// The L-BFGS vector of a rank is its master ranges of every unit, back to back (the full
/// padded units at stage 0, the owned shards at stages 1-3); its dot products are reduced
/// unit by unit in global block order (`ShardSpace` segments), so the bits do not depend on
/// the stage or the rank count. At stage 0 every rank holds the whole vector and reduces
/// nothing. One optimizer step is one `LBFGS.step`: each closure call writes the candidate
/// into the master and working weights (through the units' ordinary step and refresh, so
/// stages 1-2 all-gather it and stage 3 gathers it per op), runs forward and backward over the
/// step's G micro-batches (the same fixed batch at every evaluation) and returns the global
/// mean loss with this rank's averaged gradient.
extension Trainer {
    func makeLBFGS() -> LBFGS {
        var o = LBFGS.Options()
        o.learningRate = config.lr
        o.history = config.lbfgsHistory
        o.lineSearch = config.lineSearch
        o.maxIterations = config.lbfgsIterations
        let segments = (0..<partition.unitCount).map { allocation.range(allocation.master, unit: $0).count }
        let space = ShardSpace(segments: segments, communicator: plan.fullMaster ? nil : communicator)
        return LBFGS(options: o, space: space, ledger: ledger)
    }

    /// One optimizer step: `LBFGS.step` with the closure above, at the schedule's learning rate
    /// (torch's lr: the step length factor). The record's loss is the loss at entry (what
    /// torch's step returns), its norm that of the gradient at entry. L-BFGS has no skipped
    /// step: a non-finite loss or gradient at any evaluation stops the run.
    func lbfgsStep(_ lbfgs: LBFGS) throws -> StepRecord {
        let start = ContinuousClock.now
        let lr = schedule.learningRate(at: step)
        lbfgs.options.learningRate = lr
        var x: [Float] = []
        x.reserveCapacity(lbfgs.space.count)
        for unit in units { x += unit.master.readOnly }
        var evaluated = false, entryNorm = 0.0
        let evaluationsBefore = lbfgs.evaluations
        let entryLoss = try lbfgs.step(&x) { candidate in
            if evaluated { try self.setMaster(candidate) }   // the first evaluation is at the current weights
            let losses = try self.stepMicroBatches()
            let loss = try self.globalMeanLoss(losses)
            var gradient: [Float] = []
            gradient.reserveCapacity(candidate.count)
            for unit in self.units { gradient += unit.averageGradient(over: self.globalMicroBatches) }
            let norm = try self.gradientNorm()
            guard loss.isFinite && norm.isFinite else {
                throw TrainingError("non-finite \(loss.isFinite ? "gradient" : "loss") in L-BFGS evaluation \(lbfgs.evaluations - evaluationsBefore + 1) of step \(self.step + 1); L-BFGS skips no steps: lower --lr or use --line-search strong_wolfe")
            }
            if !evaluated { entryNorm = norm }
            evaluated = true
            return (loss, gradient)
        }
        try setMaster(x)
        updatesApplied += 1
        consecutiveSkips = 0
        let nonFinite = units.reduce(0) { $0 + countNonFinite($1.master.readOnly) }
        if schedule.config.kind == .reduceOnPlateau { schedule.observe(metric: entryLoss) }
        step += 1
        return StepRecord(step: step, loss: entryLoss, learningRate: lr, gradNormPreclip: entryNorm, skipped: false,
                          tokens: globalMicroBatches * config.microBatch * config.seqLen,
                          seconds: (ContinuousClock.now - start).seconds, nonFiniteWeights: nonFinite)
    }

    /// Makes `values` (this rank's L-BFGS vector) the weights: each unit's master range, then its
    /// working copy through the unit's step (bf16 write-back) and refresh (stages 1-2 gather).
    /// The units hold the last evaluation's averaged gradient, which this retires.
    func setMaster(_ values: [Float]) throws {
        var offset = 0
        let context = StepContext(step: max(1, updatesApplied), learningRate: lbfgs?.options.learningRate ?? 0, communicator: communicator)
        for unit in units {
            let n = unit.master.count
            values.withUnsafeBufferPointer { _ = unit.master.pointer.update(fromContentsOf: $0[offset ..< offset + n]) }
            offset += n
            try unit.step(context)
            try unit.refreshWorkingReplica()
        }
    }
}
