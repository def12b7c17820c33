import Foundation
import ZeroModels
import ZeroTensor

extension NormKind: ChoiceValue {}

/// BatchNorm over the global batch of a step (`--norm batch`, docs/normalization.md).
///
/// A BatchNorm layer's statistics are those of all M = G x B x T rows of the step, whatever the
/// rank count: torch's BatchNorm1d on the concatenated global batch (SyncBatchNorm under DDP
/// when A = 1). Every rank computes them exactly, with extra passes over its micro-batches:
/// 1. forward statistics, layer by layer bottom-up: the forward up to layer j's input (the
///    layers below normalize with the statistics already found); each micro-batch's per-channel
///    mean and centred sum of squares (fp64, row order) are all-gathered and combined in g order
///    (`BatchNormStatistics`), giving the mean and biased variance, and the running averages;
/// 2. backward statistics, top-down: forward, then backward down to layer j's output; the
///    per-micro-batch sums of dout and dout * xhat are all-gathered and summed in g order (fp64);
///    parameter gradients of these passes go to a scratch buffer and are dropped;
/// 3. the usual forward and backward of every micro-batch, with every statistic known.
/// For L layers that is L partial forwards, L forward + partial backwards and the normal pass.
/// Every collective is one all-gather of fp64 partials, the same calls on every rank, and every
/// stage unshards each op's units as in the normal pass, so stage 3's gathers stay matched.
extension Trainer {
    /// The model's BatchNorm layers, when it has any (nil for `--norm none|layer` and GPT).
    var batchNorms: HiddenNorms? {
        guard let norms = (model as? any NormalizedModel)?.norms, norms.kind == .batch else { return nil }
        return norms
    }

    /// Forward and backward of this rank's A micro-batches of the step, gradients reduced and
    /// accumulated; returns their losses. With BatchNorm layers it runs their statistics passes
    /// first, so every evaluation of the step's loss and gradient must come through here.
    func stepMicroBatches() throws -> [Float] {
        let losses: [Float]
        if let norms = batchNorms {
            losses = try batchNormMicroBatches(norms)
        } else if let contrastive = try globalContrastiveLosses() {
            losses = contrastive
        } else {
            losses = try (0..<accumulationSteps).map { try microBatch(accumulationStep: $0) }
        }
        try completeReductions()
        return losses
    }

    /// Runs the three kinds of passes of a step with BatchNorm; returns the A micro-batch losses
    /// (gradients reduced and accumulated as `microBatch(accumulationStep:)` does).
    func batchNormMicroBatches(_ norms: HiddenNorms) throws -> [Float] {
        let layers = norms.widths.count, rows = norms.rows
        guard globalMicroBatches * rows >= 2 else {
            throw ConfigError("--norm batch needs at least 2 rows per step (G x micro-batch x seq-len is \(globalMicroBatches * rows))")
        }
        defer { norms.phase = .train }
        for j in 0..<layers {
            norms.phase = .forwardStatistics(layer: j)
            let stats = try combinedPartials(norms, channels: norms.widths[j]) { try forwardThrough(op: j) }
            let forward = BatchNormStatistics(parts: stats, rows: rows, channels: norms.widths[j])
            norms.mean[j] = forward.mean
            norms.rstd[j] = forward.rstd
            updateRunningStatistics(norms, layer: j, forward)
        }
        let scratch = FlatBuffer<Float>(count: partition.unitCounts.max()!, category: .scratch, ledger: ledger)
        for j in (0..<layers).reversed() {
            norms.phase = .backwardStatistics(layer: j)
            let parts = try combinedPartials(norms, channels: norms.widths[j]) {
                try forwardThrough(op: opUnits.count - 1)
                for op in (j ..< opUnits.count).reversed() {
                    var grads = [UnsafeMutableBufferPointer<Float>?](repeating: nil, count: units.count)
                    for u in opUnits[op] { grads[u] = UnsafeMutableBufferPointer(rebasing: scratch.pointer[0 ..< partition.unitCounts[u]]) }
                    try model.backward(op: op, weights: unshard(op: op), gradients: grads)
                    reshard(op: op)
                }
            }
            // Sums over all M rows, in g order: column c of every part, then divided by M.
            let m = Double(globalMicroBatches * rows), C = norms.widths[j]
            var sumDout = [Double](repeating: 0, count: C), sumDoutXhat = sumDout
            for part in parts {
                for c in 0..<C { sumDout[c] += part[c]; sumDoutXhat[c] += part[C + c] }
            }
            norms.meanDout[j] = sumDout.map { $0 / m }
            norms.meanDoutXhat[j] = sumDoutXhat.map { $0 / m }
        }
        norms.phase = .train
        return try (0..<accumulationSteps).map { try microBatch(accumulationStep: $0) }
    }

