import Foundation
import Testing

/// `--resume` continues the saved configuration: flags need not be repeated, explicit ones
/// override, and a change of the math or of the data is refused unless allowed.
@Suite(.serialized) struct ResumeConfigCLITests {
    static let run = ["--simulate", "2", "--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "16", "--global-micro-batches", "2",
                      "--lr", "0.01", "--min-lr", "0.001", "--schedule", "constant", "--log-every", "0"]

    static func sha(_ metrics: URL) throws -> String {
        let last = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").last!
        let object = try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
        return object["params_sha256"] as! String
    }

    @Test func resumeReusesTheSavedConfigurationAndRefusesChanges() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-resume-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 200).utf8).write(to: data)
        let save = dir.appendingPathComponent("ckpt").path
        let straightMetrics = dir.appendingPathComponent("straight.jsonl"), resumedMetrics = dir.appendingPathComponent("resumed.jsonl")

        let straight = try runProcess(zeroTrainBinary(), Self.run + ["--data", data.path, "--steps", "3", "--metrics", straightMetrics.path],
                                      timeout: .seconds(120))
        #expect(straight.status == 0, "\(straight.stderr)")
        let first = try runProcess(zeroTrainBinary(), Self.run + ["--data", data.path, "--steps", "2", "--save", save], timeout: .seconds(120))
        #expect(first.status == 0, "\(first.stderr)")

        // Only --resume, --steps and --simulate: the model, data, LR, batch shape come from the checkpoint.
        let resumed = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "3", "--simulate", "1", "--metrics", resumedMetrics.path],
                                     timeout: .seconds(120))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("gpt-tiny") && resumed.stdout.contains("at step 2"))
        #expect(try Self.sha(resumedMetrics) == Self.sha(straightMetrics))

        // A changed hyper-parameter is named and refused; --allow-config-change lets it through.
        let changed = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "3", "--simulate", "2", "--lr", "0.02", "--beta2", "0.9"],
                                     timeout: .seconds(60))
        #expect(changed.status != 0)
        #expect(changed.stderr.contains("--lr 0.01 -> 0.02; --beta2 0.95 -> 0.9; pass --allow-config-change"), "\(changed.stderr)")
        #expect(changed.stderr.split(separator: "\n").count == 1)
        let regrouped = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "3", "--simulate", "2", "--global-micro-batches", "4"],
                                       timeout: .seconds(60))
        #expect(regrouped.stderr.contains("micro-batches per step (G) 2 -> 4"), "\(regrouped.stderr)")
        let allowed = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "3", "--simulate", "2", "--lr", "0.02", "--allow-config-change"],
                                     timeout: .seconds(120))
        #expect(allowed.status == 0, "\(allowed.stderr)")

        // Other data under the same path is refused.
        try Data(String(repeating: "a different corpus entirely. ", count: 300).utf8).write(to: data)
        let otherData = try runProcess(zeroTrainBinary(), ["--resume", save, "--steps", "4", "--simulate", "2"], timeout: .seconds(60))
        #expect(otherData.status != 0)
        #expect(otherData.stderr.contains("data \(data.path) ("), "\(otherData.stderr)")
    }
}
