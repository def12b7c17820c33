import Foundation
import Testing
import ZeroComm
import ZeroEngine

/// `--overlap on` runs the same collectives in the same order on a communication thread:
/// the bits equal the blocking run's for every stage, rank count and precision.
@Suite("Overlapped communication")
struct OverlapTests {
    @Test(arguments: [0, 1, 2, 3])
    func overlapKeepsTheBits(stage: Int) throws {
        for (ranks, precision) in [(2, "bf16"), (4, "bf16"), (2, "fp32")] {
            var config = tinyConfig(stage: stage)
            config.precision = PrecisionName(rawValue: precision)!
            config.overlap = .off
            let blocking = try simulate(config, ranks: ranks)
            config.overlap = .on
            let overlapped = try simulate(config, ranks: ranks)
            #expect(overlapped.paramsSHA256 == blocking.paramsSHA256, "stage \(stage), \(ranks) ranks, \(precision)")
            #expect(bits(overlapped.losses) == bits(blocking.losses))
            #expect(bits(overlapped.gradNorms) == bits(blocking.gradNorms))
            // The same reductions moved the same bytes (the config broadcast differs by "on" vs
            // "off"); stage 3 keeps the last op's units gathered from its forward to its
            // backward, one all-gather of them less per micro-batch.
            for kind in [CollectiveKind.allReduce, .reduceScatter] {
                #expect(overlapped.traffic.sent[kind] == blocking.traffic.sent[kind])
                #expect(overlapped.traffic.received[kind] == blocking.traffic.received[kind])
            }
            let gathered = (overlapped.traffic.sent[.allGather] ?? 0, blocking.traffic.sent[.allGather] ?? 0)
            #expect(stage == 3 ? gathered.0 < gathered.1 : gathered.0 == gathered.1)
        }
        // And both are the one-rank result (G = 8 on 1, 2 or 4 ranks).
        var one = tinyConfig(stage: 0)
        one.overlap = .on
        var four = tinyConfig(stage: stage)
        four.overlap = .on
        #expect(try simulate(four, ranks: 4).paramsSHA256 == simulate(one, ranks: 1).paramsSHA256)
    }

    @Test("auto overlaps only across hosts; a single rank never")
    func autoResolves() {
        #expect(OverlapMode.auto.resolved(ranks: 4, spansHosts: true))
        #expect(!OverlapMode.auto.resolved(ranks: 4, spansHosts: false))
        #expect(OverlapMode.on.resolved(ranks: 2, spansHosts: false))
        #expect(!OverlapMode.on.resolved(ranks: 1, spansHosts: true))
        #expect(!OverlapMode.off.resolved(ranks: 4, spansHosts: true))
        #expect(TrainingConfig().overlap == .auto)
    }
}
