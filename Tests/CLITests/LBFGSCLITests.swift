import Foundation
import Testing

/// `--optimizer lbfgs` through the built binary: mpirun equals simulation bit for bit, and
/// what L-BFGS cannot mean is refused in one line.
@Suite(.serialized) struct LBFGSCLITests {
    static let args = ["--model", "mlp", "--micro-batch", "2", "--seq-len", "16", "--global-micro-batches", "4", "--steps", "2",
                       "--optimizer", "lbfgs", "--lr", "1", "--schedule", "constant", "--clip", "0", "--weight-decay", "0",
                       "--history", "4", "--lbfgs-iterations", "3", "--line-search", "strong_wolfe", "--precision", "fp32"]

    @Test func mpiRunEqualsSimulationBitForBit() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-lbfgs-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let one = dir.appendingPathComponent("one.jsonl").path, mpi = dir.appendingPathComponent("mpi.jsonl").path
        let a = try runProcess(zeroTrainBinary(), Self.args + ["--stage", "0", "--metrics", one], timeout: .seconds(120))
        let b = try runMPI(ranks: 2, Self.args + ["--stage", "3", "--metrics", mpi], timeout: .seconds(300))
        #expect(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
        let (x, y) = (try TrainCLITests.metrics(one), try TrainCLITests.metrics(mpi))
        #expect(x.losses.count == 2 && !x.sha.isEmpty && x.sha == y.sha && x.losses == y.losses)
        let record = try String(contentsOfFile: one, encoding: .utf8).split(separator: "\n")[1]
        #expect(record.contains("\"lbfgs_iterations\": ") && record.contains("\"lbfgs_evaluations\": "), "\(record)")
    }

    @Test func clippingAndDecayAreRefusedInOneLine() throws {
        let r = try runProcess(zeroTrainBinary(), ["--model", "mlp", "--optimizer", "lbfgs", "--steps", "1"], timeout: .seconds(60))
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(r.status != 0 && lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("set --clip 0 --weight-decay 0"), "stderr: \(r.stderr)")
    }
}
