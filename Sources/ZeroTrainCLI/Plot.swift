import ArgumentParser
import Foundation
import ZeroEngine

/// `zero-train plot`: a metrics file (--metrics, one JSON object per step) drawn as one
/// self-contained SVG (or an HTML page holding it): loss and val_loss, learning rate,
/// gradient norm, tokens/s and peak memory per rank against the step. No Python, no
/// scripts, no external assets.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a metrics .jsonl as an SVG (or HTML): loss, val_loss, LR, grad norm, tokens/s, peak memory per rank.",
        discussion: "Example: zero-train --metrics m.jsonl && zero-train plot m.jsonl --out run.svg"
    )

    @Argument(help: "Metrics file written by --metrics.") var metrics: String
    @Option(help: "Output .svg, or .html for a page holding the picture.") var out: String

    func run() throws {
        do {
            let text: String
            do { text = try String(contentsOfFile: metrics, encoding: .utf8) } catch {
                throw ConfigError("cannot read \(metrics): \((error as NSError).localizedDescription)")
            }
            let records = try MetricsRecord.parse(text, source: metrics)
            let svg = renderRunSVG(records, title: URL(fileURLWithPath: metrics).lastPathComponent)
            let ext = URL(fileURLWithPath: out).pathExtension.lowercased()
            guard ext == "svg" || ext == "html" || ext == "htm" else { throw ConfigError("--out must end in .svg or .html") }
            let body = ext == "svg" ? svg : """
                <!DOCTYPE html>
                <html><head><meta charset="utf-8"><title>\(xmlEscape(metrics))</title></head>
                <body style="margin:0;background:#fff">
                \(svg)
                </body></html>

                """
            do { try Data(body.utf8).write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw ConfigError("cannot write \(out): \((error as NSError).localizedDescription)")
            }
            print("wrote \(out) (\(records.count) steps, \(records.first!.step)...\(records.last!.step))")
        } catch {
            fail(error)
        }
    }
}

/// One step line of a metrics file (the final summary line and unknown keys are skipped).
struct MetricsRecord: Decodable {
    var step: Int
    var loss: Double?
    var val_loss: Double?
    var lr: Double?
    var grad_norm: Double?
    var tokens_per_second: Double?
    var peak_ledger_bytes_per_rank: [Double]?

    static func parse(_ text: String, source: String) throws -> [MetricsRecord] {
        struct Probe: Decodable { var step: Int? }
        var records: [MetricsRecord] = []
        for (i, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let data = Data(line.utf8)
            guard let probe = try? JSONDecoder().decode(Probe.self, from: data) else {
                throw ConfigError("\(source):\(i + 1): not a JSON object of a metrics file")
            }
            guard probe.step != nil else { continue }   // the final summary line
            do { records.append(try JSONDecoder().decode(MetricsRecord.self, from: data)) } catch {
                throw ConfigError("\(source):\(i + 1): unexpected value types in a metrics line")
            }
        }
        guard !records.isEmpty else { throw ConfigError("\(source): no step lines (write one with zero-train --metrics FILE)") }
        return records
    }
}

/// One line of a panel: a name (also the SVG `data-series` attribute) and (step, value) points.
struct Series {
    var name: String
    var points: [(Double, Double)]
}

private let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

