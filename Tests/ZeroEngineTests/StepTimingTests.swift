import Foundation
import Testing
import ZeroComm
import ZeroEngine

@Suite("Per-step compute and communication time in the metrics")
struct StepTimingTests {
    @Test("every step records compute_seconds, comm_seconds and comm_wait_seconds that add up to step_seconds",
          arguments: [OverlapMode.off, .on])
    func metricsCarryStepTiming(overlap: OverlapMode) throws {
        let dir = temporaryDirectory("step-timing-\(overlap)")
        let path = dir.appendingPathComponent("m.jsonl").path
        var options = RunOptions()
        options.metricsPath = path
        options.log = { _ in }
        let opts = options
        var config = tinyConfig(stage: 3, steps: 2)
        config.overlap = overlap
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
            let threadCPU = try #require(s["comm_thread_cpu_seconds"] as? Double)
            // Stage 3 gathers and reduces every unit each step: communication is never zero.
            #expect(comm > 0 && wait > 0)
            if overlap == .off {
                #expect(comm == wait && threadCPU == 0)  // collectives block the rank's own thread
            } else {
                #expect(comm >= wait && threadCPU > 0)   // a wait lies inside an in-flight interval
            }
            #expect(compute > 0 && abs(compute + wait - step) < 1e-9)
        }
    }
}
