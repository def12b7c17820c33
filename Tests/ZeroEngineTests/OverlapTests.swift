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

    @Test("with overlap the metrics keep step = compute + wait, and collectives are in flight at least as long as waited for")
    func metricsWithOverlap() throws {
        let path = temporaryDirectory("overlap-metrics").appendingPathComponent("m.jsonl").path
        var options = RunOptions()
        options.metricsPath = path
        options.log = { _ in }
        let opts = options
        var config = tinyConfig(stage: 3, steps: 2)
        config.overlap = .on
        let train = config
        _ = try SimulatedCluster.run(ranks: 2, timeout: .seconds(120)) { comm in
            try runTraining(config: train, communicator: comm, options: opts)
        }
        let steps = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            .filter { $0["final"] == nil }
        #expect(steps.count == 2)
        for s in steps {
            let step = try #require(s["step_seconds"] as? Double)
            let compute = try #require(s["compute_seconds"] as? Double)
            let comm = try #require(s["comm_seconds"] as? Double)
            let wait = try #require(s["comm_wait_seconds"] as? Double)
            #expect(comm > 0 && comm >= wait)
            #expect(compute > 0 && abs(compute + wait - step) < 1e-9)
        }
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
