import ArgumentParser
import Foundation
import ZeroModels
import ZeroTensor

/// `zero-train bench kernels`: each elementwise kernel on a model's activation shapes, in
/// microseconds and GB/s next to memcpy of the same byte count (the ceiling at that working-set
/// size, measured in the same run) and next to the former Swift kernel (`SwiftKernels`), with a
/// check that both give the same bits.
///
/// Bytes counted: every float (or bf16) the kernel must read plus every one it writes, once;
/// the causal softmax counts the lower triangle it reads and writes plus the zeros above it.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Elementwise kernels (GELU, LayerNorm, softmax, cross-entropy, adds, bf16) vs memcpy and the former Swift kernels.")

    @Option(help: "Comma-separated model presets; each uses its benchmark micro-batch (gpt-small B 8 T 128, gpt-medium B 4 T 256).")
    var models = "gpt-small,gpt-medium"
    @Option(help: "Timed samples per kernel (the median is reported).") var repeats = 9
    @Option(help: "Instruction set of the C kernels: avx2, avx512 or best.") var isa = "best"
    @Flag(help: "JSON lines instead of a table.") var json = false

    static let shapes: [String: (B: Int, T: Int)] = ["gpt-tiny": (4, 64), "gpt-small": (8, 128), "gpt-medium": (4, 256), "gpt2-124m": (4, 1024)]

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        for name in models.split(separator: ",") where GPTConfig.named(String(name)) == nil {
            throw ValidationError("unknown model '\(name)'; one of \(GPTConfig.presets.map(\.name).joined(separator: ", "))")
        }
        guard isa == "best" || KernelISA(rawValue: isa) != nil else { throw ValidationError("--isa must be avx2, avx512 or best") }
    }

    func run() throws {
        if let chosen = KernelISA(rawValue: isa), !Kernels.setISA(chosen) {
            throw ValidationError("this CPU cannot run the \(isa) kernels (best: \(Kernels.bestISA.rawValue))")
        }
        if isa == "best" { Kernels.setISA(Kernels.bestISA) }
        let dram = Timing.copyRate(bytes: 256 << 20, repeats: max(3, repeats / 2))
        if !json {
            print("elementwise kernels, isa \(Kernels.isa.rawValue) (best on this CPU: \(Kernels.bestISA.rawValue)), median of \(repeats)")
            print(String(format: "memcpy 256 MiB: %.1f GB/s (read + write)", dram / 1e9))
        }
        for name in models.split(separator: ",") {
            let config = GPTConfig.named(String(name))!
            let shape = Self.shapes[config.name] ?? (4, config.contextLength)
            let cases = KernelCases(config: config, B: shape.B, T: min(shape.T, config.contextLength))
            if !json {
                print("\n\(config.name): B \(cases.B) T \(cases.T) C \(config.channels) NH \(config.heads) V \(config.vocabularySize)")
                print("kernel                  elements       MB      µs   GB/s  copy GB/s  of copy  swift µs  speedup  same bits")
            }
            for c in cases.all {
                let r = Timing.measure(c, repeats: repeats)
                let gbs = c.bytes / r.new / 1e9, copy = c.bytes / r.copy / 1e9
                if json {
                    let line: [String: Any] = [
                        "bench": "kernels", "model": config.name, "kernel": c.name, "isa": Kernels.isa.rawValue,
                        "elements": c.elements, "bytes": c.bytes, "seconds": r.new, "gb_per_s": gbs,
                        "copy_gb_per_s": copy, "fraction_of_copy": gbs / copy, "dram_copy_gb_per_s": dram / 1e9,
                        "swift_seconds": r.old, "speedup": r.old / r.new, "identical": r.identical,
                    ]
                    let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    print(c.name.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: "%10d %8.2f %7.1f %6.1f %10.1f %7.0f%% %9.1f %7.2fx  %@",
                                 c.elements, c.bytes / 1e6, r.new * 1e6, gbs, copy, 100 * gbs / copy,
                                 r.old * 1e6, r.old / r.new, (r.identical ? "yes" : "NO") as NSString))
                }
            }
        }
    }
}

