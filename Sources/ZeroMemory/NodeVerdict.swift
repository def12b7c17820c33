import ZeroModels

/// Memory that exists only for a moment, per rank, outside the steady buffers: loading
/// `--init` weights and saving a checkpoint (docs/memory.md, "Transient peaks").
public struct TransientPeaks: Sendable, Equatable {
    /// `--init FILE`: the whole model as fp32 arrays (4 Psi), plus one padded unit copied
    /// into the rank's buffers (4 x the largest padded unit), on every rank.
    public var initBytesPerRank: Int
    /// `--init FILE`: the safetensors file, memory-mapped; its pages are the page cache's,
    /// shared by the ranks of a node, so it counts once per node (fp32 file: 4 Psi).
    public var initFileBytes: Int
    /// A checkpoint save: the rank copies its master shard and optimizer state (K S bytes)
    /// and serializes them into one buffer (K S more) before writing.
    public var saveBytesPerRank: Int
    /// Rank 0 then reads every shard file back to hash it, one at a time (K S).
    public var saveRootExtraBytes: Int

    public init(_ run: RunConfiguration) {
        let u = run.units
        let psi = run.model.parameterCount
        let largest = u.largestUnit(among: u.units).padded
        let shard = u.ownedShard.padded
        let k = run.optimizerBytesPerParameter
        initBytesPerRank = 4 * psi + 4 * largest
        initFileBytes = 4 * psi
        saveBytesPerRank = 2 * k * shard
        saveRootExtraBytes = k * shard
    }
}

/// The verdict for one node: R ranks share its memory, each with its steady buffers and
/// fixed process overhead, plus the larger of the two transient peaks.
public struct NodeVerdict: Sendable {
    public struct Stage: Sendable, Equatable {
        public var stage: Int
        /// R x (per-rank total + fixed process overhead).
        public var steadyBytes: Int
        /// Steady + R x init transient + the init file once.
        public var initPeakBytes: Int
        /// Steady + R x save transient + rank 0's extra read.
        public var savePeakBytes: Int
        public var peakBytes: Int { max(steadyBytes, initPeakBytes, savePeakBytes) }
    }

    public var ranksPerNode: Int
    public var nodeMemoryBytes: Int
    public var nodeMemorySource: String
    public var transient: TransientPeaks
    public var stages: [Stage]
    /// Settings that would fit when the chosen one does not (empty when it fits).
    public var suggestions: [String]

    public func stage(_ s: Int) -> Stage { stages[s] }
    public func fits(_ s: Int) -> Bool { stages[s].peakBytes <= nodeMemoryBytes }

    /// The node's peaks for `run` with `ranksPerNode` ranks on it, stages 0-3.
    public static func peaks(_ run: RunConfiguration, ranksPerNode: Int) -> [Stage] {
        zeroStages.map { s in
            var c = run
            c.stage = s
            let t = TransientPeaks(c)
            // MPI: one process per rank, each with its fixed overhead; simulated: one process.
            let overhead = c.backend == .simulated ? c.fixedOverheadBytes : ranksPerNode * c.fixedOverheadBytes
            let steady = ranksPerNode * MemoryReport.runtimeEstimate(c, stage: s).totalBytes + overhead
            return Stage(stage: s, steadyBytes: steady,
                         initPeakBytes: steady + ranksPerNode * t.initBytesPerRank + t.initFileBytes,
                         savePeakBytes: steady + ranksPerNode * t.saveBytesPerRank + t.saveRootExtraBytes)
        }
    }

