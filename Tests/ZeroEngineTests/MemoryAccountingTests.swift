import Foundation
import Testing
import ZeroComm
import ZeroEngine
import ZeroMemory
import ZeroModels
import ZeroTensor

/// The memory report's runtime plan against what the engine really allocates: every
/// category of every rank's ledger peak equals the prediction, padding included.
@Suite struct MemoryAccountingTests {
    @Test(arguments: [0, 1, 2, 3])
    func predictedEqualsMeasuredPerCategory(stage: Int) throws {
        for (ranks, accumulation, precision, recompute, overlap) in [
            (1, 3, "bf16", false, false), (2, 1, "bf16", false, false), (4, 2, "bf16", false, false),
            (2, 2, "fp32", false, false), (2, 2, "bf16", true, false), (1, 1, "fp32", true, false),
            (2, 2, "bf16", false, true), (4, 1, "fp32", false, true),
        ] {
            var config = tinyConfig(stage: stage, steps: 2)
            config.globalMicroBatches = nil
            config.gradAccum = accumulation
            config.precision = PrecisionName(rawValue: precision)!
            config.recompute = recompute
            config.overlap = overlap ? .on : .off
            let ledgers = (0..<ranks).map { _ in MemoryLedger() }
            var options = RunOptions()
            options.log = { _ in }
            let opts = options, train = config
            _ = try SimulatedCluster.run(ranks: ranks) { comm in
                try runTraining(config: train, communicator: comm, options: opts, ledger: ledgers[comm.rank])
            }
            let run = RunConfiguration(model: .tiny, ranks: ranks, stage: stage, microBatch: config.microBatch,
                                       sequenceLength: config.seqLen, accumulationSteps: accumulation,
                                       precision: precision == "bf16" ? .bf16 : .fp32, backend: .simulated,
                                       recompute: recompute, overlap: overlap)
            let predicted = MemoryReport.runtimeEstimate(run, stage: stage)
            // The report shows the last rank, whose shards are the largest (they hold the
            // padding): its ledger equals the prediction; no other rank's exceeds it.
            for (r, ledger) in ledgers.enumerated() {
                for category in MemoryCategory.allCases {
                    let (measured, planned) = (ledger.peak(category), predicted.bytes(category))
                    #expect(r == ranks - 1 ? measured == planned : measured <= planned,
                            "stage \(stage), \(ranks) ranks, A=\(accumulation), \(precision), recompute \(recompute), overlap \(overlap), rank \(r): \(category)")
                }
                #expect(r == ranks - 1 ? ledger.peakTotal == predicted.totalBytes : ledger.peakTotal <= predicted.totalBytes)
            }
        }
    }
}
