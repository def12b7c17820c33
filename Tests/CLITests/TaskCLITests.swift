import Foundation
import Testing

/// `--task classify|contrastive` through the binary: mpirun equals simulation bit for bit, the
/// file formats load, and a classify run records its recall per class.
@Suite(.serialized) struct TaskCLITests {
    static let classify = ["--model", "mlp", "--task", "classify", "--micro-batch", "8", "--global-micro-batches", "4",
                           "--steps", "3", "--lr", "0.003", "--warmup", "1", "--log-every", "0"]

    static func finalRecord(_ path: String) throws -> [String: Any] {
        let last = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").last!
        return try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
    }

    func directory(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-task-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test(arguments: [["--loss", "focal"], ["--task", "contrastive", "--loss", "infonce"],
                      ["--task", "contrastive", "--loss", "triplet", "--margin", "0.5"],
                      ["--loss", "cross_entropy", "--label-smoothing", "0.1", "--l1", "1e-4", "--l2", "0.01"]])
    func mpiEqualsSimulation(extra: [String]) throws {
        let dir = directory("mpi")
        let mpi = dir.appendingPathComponent("mpi.jsonl").path, sim = dir.appendingPathComponent("sim.jsonl").path
        let a = try runMPI(ranks: 2, Self.classify + extra + ["--stage", "3", "--metrics", mpi], timeout: .seconds(120))
        #expect(a.status == 0, "mpirun failed: \(a.stderr)")
        let b = try runProcess(zeroTrainBinary(), Self.classify + extra + ["--simulate", "4", "--stage", "1", "--metrics", sim], timeout: .seconds(120))
        #expect(b.status == 0, "simulation failed: \(b.stderr)")
        let x = try Self.finalRecord(mpi), y = try Self.finalRecord(sim)
        #expect(x["params_sha256"] as? String == y["params_sha256"] as? String)
        if !extra.contains("contrastive") {
            let recall = x["recall_per_class"] as? [Double]
            #expect(recall?.count == 4 && recall == (y["recall_per_class"] as? [Double]), "\(x)")
        }
    }

    /// The same rows as CSV and as a .npy pair train to the same bits.
    @Test func csvAndNpyGiveTheSameRun() throws {
        let dir = directory("files")
        var csv = "f0,f1,f2,label\n"
        var xs: [Float] = [], ys: [Int32] = []
        for i in 0..<40 {
            let row = (0..<3).map { Float((i * 7 + $0 * 3) % 11) / 4 - 1 }
            xs += row; ys.append(Int32(i % 3))
            csv += row.map { "\($0)" }.joined(separator: ",") + ",\(i % 3)\n"
        }
        try csv.write(to: dir.appendingPathComponent("rows.csv"), atomically: true, encoding: .utf8)
        func npy(_ descr: String, _ shape: String, _ body: Data) -> Data {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
            while (11 + header.utf8.count) % 64 != 0 { header += " " }
            header += "\n"
            return Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0, UInt8(header.utf8.count), 0]) + Data(header.utf8) + body
        }
        try npy("<f4", "(40, 3)", xs.withUnsafeBytes { Data($0) }).write(to: dir.appendingPathComponent("rows.npy"))
        try npy("<i4", "(40,)", ys.withUnsafeBytes { Data($0) }).write(to: dir.appendingPathComponent("rows.labels.npy"))
        var shas: [String] = []
        for file in ["rows.csv", "rows.npy"] {
            let metrics = dir.appendingPathComponent("\(file).jsonl").path
            let r = try runProcess(zeroTrainBinary(), Self.classify + ["--data", dir.appendingPathComponent(file).path, "--val-fraction", "0.25",
                                                                        "--metrics", metrics], timeout: .seconds(60))
            #expect(r.status == 0, "\(file): \(r.stderr)")
            #expect(r.stdout.contains("validation recall per class"), "\(r.stdout)")
            shas.append(try Self.finalRecord(metrics)["params_sha256"] as? String ?? "")
        }
        #expect(shas[0] == shas[1] && !shas[0].isEmpty)
        // Labels where the features belong: named, one line.
        try FileManager.default.copyItem(at: dir.appendingPathComponent("rows.labels.npy"), to: dir.appendingPathComponent("swapped.npy"))
        try FileManager.default.copyItem(at: dir.appendingPathComponent("rows.labels.npy"), to: dir.appendingPathComponent("swapped.labels.npy"))
        let bad = try runProcess(zeroTrainBinary(), Self.classify + ["--data", dir.appendingPathComponent("swapped.npy").path], timeout: .seconds(60))
        #expect(bad.status != 0 && bad.stderr.contains("features must be a float array"), "\(bad.stderr)")
    }
}
