import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// `zero-train plot` through the binary, and the progress line's elapsed time and ETA.
@Suite(.serialized) struct PlotCLITests {
    static func scratch(_ name: String) -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-plot-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name)
    }

    /// Every <polyline>'s data-series and points, and whether the document parsed as XML.
    final class SVGReader: NSObject, XMLParserDelegate {
        var root: String?
        var series: [String: [(Double, Double)]] = [:]
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if root == nil { root = name }
            guard name == "polyline", let s = attributes["data-series"], let p = attributes["points"] else { return }
            series[s] = p.split(separator: " ").map { pair in
                let xy = pair.split(separator: ",").map { Double($0)! }
                return (xy[0], xy[1])
            }
        }
        static func read(_ url: URL) throws -> SVGReader? {
            let reader = SVGReader()
            let parser = XMLParser(data: try Data(contentsOf: url))
            parser.delegate = reader
            return parser.parse() ? reader : nil
        }
    }

    @Test func drawsEverySeriesFromAMetricsFile() throws {
        // 6 steps, val_loss on steps 3 and 6, two ranks; loss falls, memory of rank 1 grows.
        var lines: [String] = []
        for step in 1...6 {
            var fields = ["\"step\": \(step)", "\"loss\": \(6.0 - Double(step) * 0.5)", "\"lr\": \(Double(step) * 1e-4)",
                          "\"grad_norm\": \(1.0 + Double(step % 2))", "\"tokens_per_second\": 1000",
                          "\"peak_ledger_bytes_per_rank\": [\(100 << 20), \((100 + step) << 20)]", "\"skipped\": false"]
            if step % 3 == 0 { fields.append("\"val_loss\": \(6.2 - Double(step) * 0.5)") }
            lines.append("{" + fields.joined(separator: ", ") + "}")
        }
        lines.append(#"{"final": true, "steps": 6, "params_sha256": "ab"}"#)
        let metrics = Self.scratch("m.jsonl"), svg = Self.scratch("m.svg")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: metrics)
        let r = try runProcess(zeroTrainBinary(), ["plot", metrics.path, "--out", svg.path], timeout: .seconds(60))
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(try SVGReader.read(svg), "not well-formed XML")
        #expect(doc.root == "svg")
        #expect(Set(doc.series.keys) == ["loss", "val_loss", "lr", "grad_norm", "tokens_per_second", "peak_memory_rank0", "peak_memory_rank1"])
        #expect(doc.series["loss"]!.count == 6 && doc.series["val_loss"]!.count == 2 && doc.series["peak_memory_rank1"]!.count == 6)
        // Step grows to the right; a falling loss goes down the picture (SVG y grows downwards).
        let loss = doc.series["loss"]!
        #expect(zip(loss, loss.dropFirst()).allSatisfy { $0.0 < $1.0 && $0.1 < $1.1 })
        let lr = doc.series["lr"]!
        #expect(zip(lr, lr.dropFirst()).allSatisfy { $0.1 > $1.1 })   // rising LR goes up
        // val_loss points sit at steps 3 and 6: the x of loss's third and sixth points.
        #expect(doc.series["val_loss"]!.map(\.0) == [loss[2].0, loss[5].0])

        let html = Self.scratch("m.html")
        let h = try runProcess(zeroTrainBinary(), ["plot", metrics.path, "--out", html.path], timeout: .seconds(60))
        let page = try String(contentsOf: html, encoding: .utf8)
        #expect(h.status == 0 && page.hasPrefix("<!DOCTYPE html>") && page.contains("<svg"))

        let empty = Self.scratch("empty.jsonl")
        try Data(#"{"final": true}"#.utf8).write(to: empty)
        let bad = try runProcess(zeroTrainBinary(), ["plot", empty.path, "--out", svg.path], timeout: .seconds(60))
        #expect(bad.status != 0 && bad.stderr.contains("no step lines") && bad.stderr.split(separator: "\n").count == 1)
    }

    @Test func progressShowsElapsedAndETAAndARealRunPlots() throws {
        let metrics = Self.scratch("run.jsonl"), svg = Self.scratch("run.svg")
        try? FileManager.default.removeItem(at: metrics)
        let train = try runProcess(zeroTrainBinary(), ["--simulate", "2", "--model", "gpt-tiny", "--steps", "4", "--micro-batch", "2",
                                                       "--seq-len", "32", "--metrics", metrics.path], timeout: .seconds(120))
        #expect(train.status == 0, "\(train.stderr)")
        let progress = train.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }
        #expect(progress.count == 4 && progress.allSatisfy { $0.contains("| elapsed ") && $0.contains("| eta ") }, "\(train.stdout)")
        #expect(progress.last!.hasSuffix("eta 0s"))
        let r = try runProcess(zeroTrainBinary(), ["plot", metrics.path, "--out", svg.path], timeout: .seconds(60))
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(try SVGReader.read(svg))
        #expect(doc.series["loss"]?.count == 4 && doc.series["peak_memory_rank1"]?.count == 4)
    }
}
