import ArgumentParser
import Foundation
import ZeroOptim
import ZeroTensor

/// `zero-train bench optimizer`: one optimizer step over a large shard, next to plain memcpy
/// bandwidth measured in the same run (the limit a streaming update chases).
struct BenchOptimizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimizer",
        abstract: "Fused optimizer step (bf16 write-back) over one shard vs memcpy bandwidth.")

    @Option(help: "Parameters in the shard.") var params = 16_777_216
    @Option(help: "Timed steps per optimizer (median reported).") var repeats = 9
    @Option(help: "Comma-separated optimizers to time (adamw, lion, adamw8bit, ...).") var optimizers = "adamw,lion,adamw8bit"
    @Flag(help: "JSON lines instead of a table.") var json = false

    func validate() throws {
        guard params > 0, repeats > 0 else { throw ValidationError("--params and --repeats must be positive") }
        for name in optimizers.split(separator: ",") where OptimizerKind(rawValue: String(name)) == nil {
            throw ValidationError("unknown optimizer '\(name)'; one of \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if optimizers.split(separator: ",").contains("lbfgs") {
            throw ValidationError("lbfgs has no per-shard step to time: it re-evaluates the model through a closure")
        }
    }

    /// Bytes each step must move per parameter (reads + writes), as the issue counts them.
    static func bytesPerParameter(_ kind: OptimizerKind) -> Double {
        switch kind {
        case .adamw, .adam: return 28          // as the issue counts it (reads g p m v 16, writes p m v 12); the bf16 write adds 2 more
        case .lion: return 22                  // read g, p, m; write p, m, bf16
        case .adamw8bit: return 18             // read g, p, qm, qv; write p, qm, qv, bf16 (absmax negligible)
        case .sgd: return 10                   // read g, p; write p, bf16
        case .adagrad, .rmsprop: return 22
        case .adafactor: return 14
        case .lbfgs: return 0                  // not a per-shard kernel: refused in validate()
        }
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        return (ContinuousClock.now - start).seconds
    }

    /// memcpy of a 256 MiB buffer: bytes read + written per second (median).
    func copyBandwidth() -> Double {
        let bytes = 256 << 20
        let src = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 1, bytes)
        memset(dst, 0, bytes)
        let times = (0..<repeats).map { _ in Self.seconds { memcpy(dst, src, bytes) } }
        return Double(2 * bytes) / Self.median(times)
    }

    func run() throws {
        let copy = copyBandwidth()
        let n = params
        let master = FlatBuffer<Float>(count: n, category: .master, ledger: nil)
        let gradient = FlatBuffer<Float>(count: n, category: .gradients, ledger: nil)
        let working = FlatBuffer<UInt16>(count: n, category: .weights, ledger: nil)
        for i in 0..<n {
            master[i] = Float(i % 1000) * 1e-3 - 0.5
            gradient[i] = Float((i * 7) % 1000) * 1e-4 - 0.05
        }
        if !json {
            print("optimizer step over \(n) parameters, bf16 write-back, median of \(repeats)")
            print("memcpy: \(String(format: "%.2f", copy / 1e9)) GB/s (read + write)")
            print("optimizer   seconds   Mparam/s   bytes/param   GB/s   of copy")
        }
        for name in optimizers.split(separator: ",") {
            let kind = OptimizerKind(rawValue: String(name))!
            var config = OptimizerConfig(kind: kind)
            if kind == .sgd { config.momentum = 0.9 }
            let shapes: [ParameterShape]? = kind == .adafactor ? [ParameterShape(range: 0..<n, rows: n / 4096 > 1 ? n / 4096 : 1, cols: n / 4096 > 1 ? 4096 : n)] : nil
            let opt = try makeOptimizer(config, count: n, decaySegments: [0..<n], parameterShapes: shapes, ledger: nil)
            var step = 0
            func once() throws {
                step += 1
                try opt.step(master: master.pointer, gradient: gradient.readOnly, working: working.pointer,
                             context: StepContext(step: step, learningRate: 1e-3))
            }
            try once()  // first touch of the state pages
            let times = try (0..<repeats).map { _ in try Self.seconds { try once() } }
            let t = Self.median(times)
            let bpp = Self.bytesPerParameter(kind)
            let pps = Double(n) / t, bps = pps * bpp
            if json {
                let line: [String: Any] = [
                    "bench": "optimizer", "optimizer": kind.rawValue, "params": n, "seconds": t,
                    "params_per_second": pps, "bytes_per_param": bpp, "bytes_per_second": bps,
                    "copy_bytes_per_second": copy, "fraction_of_copy": bps / copy,
                ]
                let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(String(format: "%-10@ %8.4f %10.1f %13.0f %6.2f %8.0f%%", kind.rawValue as NSString, t, pps / 1e6, bpp, bps / 1e9, 100 * bps / copy))
            }
        }
    }
}