/// One kernel: the C call and the former Swift call on the same buffers, a reset to the
/// initial inputs, and the outputs to compare.
struct KernelCase {
    let name: String
    let elements: Int
    let bytes: Double
    let new: () -> Void
    let old: () -> Void
    let reset: () -> Void
    let outputs: [UnsafeMutableRawBufferPointer]
}

/// Buffers for one model shape, filled from a fixed seed; `all` lists the kernels.
final class KernelCases {
    let B: Int, T: Int
    let all: [KernelCase]
    private let owned: [UnsafeMutableRawBufferPointer]

    deinit { for b in owned { b.deallocate() } }

    init(config: GPTConfig, B: Int, T: Int) {
        self.B = B
        self.T = T
        let C = config.channels, NH = config.heads, V = config.vocabularySize, N = B * T, H = 4 * C
        var cases: [KernelCase] = []
        var rng = SeededGenerator(seed: 7)
        var owned: [UnsafeMutableRawBufferPointer] = []
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, n) * 4, alignment: 64)
            owned.append(b)
            return b.baseAddress!.bindMemory(to: Float.self, capacity: n)
        }
        /// A buffer, its initial contents (normal with `std`), and a raw view for comparisons.
        func make(_ n: Int, std: Float = 1) -> (p: UnsafeMutablePointer<Float>, initial: UnsafeMutablePointer<Float>, raw: UnsafeMutableRawBufferPointer) {
            let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, n) * 4, alignment: 64)
            let q = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, n) * 4, alignment: 64)
            owned += [p, q]
            let initial = q.baseAddress!.bindMemory(to: Float.self, capacity: n)
            rng.fillNormal(UnsafeMutableBufferPointer(start: initial, count: n), std: std)
            let live = p.baseAddress!.bindMemory(to: Float.self, capacity: n)
            live.update(from: initial, count: n)
            return (live, initial, UnsafeMutableRawBufferPointer(start: p.baseAddress!, count: n * 4))
        }
        func restore(_ bufs: [(p: UnsafeMutablePointer<Float>, initial: UnsafeMutablePointer<Float>, raw: UnsafeMutableRawBufferPointer)]) -> () -> Void {
            { for b in bufs { b.p.update(from: b.initial, count: b.raw.count / 4) } }
        }
        func add(_ name: String, _ elements: Int, _ bytes: Int, _ outs: [UnsafeMutableRawBufferPointer], reset: @escaping () -> Void,
                 new: @escaping () -> Void, old: @escaping () -> Void) {
            cases.append(KernelCase(name: name, elements: elements, bytes: Double(bytes), new: new, old: old, reset: reset, outputs: outs))
        }

        // GELU on the MLP's hidden activations [N, 4C].
        let gx = make(N * H), gy = make(N * H), gd = make(N * H)
        add("gelu_forward", N * H, 8 * N * H, [gy.raw], reset: restore([gy]),
            new: { Kernels.geluForward(out: gy.p, inp: gx.p, count: N * H) },
            old: { SwiftKernels.geluForward(out: gy.p, inp: gx.p, count: N * H) })
        add("gelu_backward", N * H, 12 * N * H, [gy.raw], reset: restore([gy]),
            new: { Kernels.geluBackward(dinp: gy.p, inp: gx.p, dout: gd.p, count: N * H) },
            old: { SwiftKernels.geluBackward(dinp: gy.p, inp: gx.p, dout: gd.p, count: N * H) })

        // LayerNorm over [N, C].
        let lx = make(N * C, std: 3), lw = make(C), lb = make(C), ly = make(N * C), lm = make(N), ls = make(N)
        let ld = make(N * C), ldx = make(N * C), ldw = make(C), ldb = make(C)
        add("layernorm_forward", N * C, 8 * N * C + 8 * C + 8 * N, [ly.raw, lm.raw, ls.raw], reset: restore([ly, lm, ls]),
            new: { Kernels.layerNormForward(out: ly.p, mean: lm.p, rstd: ls.p, inp: lx.p, weight: lw.p, bias: lb.p, N: N, C: C) },
            old: { SwiftKernels.layerNormForward(out: ly.p, mean: lm.p, rstd: ls.p, inp: lx.p, weight: lw.p, bias: lb.p, N: N, C: C) })
        Kernels.layerNormForward(out: ly.p, mean: lm.p, rstd: ls.p, inp: lx.p, weight: lw.p, bias: lb.p, N: N, C: C)
        let savedMean = floats(N), savedRstd = floats(N)
        savedMean.update(from: lm.p, count: N)
        savedRstd.update(from: ls.p, count: N)
        add("layernorm_backward", N * C, 16 * N * C + 16 * C + 8 * N, [ldx.raw, ldw.raw, ldb.raw], reset: restore([ldx, ldw, ldb]),
            new: { Kernels.layerNormBackward(dinp: ldx.p, dweight: ldw.p, dbias: ldb.p, dout: ld.p, inp: lx.p, weight: lw.p, mean: savedMean, rstd: savedRstd, N: N, C: C) },
            old: { SwiftKernels.layerNormBackward(dinp: ldx.p, dweight: ldw.p, dbias: ldb.p, dout: ld.p, inp: lx.p, weight: lw.p, mean: savedMean, rstd: savedRstd, N: N, C: C) })

        // Causal softmax over B NH matrices of T x T (in place), and its backward.
        let mats = B * NH, tri = T * (T + 1) / 2
        let sa = make(mats * T * T, std: 2), sd = make(mats * T * T)
        add("softmax_forward", mats * tri, 4 * mats * (2 * tri + (T * T - tri)), [sa.raw], reset: restore([sa]),
            new: { for m in 0..<mats { Kernels.softmaxCausalRows(sa.p + m * T * T, r0: 0, r1: T, T: T) } },
            old: { for m in 0..<mats { for t in 0..<T { SwiftKernels.softmaxCausalRow(sa.p + m * T * T + t * T, t: t, T: T) } } })
        let probs = floats(mats * T * T)
        probs.update(from: sa.initial, count: mats * T * T)
        for m in 0..<mats { Kernels.softmaxCausalRows(probs + m * T * T, r0: 0, r1: T, T: T) }
        add("softmax_backward", mats * tri, 4 * mats * (3 * tri + (T * T - tri)), [sd.raw], reset: restore([sd]),
            new: { for m in 0..<mats { Kernels.softmaxCausalBackwardRows(probs + m * T * T, sd.p + m * T * T, r0: 0, r1: T, T: T) } },
            old: { for m in 0..<mats { SwiftKernels.softmaxCausalBackwardRows(probs + m * T * T, sd.p + m * T * T, r0: 0, r1: T, T: T) } })

        // Cross-entropy over [N, V] logits (backward in place, as the models call it).
        let logits = make(N * V, std: 2), losses = make(N)
        let targetsRaw = UnsafeMutableRawBufferPointer.allocate(byteCount: N * 4, alignment: 64)
        owned.append(targetsRaw)
        let targets = targetsRaw.baseAddress!.bindMemory(to: Int32.self, capacity: N)
        for i in 0..<N { targets[i] = Int32(truncatingIfNeeded: rng.next() % UInt64(V)) }
        let lossOut = floats(2)
        let lossRaw = UnsafeMutableRawBufferPointer(start: lossOut, count: 4)
        add("crossentropy_forward", N * V, 4 * N * V + 8 * N, [losses.raw, lossRaw], reset: restore([losses]),
            new: { lossOut[0] = Kernels.crossEntropyForward(losses: losses.p, logits: logits.p, targets: targets, N: N, V: V) },
            old: { lossOut[0] = SwiftKernels.crossEntropyForward(losses: losses.p, logits: logits.p, targets: targets, N: N, V: V) })
        add("crossentropy_backward", N * V, 8 * N * V + 4 * N, [logits.raw], reset: restore([logits]),
            new: { Kernels.crossEntropyBackward(dlogits: logits.p, logits: logits.p, targets: targets, N: N, V: V, dloss: 1 / Float(N)) },
            old: { SwiftKernels.crossEntropyBackward(dlogits: logits.p, logits: logits.p, targets: targets, N: N, V: V, dloss: 1 / Float(N)) })

        // Residual adds over [N, C] and the MLP's fc bias gradient over [N, 4C].
        let ra = make(N * C), rb = make(N * C), ro = make(N * C), rda = make(N * C), rdb = make(N * C)
        add("residual_forward", N * C, 12 * N * C, [ro.raw], reset: restore([ro]),
            new: { Kernels.residualForward(out: ro.p, a: ra.p, b: rb.p, count: N * C) },
            old: { SwiftKernels.residualForward(out: ro.p, a: ra.p, b: rb.p, count: N * C) })
        add("residual_backward", N * C, 20 * N * C, [rda.raw, rdb.raw], reset: restore([rda, rdb]),
            new: { Kernels.residualBackward(da: rda.p, db: rdb.p, dout: ro.p, count: N * C) },
            old: { SwiftKernels.residualBackward(da: rda.p, db: rdb.p, dout: ro.p, count: N * C) })
        let bdb = make(H)
        add("bias_backward", N * H, 4 * N * H + 8 * H, [bdb.raw], reset: restore([bdb]),
            new: { Kernels.biasBackward(dbias: bdb.p, dout: gd.p, N: N, OC: H) },
            old: { SwiftKernels.biasBackward(dbias: bdb.p, dout: gd.p, N: N, OC: H) })

        // bf16 conversions of the hidden activations.
        let half = UnsafeMutableRawBufferPointer.allocate(byteCount: N * H * 2, alignment: 64)
        owned.append(half)
        let h16 = UnsafeMutableBufferPointer(start: half.baseAddress!.bindMemory(to: UInt16.self, capacity: N * H), count: N * H)
        let src = UnsafeBufferPointer(start: gx.p, count: N * H)
        let q = make(N * H)
        add("bf16_round", N * H, 6 * N * H, [half], reset: {},
            new: { BFloat16.round(src, into: h16) }, old: { SwiftKernels.bf16Round(src, into: h16) })
        add("bf16_widen", N * H, 6 * N * H, [gy.raw], reset: restore([gy]),
            new: { BFloat16.widen(UnsafeBufferPointer(h16), into: UnsafeMutableBufferPointer(start: gy.p, count: N * H)) },
            old: { SwiftKernels.bf16Widen(UnsafeBufferPointer(h16), into: UnsafeMutableBufferPointer(start: gy.p, count: N * H)) })
        add("bf16_quantize", N * H, 8 * N * H, [q.raw], reset: restore([q]),
            new: { BFloat16.quantize(inPlace: UnsafeMutableBufferPointer(start: q.p, count: N * H)) },
            old: { SwiftKernels.bf16Quantize(inPlace: UnsafeMutableBufferPointer(start: q.p, count: N * H)) })

        all = cases
        self.owned = owned
    }
}

