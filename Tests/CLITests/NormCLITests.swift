import Foundation
import Testing

/// `--norm batch` through the built binary: `mpirun -n 4` at stage 3 equals 2 simulated ranks
/// at stage 1 (losses, weights and the validation loss, which uses the running statistics).
@Suite(.serialized) struct NormCLITests {
    static let args = ["--model", "mlp", "--norm", "batch", "--micro-batch", "4", "--seq-len", "32", "--global-micro-batches", "4",
                       "--steps", "3", "--val-fraction", "0.05", "--eval-every", "3", "--eval-batches", "3", "--log-every", "0"]

    static func validationLoss(_ path: String) throws -> Double? {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        return lines.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["val_loss"] as? Double
        }.last
    }

    @Test func batchNormUnderMPIEqualsSimulation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-norm-cli-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let mpiMetrics = dir.appendingPathComponent("mpi.jsonl").path, simMetrics = dir.appendingPathComponent("sim.jsonl").path
        let mpi = try runProcess(URL(fileURLWithPath: "/usr/bin/env"),
                                 TrainCLITests.mpirun + [zeroTrainBinary().path, "--stage", "3", "--metrics", mpiMetrics] + Self.args,
                                 timeout: .seconds(300))
        #expect(mpi.status == 0, "mpirun failed: \(mpi.stderr)")
        let sim = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--stage", "1", "--metrics", simMetrics] + Self.args, timeout: .seconds(300))
        #expect(sim.status == 0, "simulation failed: \(sim.stderr)")
        let a = try TrainCLITests.metrics(mpiMetrics), b = try TrainCLITests.metrics(simMetrics)
        #expect(a.losses.count == 3 && a.losses == b.losses)
        #expect(!a.sha.isEmpty && a.sha == b.sha)
        let va = try Self.validationLoss(mpiMetrics), vb = try Self.validationLoss(simMetrics)
        #expect(va != nil && va == vb)
    }

    @Test func gptRefusesNormInOneLine() throws {
        let r = try runProcess(zeroTrainBinary(), ["--model", "gpt-tiny", "--seq-len", "32", "--norm", "batch", "--steps", "1"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr == "zero-train: error: --norm batch applies to the mlp model; gpt-tiny has its own LayerNorms (use --norm none)\n", "\(r.stderr)")
    }
}