    /// The verdict for `run`, and for `chosenStage` (or stage 0 when none was chosen) what
    /// to change when it does not fit: a higher stage, a smaller micro-batch with more
    /// accumulation (same batch), or fewer ranks per node.
    public static func evaluate(_ run: RunConfiguration, ranksPerNode: Int, nodeMemoryBytes: Int, source: String,
                                chosenStage: Int?) throws -> NodeVerdict {
        guard ranksPerNode >= 1, ranksPerNode <= run.ranks else {
            throw MemoryModelError("--ranks-per-node must be 1...\(run.ranks) (the ranks); got \(ranksPerNode)")
        }
        let stages = peaks(run, ranksPerNode: ranksPerNode)
        var verdict = NodeVerdict(ranksPerNode: ranksPerNode, nodeMemoryBytes: nodeMemoryBytes, nodeMemorySource: source,
                                  transient: TransientPeaks(run), stages: stages, suggestions: [])
        let chosen = chosenStage ?? 0
        guard !verdict.fits(chosen) else { return verdict }
        var ideas: [String] = []
        let gib = ByteUnit.gib
        if let s = zeroStages.first(where: { $0 > chosen && verdict.fits($0) }) {
            ideas.append("--stage \(s) (node peak \(gib.format(stages[s].peakBytes)) GiB)")
        }
        // Per-block activation recompute, at the chosen stage, else at stage 3.
        if !run.recompute {
            var c = run
            c.recompute = true
            c.activationBytes = nil   // what GPT allocates with recompute in this precision
            let p = peaks(c, ranksPerNode: ranksPerNode)
            if let s = (chosen < 3 ? [chosen, 3] : [3]).first(where: { p[$0].peakBytes <= nodeMemoryBytes }) {
                ideas.append("--stage \(s) --recompute (same bits; node peak \(gib.format(p[s].peakBytes)) GiB)")
            }
        }
        // The largest micro-batch (a halving of the current one) that fits, at the chosen stage, else at stage 3.
        search: for s in chosen < 3 ? [chosen, 3] : [3] {
            var b = run.microBatch / 2
            while b >= 1 {
                var c = run
                c.microBatch = b
                c.accumulationSteps = run.accumulationSteps * run.microBatch / b
                let v = peaks(c, ranksPerNode: ranksPerNode)[s]
                if v.peakBytes <= nodeMemoryBytes {
                    let accum = run.microBatch % b == 0 ? " --grad-accum \(c.accumulationSteps) (same batch;" : " (smaller batch;"
                    ideas.append("--stage \(s) --micro-batch \(b)\(accum) node peak \(gib.format(v.peakBytes)) GiB)")
                    break search
                }
                b /= 2
            }
        }
        if let r = (1..<ranksPerNode).reversed().first(where: { peaks(run, ranksPerNode: $0)[chosen].peakBytes <= nodeMemoryBytes }) {
            ideas.append("--ranks-per-node \(r) at stage \(chosen) (the \(run.ranks) ranks over \((run.ranks + r - 1) / r) nodes)")
        }
        if ideas.isEmpty {
            ideas.append("nothing tried fits: more nodes with fewer ranks each, or a smaller --seq-len")
        }
        verdict.suggestions = ideas
        return verdict
    }
}

extension NodeVerdict {
    /// New `memory --json` key "node".
    public func json(shown: [Int]) -> JSONValue {
        .object([
            ("ranks_per_node", .int(ranksPerNode)), ("node_memory_bytes", .int(nodeMemoryBytes)),
            ("node_memory_source", .string(nodeMemorySource)),
            ("transient", .object([
                ("init_bytes_per_rank", .int(transient.initBytesPerRank)), ("init_file_bytes", .int(transient.initFileBytes)),
                ("save_bytes_per_rank", .int(transient.saveBytesPerRank)), ("save_rank0_extra_bytes", .int(transient.saveRootExtraBytes)),
            ])),
            ("stages", .array(shown.map { s in
                let v = stages[s]
                return .object([("stage", .int(s)), ("steady_bytes", .int(v.steadyBytes)), ("init_peak_bytes", .int(v.initPeakBytes)),
                                ("save_peak_bytes", .int(v.savePeakBytes)), ("peak_bytes", .int(v.peakBytes)), ("fits", .bool(fits(s)))])
            })),
            ("suggestions", .array(suggestions.map(JSONValue.string))),
        ])
    }

    /// The node section of the human report.
    public func text(shown: [Int]) -> String {
        let gib = ByteUnit.gib
        var out = "\nPer node: \(ranksPerNode) rank\(ranksPerNode == 1 ? "" : "s") sharing \(gib.format(nodeMemoryBytes)) GiB (\(nodeMemorySource)).\n"
        var rows = [["GiB per node"] + shown.map { "stage \($0)" }]
        rows.append(["steady (ranks x (total + overhead))"] + shown.map { gib.format(stages[$0].steadyBytes) })
        rows.append(["while loading --init"] + shown.map { gib.format(stages[$0].initPeakBytes) })
        rows.append(["while saving a checkpoint"] + shown.map { gib.format(stages[$0].savePeakBytes) })
        rows.append(["peak"] + shown.map { gib.format(stages[$0].peakBytes) })
        rows.append(["fits the node"] + shown.map { fits($0) ? "yes" : "NO" })
        out += MemoryReport.table(rows)
        out += "Transients per rank: --init \(ByteUnit.mib.format(transient.initBytesPerRank)) MiB (+ the file once per node, "
            + "\(ByteUnit.mib.format(transient.initFileBytes)) MiB); checkpoint save \(ByteUnit.mib.format(transient.saveBytesPerRank)) MiB "
            + "(+ \(ByteUnit.mib.format(transient.saveRootExtraBytes)) MiB on rank 0).\n"
        if !suggestions.isEmpty {
            out += "Does not fit the node. Would fit: " + suggestions.joined(separator: "; or ") + ".\n"
        }
        return out
    }
}