/// The picture: one panel per quantity, stacked, sharing the step axis.
func renderRunSVG(_ records: [MetricsRecord], title: String) -> String {
    func series(_ name: String, _ value: (MetricsRecord) -> Double?) -> Series {
        Series(name: name, points: records.compactMap { r in value(r).flatMap { $0.isFinite ? (Double(r.step), $0) : nil } })
    }
    let ranks = records.map { $0.peak_ledger_bytes_per_rank?.count ?? 0 }.max() ?? 0
    let memory = (0..<ranks).map { k in
        series("peak_memory_rank\(k)") { r in r.peak_ledger_bytes_per_rank.flatMap { k < $0.count ? $0[k] / 1_048_576 : nil } }
    }
    let panels: [(String, [Series])] = [
        ("loss", [series("loss", \.loss), series("val_loss", \.val_loss)]),
        ("learning rate", [series("lr", \.lr)]),
        ("gradient norm (before clipping)", [series("grad_norm", \.grad_norm)]),
        ("tokens / s", [series("tokens_per_second", \.tokens_per_second)]),
        ("peak memory per rank (MiB, ledger)", memory),
    ].map { ($0.0, $0.1.filter { !$0.points.isEmpty }) }.filter { !$0.1.isEmpty }
    let steps = records.map { Double($0.step) }
    let xRange = (steps.min()!, max(steps.max()!, steps.min()! + 1))
    let width = 860.0, panelHeight = 200.0, top = 40.0, gap = 30.0
    let height = top + Double(panels.count) * (panelHeight + gap) + 20
    var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2))" y="22" text-anchor="middle" font-size="15">\(xmlEscape(title)): steps \(records.first!.step)-\(records.last!.step)</text>

        """
    for (i, panel) in panels.enumerated() {
        svg += renderPanel(panel.0, panel.1, x: 70, y: top + Double(i) * (panelHeight + gap), width: width - 230, height: panelHeight, xRange: xRange)
    }
    return svg + "</svg>\n"
}

/// One panel: frame, y ticks at min/mid/max, x ticks at the first/mid/last step, legend.
func renderPanel(_ title: String, _ series: [Series], x: Double, y: Double, width: Double, height: Double, xRange: (Double, Double)) -> String {
    let values = series.flatMap { $0.points.map(\.1) }
    var lo = values.min()!, hi = values.max()!
    if hi - lo < 1e-12 * max(abs(hi), 1) { lo -= max(abs(lo) * 0.05, 1e-12); hi += max(abs(hi) * 0.05, 1e-12) }
    func px(_ s: Double) -> Double { x + (s - xRange.0) / (xRange.1 - xRange.0) * width }
    func py(_ v: Double) -> Double { y + height - (v - lo) / (hi - lo) * height }
    func f(_ v: Double) -> String { String(format: "%.1f", v) }
    var s = "<g class=\"panel\" data-panel=\"\(xmlEscape(title))\">\n"
    s += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"none\" stroke=\"#888\"/>\n"
    s += "<text x=\"\(f(x))\" y=\"\(f(y - 6))\" font-size=\"12\" font-weight=\"bold\">\(xmlEscape(title))</text>\n"
    for v in [lo, (lo + hi) / 2, hi] {
        s += "<line x1=\"\(f(x))\" y1=\"\(f(py(v)))\" x2=\"\(f(x + width))\" y2=\"\(f(py(v)))\" stroke=\"#eee\"/>"
        s += "<text x=\"\(f(x - 4))\" y=\"\(f(py(v) + 4))\" text-anchor=\"end\">\(tick(v))</text>\n"
    }
    for st in [xRange.0, (xRange.0 + xRange.1) / 2, xRange.1] {
        s += "<text x=\"\(f(px(st)))\" y=\"\(f(y + height + 13))\" text-anchor=\"middle\">\(tick(st.rounded()))</text>\n"
    }
    for (k, line) in series.enumerated() {
        let color = palette[k % palette.count]
        let points = line.points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
        s += "<polyline data-series=\"\(line.name)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
        if line.points.count == 1 { s += "<circle cx=\"\(f(px(line.points[0].0)))\" cy=\"\(f(py(line.points[0].1)))\" r=\"2.5\" fill=\"\(color)\"/>\n" }
        let ly = y + 12 + Double(k) * 15
        s += "<line x1=\"\(f(x + width + 10))\" y1=\"\(f(ly - 4))\" x2=\"\(f(x + width + 28))\" y2=\"\(f(ly - 4))\" stroke=\"\(color)\" stroke-width=\"2\"/>"
        s += "<text x=\"\(f(x + width + 32))\" y=\"\(f(ly))\">\(line.name) \(tick(line.points.last!.1))</text>\n"
    }
    return s + "</g>\n"
}

/// Short tick labels: 4 significant digits, exponent form for very small or large values.
func tick(_ v: Double) -> String {
    let a = abs(v)
    if a != 0 && (a < 1e-3 || a >= 1e6) { return String(format: "%.2e", v) }
    return String(format: "%.4g", v)
}

func xmlEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