enum Timing {
    static func seconds(_ body: () -> Void) -> Double {
        let start = ContinuousClock.now
        body()
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// memcpy of `bytes / 2` bytes (so `bytes` read + written): bytes per second, median.
    static func copyRate(bytes: Int, repeats: Int) -> Double {
        bytes > 0 ? Double(bytes) / copySeconds(bytes: bytes, repeats: repeats) : 0
    }

    static func copySeconds(bytes: Int, repeats: Int) -> Double {
        let half = max(64, bytes / 2)
        let src = UnsafeMutableRawPointer.allocate(byteCount: half, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: half, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 1, half)
        memset(dst, 0, half)
        let inner = max(1, Int(2e-3 / max(seconds { memcpy(dst, src, half) }, 1e-9)))
        let samples = (0..<repeats).map { _ in seconds { for _ in 0..<inner { memcpy(dst, src, half) } } / Double(inner) }
        return median(samples)
    }

    /// Median seconds per call of the C and the Swift kernel (samples alternate), memcpy of the
    /// same byte count, and whether both produce the same output bits from the same inputs.
    static func measure(_ c: KernelCase, repeats: Int) -> (new: Double, old: Double, copy: Double, identical: Bool) {
        c.reset(); c.new()
        let newBits = c.outputs.map { Array($0) }
        c.reset(); c.old()
        let identical = zip(newBits, c.outputs).allSatisfy { $0.0.elementsEqual($0.1) }
        c.reset()
        let inner = max(1, Int(2e-3 / max(seconds(c.new), 1e-9)))
        var news: [Double] = [], olds: [Double] = []
        for _ in 0..<repeats {
            news.append(seconds { for _ in 0..<inner { c.new() } } / Double(inner))
            olds.append(seconds { for _ in 0..<inner { c.old() } } / Double(inner))
        }
        c.reset()
        return (median(news), median(olds), copySeconds(bytes: Int(c.bytes), repeats: repeats), identical)
    }
}