    /// Runs `pass` on each of this rank's micro-batches (loaded first) and returns the partials
    /// (2C values each) the norms recorded, all-gathered and put in g order.
    private func combinedPartials(_ norms: HiddenNorms, channels C: Int, _ pass: () throws -> Void) throws -> [[Double]] {
        let a = accumulationSteps, n = ranks
        var local: [Double] = []
        local.reserveCapacity(a * 2 * C)
        for step in 0..<a {
            let g = step * n + rank
            try load(microBatch: g, of: self.step, in: dataset)
            try pass()
            precondition(norms.partial.count == 2 * C, "the pass did not reach its BatchNorm layer")
            local += norms.partial
        }
        var gathered = [Double](repeating: 0, count: a * n * 2 * C)
        try local.withUnsafeBufferPointer { l in
            try gathered.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) }
        }
        // Rank r's block holds its micro-batches g = step * n + r in step order.
        return (0 ..< a * n).map { g in
            let (step, r) = g.quotientAndRemainder(dividingBy: n)
            let start = (r * a + step) * 2 * C
            return Array(gathered[start ..< start + 2 * C])
        }
    }

    /// running = (1 - momentum) running + momentum x (mean, unbiased variance), in fp32 as torch.
    private func updateRunningStatistics(_ norms: HiddenNorms, layer j: Int, _ stats: BatchNormStatistics) {
        let m = Float(BatchNorm.momentum)
        let unbiased = stats.unbiasedVariance
        for c in 0..<norms.widths[j] {
            norms.runningMean[j][c] = (1 - m) * norms.runningMean[j][c] + m * Float(stats.mean[c])
            norms.runningVariance[j][c] = (1 - m) * norms.runningVariance[j][c] + m * Float(unbiased[c])
        }
    }

    /// Runs `body` with the model in evaluation mode (BatchNorm normalizes with its running
    /// statistics, as torch's eval()); a no-op wrapper for models without BatchNorm.
    func evaluating<R>(_ body: () throws -> R) rethrows -> R {
        guard let norms = batchNorms else { return try body() }
        norms.phase = .eval
        defer { norms.phase = .train }
        return try body()
    }
}

extension BatchNormStatistics {
    /// The statistics of parts given in g order, each [mean | m2] of `rows` rows.
    init(parts: [[Double]], rows: Int, channels C: Int) {
        self.init(channels: C)
        for part in parts {
            part.withUnsafeBufferPointer { p in
                add(rows: rows, mean: UnsafeBufferPointer(rebasing: p[0 ..< C]), m2: UnsafeBufferPointer(rebasing: p[C ..< 2 * C]))
            }
        }
    }
}

// MARK: - Running statistics in checkpoints

extension Trainer {
    /// The model's non-trainable buffers (BatchNorm's running statistics), identical on every rank.
    var modelBuffers: [(name: String, values: [Float])] { batchNorms?.buffers ?? [] }

    /// Manifest entries for the buffers rank 0's shard holds (nil when the model has none, so
    /// a checkpoint without BatchNorm is written as before).
    var bufferEntries: [CheckpointManifest.BufferEntry]? {
        let buffers = modelBuffers
        return buffers.isEmpty ? nil : buffers.map { .init(name: $0.name, count: $0.values.count) }
    }

    /// The shard tensors of the buffers ("buffer.NAME"), written by rank 0 only.
    var bufferTensors: [(name: String, bytes: Data)] {
        guard rank == 0 else { return [] }
        return modelBuffers.map { b in ("buffer.\(b.name)", b.values.withUnsafeBytes { Data($0) }) }
    }

    /// Restores the buffers from a checkpoint, refusing one that lacks them or holds other sizes.
    func loadBuffers(from reader: CheckpointReader, at dir: URL) throws {
        guard let norms = batchNorms else { return }
        for b in norms.buffers {
            guard let entry = reader.manifest.buffers?.first(where: { $0.name == b.name }) else {
                throw ConfigError("checkpoint \(dir.path) has no BatchNorm running statistics '\(b.name)' (saved without --norm batch?)")
            }
            let data: Data
            do { data = try reader.replicatedTensor("buffer.\(b.name)") } catch {
                throw TrainingError("checkpoint \(dir.path): rank 0's shard has no buffer '\(b.name)', which the manifest lists")
            }
            guard entry.count == b.values.count, data.count == 4 * b.values.count else {
                throw TrainingError("checkpoint \(dir.path): buffer '\(b.name)' has \(data.count / 4) values (manifest: \(entry.count)), expected \(b.values.count)")
            }
            norms.setBuffer(b.name, data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        }
    }
}
