import ArgumentParser
import Foundation
import ZeroModels
import ZeroTensor

/// `zero-train bench step`: forward + backward of one GPT micro-batch next to the fp32
/// sgemm rate and the bf16 GEMM rate of the model's largest matmul, measured in the same
/// loop, and the share of the step spent outside matmuls (the elementwise kernels).
///
/// FLOPs counted (matmuls only, 2 m n k each, attention included):
///   forward  F = L (24 N C^2 + 2 B T (T + 1) C) + 2 N C V,  N = B T
///   (qkv 6NC^2, attn proj 2NC^2, fc 8NC^2, fc proj 8NC^2; q k^T and att v B T (T + 1) C
///   each, the causal lower triangle only (the kernel's 64-row blocks compute a little
///   more, uncounted); tied head 2NCV)
///   backward = 2 F (two matmuls per forward matmul), total = 3 F.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Forward+backward of one micro-batch: seconds, GFLOP/s, and the sgemm rate of its largest matmul.")

    @Option(help: "Compute precision of the model's matmuls: bf16 (oneDNN bf16 GEMM) or fp32 (OpenBLAS sgemm).")
    var precision = "fp32"
    @Option(help: "Model preset (\(GPTConfig.presets.map(\.name).joined(separator: ", "))).")
    var model = "gpt-small"
    @Option(name: .customLong("micro-batch"), help: "Sequences per micro-batch (B).")
    var microBatch = 8
    @Option(name: .customLong("seq-len"), help: "Sequence length (T), at most the model's context.")
    var seqLen = 128
    @Option(help: "Timed repetitions (the median is reported).")
    var repeats = 7
    @Option(help: "Untimed warm-up repetitions.")
    var warmup = 2
    @Option(help: "OpenBLAS threads (default: leave OpenBLAS's own setting, e.g. OPENBLAS_NUM_THREADS).")
    var threads: Int?
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard let config = GPTConfig.named(model) else { throw ValidationError("unknown model '\(model)'") }
        guard microBatch >= 1 else { throw ValidationError("--micro-batch must be at least 1") }
        guard seqLen >= 1 && seqLen <= config.contextLength else {
            throw ValidationError("--seq-len must be in 1...\(config.contextLength) for \(model)")
        }
        guard ComputePrecision(rawValue: precision) != nil else { throw ValidationError("--precision must be bf16 or fp32, not '\(precision)'") }
        guard repeats >= 1, warmup >= 0 else { throw ValidationError("--repeats must be at least 1, --warmup at least 0") }
    }

    static func forwardFlops(_ c: GPTConfig, B: Int, T: Int) -> Double {
        let N = Double(B * T), C = Double(c.channels), L = Double(c.layers), V = Double(c.vocabularySize)
        return L * (24 * N * C * C + 2 * Double(B) * Double(T) * Double(T + 1) * C) + 2 * N * C * V
    }

    func run() throws {
        Blas.setThreadCount(threads ?? Blas.threadCount)  // oneDNN gets OpenBLAS's count
        let config = GPTConfig.named(model)!
        let B = microBatch, T = seqLen
        let compute = ComputePrecision(rawValue: precision)!
        let gpt = GPT(config: config, batchSize: B, sequenceLength: T, ledger: nil, precision: compute)
        let layout = gpt.layout
        let weights = layout.units.map { FlatBuffer<Float>(count: $0.count, category: .weights, ledger: nil) }
        let grads = layout.units.map { FlatBuffer<Float>(count: $0.count, category: .gradients, ledger: nil) }
        for (u, w) in weights.enumerated() { gpt.initialize(unit: u, into: w.pointer, seed: 1) }
        let data = try TokenDataset.embedded()
        let tokens = FlatBuffer<Int32>(count: B * T, category: .scratch, ledger: nil)
        let targets = FlatBuffer<Int32>(count: B * T, category: .scratch, ledger: nil)
        data.fill(step: 0, microBatch: 0, seed: 1, batchSize: B, sequenceLength: T, tokens: tokens.pointer, targets: targets.pointer)
        gpt.setBatch(tokens: tokens.readOnly, targets: targets.readOnly, batchSize: B, sequenceLength: T)
        // Raw views below: the buffers are kept alive to the end (withExtendedLifetime).
        let w: [UnsafeBufferPointer<Float>?] = weights.map(\.readOnly)
        let g: [UnsafeMutableBufferPointer<Float>?] = grads.map(\.pointer)

        // The largest matmul: the MLP's c_fc (m = B T, n = 4C, k = C) or the head (n = V).
        let m = B * T, k = config.channels, n = max(4 * config.channels, config.vocabularySize)
        let a = FlatBuffer<Float>(count: m * k, category: .scratch, ledger: nil)
        let b = FlatBuffer<Float>(count: k * n, category: .scratch, ledger: nil)
        let c = FlatBuffer<Float>(count: m * n, category: .scratch, ledger: nil)
        a.fill(0.5); b.fill(0.25)

        // Steps, sgemms and bf16 GEMMs alternate, so all see the same background load.
        var forwardTimes: [Double] = [], backwardTimes: [Double] = [], sgemmTimes: [Double] = [], bf16Times: [Double] = []
        var matmulShares: [Double] = []
        // Process CPU time next to wall time: on a shared machine, preemption inflates wall
        // time but not CPU time (one thread: the CPU time is the step's own compute).
        var cpuTotals: [Double] = [], sgemmCPU: [Double] = [], bf16CPU: [Double] = []
        for i in 0..<(warmup + repeats) {
            for gb in grads { gb.fill(0) }
            MatmulProfile.reset()
            MatmulProfile.enabled = true
            let c0 = cpuNow()
            let t0 = now()
            for op in gpt.opUnits.indices { gpt.forward(op: op, weights: w) }
            let t1 = now()
            for op in gpt.opUnits.indices.reversed() { gpt.backward(op: op, weights: w, gradients: g) }
            let t2 = now()
            let c2 = cpuNow()
            MatmulProfile.enabled = false
            if i >= warmup {
                cpuTotals.append(c2 - c0)
                forwardTimes.append(t1 - t0); backwardTimes.append(t2 - t1)
                matmulShares.append(MatmulProfile.seconds / (t2 - t0))
            }
            for _ in 0..<3 {
                let c3 = cpuNow(), t3 = now()
                Blas.sgemm(m: m, n: n, k: k, a: a.pointer.baseAddress!, lda: k, b: b.pointer.baseAddress!, ldb: n,
                           c: c.pointer.baseAddress!, ldc: n)
                if i >= warmup { sgemmTimes.append(now() - t3); sgemmCPU.append(cpuNow() - c3) }
                // The bf16 route as the model calls it: rounding of both inputs included.
                let c4 = cpuNow(), t4 = now()
                BF16Gemm.gemm(m: m, n: n, k: k, a: a.pointer.baseAddress!, lda: k, b: b.pointer.baseAddress!, ldb: n,
                              c: c.pointer.baseAddress!, ldc: n)
                if i >= warmup { bf16Times.append(now() - t4); bf16CPU.append(cpuNow() - c4) }
            }
        }
        let totals = zip(forwardTimes, backwardTimes).map { $0 + $1 }
        let seconds = median(totals)
        let flops = 3 * Self.forwardFlops(config, B: B, T: T)

        withExtendedLifetime((weights, grads, tokens, targets, a, b, c)) {}
        let sgemmGflops = 2 * Double(m * n * k) / median(sgemmTimes) / 1e9
        let gflops = flops / seconds / 1e9
        let bf16Gflops = 2 * Double(m * n * k) / median(bf16Times) / 1e9
        let gemmGflops = compute == .bf16 ? bf16Gflops : sgemmGflops
        let matmulShare = median(matmulShares)
        let cpuSeconds = median(cpuTotals)
        let cpuGflops = flops / cpuSeconds / 1e9
        let cpuSgemm = 2 * Double(m * n * k) / median(sgemmCPU) / 1e9
        let cpuBF16 = 2 * Double(m * n * k) / median(bf16CPU) / 1e9
        let cpuGemm = compute == .bf16 ? cpuBF16 : cpuSgemm
        let core = Blas.coreName, isa = BF16Gemm.isa, path = BF16Gemm.path.rawValue

        if json {
            let object: [String: Any] = [
                "bench": "step", "model": config.name, "micro_batch": B, "seq_len": T, "seconds": seconds,
                "forward_seconds": median(forwardTimes), "backward_seconds": median(backwardTimes),
                "flops": flops, "gflops": gflops, "sgemm_gflops": sgemmGflops, "sgemm_shape": [m, n, k],
                "fraction_of_sgemm": gflops / sgemmGflops, "blas_threads": Blas.threadCount, "loss": Double(gpt.loss),
                "precision": compute.rawValue, "gemm_gflops": gemmGflops, "bf16_gemm_gflops": bf16Gflops,
                "fraction_of_gemm": gflops / gemmGflops, "matmul_share": matmulShare, "elementwise_share": 1 - matmulShare,
                "cpu_seconds": cpuSeconds, "cpu_gflops": cpuGflops, "cpu_sgemm_gflops": cpuSgemm,
                "cpu_bf16_gemm_gflops": cpuBF16, "cpu_fraction_of_gemm": cpuGflops / cpuGemm,
                "openblas_core": core, "onednn_isa": isa, "onednn_version": BF16Gemm.version, "bf16_path": path,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("bench step: \(config.name), B=\(B), T=\(T), \(layout.parameterCount) parameters, \(compute.rawValue) matmuls, BLAS threads \(Blas.threadCount)")
            print("  OpenBLAS core \(core); oneDNN \(BF16Gemm.version) ISA \(isa); bf16 GEMM path \(path)")
            print(String(format: "  forward   %8.2f ms (median of %d)", median(forwardTimes) * 1e3, repeats))
            print(String(format: "  backward  %8.2f ms", median(backwardTimes) * 1e3))
            print(String(format: "  total     %8.2f ms   %.3f GFLOP   %.1f GFLOP/s", seconds * 1e3, flops / 1e9, gflops))
            print(String(format: "  sgemm     %dx%dx%d   %.1f GFLOP/s   -> step reaches %.0f%% of sgemm", m, n, k, sgemmGflops, 100 * gflops / sgemmGflops))
            print(String(format: "  bf16 GEMM %dx%dx%d   %.1f GFLOP/s   -> step reaches %.0f%% of bf16 GEMM", m, n, k, bf16Gflops, 100 * gflops / bf16Gflops))
            print(String(format: "  CPU time  %8.2f ms   %.1f GFLOP/s; sgemm %.1f, bf16 GEMM %.1f GFLOP/s -> %.0f%% of the ",
                         cpuSeconds * 1e3, cpuGflops, cpuSgemm, cpuBF16, 100 * cpuGflops / cpuGemm) + "\(compute.rawValue) rate")
            print(String(format: "  matmuls %.0f%% of the step, elementwise and the rest %.0f%%", 100 * matmulShare, 100 * (1 - matmulShare)))
        }
    }

    /// CPU seconds of this process (all threads).
    private func cpuNow() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
    private func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
