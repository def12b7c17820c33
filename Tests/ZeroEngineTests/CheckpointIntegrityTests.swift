import Foundation
import Testing
import ZeroComm
import ZeroEngine

/// Checkpoints that lie, timelines that share a directory, save directories that cannot
/// be written or are already taken: each is refused with one line or handled, never a
/// crash or silently wrong weights.
@Suite(.serialized) struct CheckpointIntegrityTests {
    static func manifestURL(_ step: URL) -> URL { step.appendingPathComponent("manifest.json") }

    /// Rewrites the manifest's JSON object with `edit`.
    static func editManifest(_ step: URL, _ edit: (inout [String: Any]) -> Void) throws {
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL(step))) as! [String: Any]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: manifestURL(step))
    }

    /// A 4-rank checkpoint at step 1; every lie in its manifest is refused with one line, on
    /// resume and by the reader `export` uses.
    @Test func editedManifestsAreRefusedWithOneLine() throws {
        let dir = temporaryDirectory("lies")
        var c = tinyConfig(stage: 2, globalMicroBatches: 4, steps: 1)
        c.save = dir.path
        _ = try simulate(c, ranks: 4)
        let step = dir.appendingPathComponent("step-00000001")
        let original = try Data(contentsOf: Self.manifestURL(step))
        let edits: [(String, (inout [String: Any]) -> Void, String)] = [
            ("ranks 0", { $0["ranks"] = 0 }, "ranks is 0"),
            ("ranks 2", { $0["ranks"] = 2 }, "4 shard files listed for 2 ranks"),
            ("padded 0", { m in
                var units = m["units"] as! [[String: Any]]
                units[0]["padded"] = 0
                m["units"] = units
            }, "padded to 0"),
            ("swapped files", { m in
                var files = m["files"] as! [[String: Any]]
                files.swapAt(0, 1)
                m["files"] = files
            }, "file entry 0 is rank-00001.safetensors"),
            ("duplicated file", { m in
                var files = m["files"] as! [[String: Any]]
                files[1] = files[0]
                m["files"] = files
            }, "file entry 1 is rank-00000.safetensors"),
            ("changed step", { $0["step"] = 7 }, "step 7 in a directory named step-00000001"),
            ("negative step", { $0["step"] = -1; $0["updatesApplied"] = 0 }, "step -1"),
        ]
        var more = tinyConfig(stage: 2, globalMicroBatches: 4, steps: 2)
        more.save = dir.path
        for (what, edit, message) in edits {
            try original.write(to: Self.manifestURL(step))
            try Self.editManifest(step, edit)
            do { _ = try simulate(more, ranks: 4, resume: step); Issue.record("\(what): resumed") } catch {
                #expect("\(error)".contains(message), "\(what): \(error)")
                #expect(!"\(error)".contains("\n"), "\(what): \(error)")
            }
            #expect(throws: (any Error).self, "\(what): export read it") { _ = try CheckpointReader(step) }
        }

        // Renamed shard files with the manifest's hashes swapped to match: the shards' own
        // headers say which rank wrote them.
        try original.write(to: Self.manifestURL(step))
        let r0 = step.appendingPathComponent("rank-00000.safetensors"), r1 = step.appendingPathComponent("rank-00001.safetensors")
        let (d0, d1) = (try Data(contentsOf: r0), try Data(contentsOf: r1))
        try d1.write(to: r0)
        try d0.write(to: r1)
        try Self.editManifest(step) { m in
            var files = m["files"] as! [[String: Any]]
            (files[0]["sha256"], files[1]["sha256"]) = (files[1]["sha256"]!, files[0]["sha256"]!)
            (files[0]["bytes"], files[1]["bytes"]) = (files[1]["bytes"]!, files[0]["bytes"]!)
            m["files"] = files
        }
        do { _ = try simulate(more, ranks: 4, resume: step); Issue.record("resumed swapped shards") } catch {
            #expect("\(error)".contains("it is rank 1's shard, listed as rank 0's"), "\(error)")
        }
    }

    /// A shard from another run (same step, rank and sizes, manifest hash fixed to match)
    /// is refused by its run id.
    @Test func shardFromAnotherRunIsRefused() throws {
        let a = temporaryDirectory("run-a"), b = temporaryDirectory("run-b")
        var c = tinyConfig(stage: 1, globalMicroBatches: 2, steps: 1)
        c.save = a.path
        _ = try simulate(c, ranks: 2)
        c.save = b.path
        c.seed = 7
        _ = try simulate(c, ranks: 2)
        let stepA = a.appendingPathComponent("step-00000001"), stepB = b.appendingPathComponent("step-00000001")
        let foreign = try Data(contentsOf: stepB.appendingPathComponent("rank-00001.safetensors"))
        try foreign.write(to: stepA.appendingPathComponent("rank-00001.safetensors"))
        let manifestB = try Checkpoint.readManifest(stepB)
        try Self.editManifest(stepA) { m in
            var files = m["files"] as! [[String: Any]]
            files[1]["sha256"] = manifestB.files[1].sha256
            files[1]["bytes"] = manifestB.files[1].bytes
            m["files"] = files
        }
        do { _ = try CheckpointReader(stepA); Issue.record("read a foreign shard") } catch {
            #expect("\(error)".contains("was written by run \(manifestB.runId!)"), "\(error)")
        }
    }

    /// Resuming an older step into the same directory starts a new timeline: the old
    /// timeline's later checkpoints survive (pruning and saving leave them alone) and
    /// `--resume DIR` follows the new timeline, not the old one's higher step.
    @Test func timelinesShareADirectoryWithoutHarm() throws {
        let dir = temporaryDirectory("timelines")
        var a = tinyConfig(stage: 2, globalMicroBatches: 2, steps: 4)
        a.schedule = .constant   // runs of different lengths share one schedule
        a.save = dir.path
        a.saveEvery = 1
        a.keep = 10
        _ = try simulate(a, ranks: 2)
        let runA = try Checkpoint.readManifest(dir.appendingPathComponent("step-00000004")).runId!

        // B resumes from step 2 and runs to step 5 (keep 2): saves 3, 4 (as step-N.RUNID:
        // A's step-N is another timeline's) and 5.
        var b = a
        b.steps = 5
        b.keep = 2
        let straight = try simulate({ var s = b; s.save = nil; s.saveEvery = 0; return s }(), ranks: 2)
        let resumedB = try simulate(b, ranks: 2, resume: dir.appendingPathComponent("step-00000002"))
        #expect(resumedB.paramsSHA256 == straight.paramsSHA256)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("step-") }.sorted()
        let runB = try Checkpoint.readManifest(dir.appendingPathComponent("step-00000005")).runId!
        // B's timeline: A1, A2 (ancestors), B3, B4, B5: the newest 2 stay. A3 and A4 are untouched.
        #expect(names == ["step-00000003", "step-00000004", "step-00000004.\(runB)", "step-00000005"], "\(names)")
        #expect(try Checkpoint.readManifest(dir.appendingPathComponent("step-00000004")).runId == runA)
        let lineage = try #require(Checkpoint.readManifest(dir.appendingPathComponent("step-00000005")).lineage)
        #expect(lineage == [.init(runId: runA, step: 2)])
        #expect(try Checkpoint.resolve(dir).lastPathComponent == "step-00000005")

        // Continuing B from the root reaches the same bits as a straight run to step 6.
        var c = b
        c.steps = 6
        let straight6 = try simulate({ var s = c; s.save = nil; s.saveEvery = 0; return s }(), ranks: 2)
        let continued = try simulate(c, ranks: 2, resume: dir)
        #expect(continued.paramsSHA256 == straight6.paramsSHA256)
    }

    /// An unusable --save is refused before step 1 with one line naming the path; a save
    /// directory held by another job is refused naming the holder.
    @Test func saveDirectoryIsCheckedAndLockedAtStartUp() throws {
        let dir = temporaryDirectory("savecheck")
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        var c = tinyConfig(stage: 1, globalMicroBatches: 2, steps: 1)
        for (path, message) in [(file.path, "is a file, not a directory"),
                                (file.appendingPathComponent("sub").path, "cannot create the directory"),
                                ("/proc/zero-train-save", "cannot create the directory")] {
            c.save = path
            do { _ = try simulate(c, ranks: 2); Issue.record("accepted --save \(path)") } catch {
                #expect("\(error)".contains("--save \(path)") && "\(error)".contains(message), "\(error)")
            }
        }

        let root = dir.appendingPathComponent("locked")
        var held: SaveDirectoryLock? = try SaveDirectoryLock(root: root)
        c.save = root.path
        do { _ = try simulate(c, ranks: 2); Issue.record("shared a locked directory") } catch {
            #expect("\(error)".contains("is in use by another zero-train job (host"), "\(error)")
            #expect("\(error)".contains("pid \(getpid())"), "\(error)")
        }
        #expect(held != nil)
        held = nil   // released: the next job takes the directory
        // Stale debris of a dead writer goes when the next job takes the directory.
        let debris = root.appendingPathComponent("step-00000009")
        try FileManager.default.createDirectory(at: debris, withIntermediateDirectories: true)
        try Data("half".utf8).write(to: debris.appendingPathComponent(".rank-00000.safetensors.tmp-99999"))
        _ = try simulate(c, ranks: 2)
        #expect(!FileManager.default.fileExists(atPath: debris.path))
        #expect(FileManager.default.fileExists(atPath: Self.manifestURL(root.appendingPathComponent("step-00000001")).path))
    }
}
