import Foundation
import Testing
import ZeroTensor

/// The C elementwise kernels against the former Swift kernels (`SwiftKernels`, kept as the
/// oracle): the same bits, on random inputs mixed with NaN, infinities, signed zeros,
/// subnormals and large values, at sizes that are not multiples of 8 or 16, under every
/// instruction set this CPU runs. NaN outputs only have to be NaN (payloads may differ).
@Suite(.serialized) struct ElementwiseKernelTests {
    static let isas = KernelISA.allCases.filter { isa in
        let before = Kernels.isa
        defer { Kernels.setISA(before) }
        return Kernels.setISA(isa)
    }

    /// Values that stress rounding and special cases, including glibc expf's slow-path bounds.
    static let edges: [Float] = [
        .nan, -.nan, .infinity, -.infinity, 0, -0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
        .leastNormalMagnitude, 1e-40, -3e-39, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1e30, -1e30,
        88, 88.72, 88.73, -87.3, -88, -103.28, -103.5, -103.97, -104, 100, -100, 1, -1, 0.5, 3.4e38,
        Float(bitPattern: 0x7FA0_0001), Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x7F7F_FFFF),
    ]

    /// n values: normal(0, std) with every `every`-th replaced by an edge value (none when every is 0).
    static func inputs(_ n: Int, seed: UInt64, std: Float = 1, every: Int = 7) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        var a = [Float](repeating: 0, count: n)
        a.withUnsafeMutableBufferPointer { rng.fillNormal($0, std: std) }
        if every > 0 { for i in stride(from: seed % 5 == 0 ? 0 : 3, to: n, by: every) { a[i] = edges[(i / every) % edges.count] } }
        return a
    }

    static func same(_ a: [Float], _ b: [Float], _ what: String) {
        #expect(a.count == b.count)
        var bad = 0, first = -1
        for i in a.indices where !(a[i].bitPattern == b[i].bitPattern || (a[i].isNaN && b[i].isNaN)) {
            if first < 0 { first = i }
            bad += 1
        }
        #expect(bad == 0, "\(what): \(bad) of \(a.count) differ, first at \(first): \(first >= 0 ? "\(a[first]) vs \(b[first])" : "")")
    }

    /// Runs `body` once per instruction set, restoring the process-wide choice after.
    static func forEachISA(_ body: (KernelISA) -> Void) {
        let before = Kernels.isa
        defer { Kernels.setISA(before) }
        #expect(!isas.isEmpty)
        for isa in isas {
            #expect(Kernels.setISA(isa))
            body(isa)
        }
    }

    static let sizes = [1, 7, 8, 15, 16, 17, 31, 33, 100, 1027]

    @Test func exp() {
        // Every 65,521st bit pattern (65,551 values, all exponents) plus the edges, against glibc's expf.
        var xs = stride(from: UInt64(0), to: 1 << 32, by: 65_521).map { Float(bitPattern: UInt32($0)) } + Self.edges
        xs += Self.inputs(1001, seed: 11, std: 40)
        let ref = xs.map { Foundation.exp($0) }
        Self.forEachISA { isa in
            var out = [Float](repeating: 7, count: xs.count)
            Kernels.exp(out: &out, inp: xs, count: xs.count)
            Self.same(out, ref, "exp \(isa)")
        }
    }

    @Test func gelu() {
        Self.forEachISA { isa in
            for n in Self.sizes {
                let x = Self.inputs(n, seed: UInt64(n), std: 4), d = Self.inputs(n, seed: UInt64(n) + 1, every: 0)
                var y1 = [Float](repeating: 0, count: n), y2 = y1, g1 = y1, g2 = y1
                Kernels.geluForward(out: &y1, inp: x, count: n)
                SwiftKernels.geluForward(out: &y2, inp: x, count: n)
                Self.same(y1, y2, "gelu forward \(isa) n \(n)")
                Kernels.geluBackward(dinp: &g1, inp: x, dout: d, count: n)
                SwiftKernels.geluBackward(dinp: &g2, inp: x, dout: d, count: n)
                Self.same(g1, g2, "gelu backward \(isa) n \(n)")
            }
        }
    }

    @Test func layerNorm() {
        Self.forEachISA { isa in
            for C in [1, 5, 8, 17, 64, 67, 256, 768] {
                let N = 5
                // Row 0 holds edge values; the other rows are finite with an offset and spread.
                var x = Self.inputs(N * C, seed: UInt64(C), std: 3, every: 0).map { $0 * 100 + 7 }
                for i in 0..<C { x[i] = Self.edges[i % Self.edges.count] }
                let w = Self.inputs(C, seed: 3, every: 0), b = Self.inputs(C, seed: 4, every: 0), dy = Self.inputs(N * C, seed: 5, every: 0)
                var y1 = [Float](repeating: 0, count: N * C), y2 = y1, m1 = [Float](repeating: 0, count: N), m2 = m1, r1 = m1, r2 = m1
                Kernels.layerNormForward(out: &y1, mean: &m1, rstd: &r1, inp: x, weight: w, bias: b, N: N, C: C)
                SwiftKernels.layerNormForward(out: &y2, mean: &m2, rstd: &r2, inp: x, weight: w, bias: b, N: N, C: C)
                Self.same(y1, y2, "layernorm out \(isa) C \(C)"); Self.same(m1, m2, "mean"); Self.same(r1, r2, "rstd")
                var dx1 = Self.inputs(N * C, seed: 6, every: 0), dx2 = dx1, dw1 = Self.inputs(C, seed: 8, every: 0), dw2 = dw1, db1 = dw1, db2 = dw1
                Kernels.layerNormBackward(dinp: &dx1, dweight: &dw1, dbias: &db1, dout: dy, inp: x, weight: w, mean: m1, rstd: r1, N: N, C: C)
                SwiftKernels.layerNormBackward(dinp: &dx2, dweight: &dw2, dbias: &db2, dout: dy, inp: x, weight: w, mean: m2, rstd: r2, N: N, C: C)
                Self.same(dx1, dx2, "layernorm dinp \(isa) C \(C)"); Self.same(dw1, dw2, "dweight"); Self.same(db1, db2, "dbias")
            }
        }
    }

    @Test func softmax() {
        Self.forEachISA { isa in
            for T in [1, 5, 16, 17, 64, 67, 130] {
                // Scores up to ~+-200 (exps that underflow) with edge values sprinkled in.
                let s = Self.inputs(T * T, seed: UInt64(T), std: 60, every: 11)
                var a1 = s, a2 = s
                for r0 in stride(from: 0, to: T, by: 64) {
                    let r1 = min(T, r0 + 64)
                    a1.withUnsafeMutableBufferPointer { Kernels.softmaxCausalRows($0.baseAddress!, r0: r0, r1: r1, T: T) }
                    a2.withUnsafeMutableBufferPointer { p in for t in r0..<r1 { SwiftKernels.softmaxCausalRow(p.baseAddress! + t * T, t: t, T: T) } }
                }
                Self.same(a1, a2, "softmax forward \(isa) T \(T)")
                // Backward on finite probabilities from a milder row.
                var probs = Self.inputs(T * T, seed: UInt64(T) + 9, std: 2, every: 0)
                probs.withUnsafeMutableBufferPointer { Kernels.softmaxCausalRows($0.baseAddress!, r0: 0, r1: T, T: T) }
                let d = Self.inputs(T * T, seed: UInt64(T) + 10)
                var d1 = d, d2 = d
                for r0 in stride(from: 0, to: T, by: 64) {
                    let r1 = min(T, r0 + 64)
                    Kernels.softmaxCausalBackwardRows(probs, &d1, r0: r0, r1: r1, T: T)
                    SwiftKernels.softmaxCausalBackwardRows(probs, &d2, r0: r0, r1: r1, T: T)
                }
                Self.same(d1, d2, "softmax backward \(isa) T \(T)")
            }
        }
    }

    @Test func crossEntropy() {
        Self.forEachISA { isa in
            for V in [1, 7, 16, 17, 256, 1000, 50257] {
                let N = V > 1000 ? 2 : 6
                // Rows 0 and 1 carry edge values (a NaN loss, an infinite max); the rest are normal logits.
                var logits = Self.inputs(N * V, seed: UInt64(V), std: 30, every: 0)
                for i in stride(from: 0, to: V, by: 3) { logits[i] = Self.edges[(i / 3) % Self.edges.count] }
                logits[V + V / 2] = 95
                let targets = (0..<N).map { Int32(($0 * 7919) % V) }
                var l1 = [Float](repeating: 0, count: N), l2 = l1
                let m1 = Kernels.crossEntropyForward(losses: &l1, logits: logits, targets: targets, N: N, V: V)
                let m2 = SwiftKernels.crossEntropyForward(losses: &l2, logits: logits, targets: targets, N: N, V: V)
                Self.same(l1, l2, "cross-entropy losses \(isa) V \(V)"); Self.same([m1], [m2], "mean loss")
                var d1 = logits, d2 = logits
                d1.withUnsafeMutableBufferPointer { Kernels.crossEntropyBackward(dlogits: $0.baseAddress!, logits: $0.baseAddress!, targets: targets, N: N, V: V, dloss: 1 / Float(N)) }
                d2.withUnsafeMutableBufferPointer { SwiftKernels.crossEntropyBackward(dlogits: $0.baseAddress!, logits: $0.baseAddress!, targets: targets, N: N, V: V, dloss: 1 / Float(N)) }
                Self.same(d1, d2, "cross-entropy backward \(isa) V \(V)")
            }
        }
    }

    @Test func addsAndBias() {
        Self.forEachISA { isa in
            for n in Self.sizes {
                let a = Self.inputs(n, seed: 1), b = Self.inputs(n, seed: 2), d = Self.inputs(n, seed: 3)
                var o1 = [Float](repeating: 0, count: n), o2 = o1
                Kernels.residualForward(out: &o1, a: a, b: b, count: n)
                SwiftKernels.residualForward(out: &o2, a: a, b: b, count: n)
                Self.same(o1, o2, "residual forward \(isa) n \(n)")
                var da1 = a, da2 = a, db1 = b, db2 = b
                Kernels.residualBackward(da: &da1, db: &db1, dout: d, count: n)
                SwiftKernels.residualBackward(da: &da2, db: &db2, dout: d, count: n)
                Self.same(da1, da2, "residual da \(isa)"); Self.same(db1, db2, "residual db \(isa)")
                for rows in [1, 3, 9] {
                    let dout = Self.inputs(rows * n, seed: UInt64(rows), std: 1e3)
                    var g1 = Self.inputs(n, seed: 4), g2 = g1
                    Kernels.biasBackward(dbias: &g1, dout: dout, N: rows, OC: n)
                    SwiftKernels.biasBackward(dbias: &g2, dout: dout, N: rows, OC: n)
                    Self.same(g1, g2, "bias backward \(isa) \(rows) x \(n)")
                }
            }
        }
    }

    @Test func bf16() {
        // All 65,536 upper halves with four lower halves each (ties, just above/below, odd LSB).
        var xs: [Float] = []
        for hi in 0..<UInt32(65_536) { for lo: UInt32 in [0x0000, 0x7FFF, 0x8000, 0x8001] { xs.append(Float(bitPattern: hi << 16 | lo)) } }
        for n in Self.sizes { xs += Self.inputs(n, seed: UInt64(n) + 50) }
        let halves = (0..<UInt32(65_536)).map { UInt16($0) }
        Self.forEachISA { isa in
            var h1 = [UInt16](repeating: 0, count: xs.count), h2 = h1
            xs.withUnsafeBufferPointer { s in
                h1.withUnsafeMutableBufferPointer { BFloat16.round(s, into: $0) }
                h2.withUnsafeMutableBufferPointer { SwiftKernels.bf16Round(s, into: $0) }
            }
            #expect(h1 == h2, "bf16 round \(isa)")
            var w1 = [Float](repeating: 0, count: halves.count), w2 = w1
            halves.withUnsafeBufferPointer { s in
                w1.withUnsafeMutableBufferPointer { BFloat16.widen(s, into: $0) }
                w2.withUnsafeMutableBufferPointer { SwiftKernels.bf16Widen(s, into: $0) }
            }
            #expect(w1.map(\.bitPattern) == w2.map(\.bitPattern), "bf16 widen \(isa)")
            for n in [xs.count, 1, 15, 17] {
                var q1 = Array(xs.prefix(n)), q2 = q1
                q1.withUnsafeMutableBufferPointer { BFloat16.quantize(inPlace: $0) }
                q2.withUnsafeMutableBufferPointer { SwiftKernels.bf16Quantize(inPlace: $0) }
                #expect(q1.map(\.bitPattern) == q2.map(\.bitPattern), "bf16 quantize \(isa) n \(n)")
            }
        }
    }

    @Test func isaSelection() {
        #expect(Kernels.setISA(.avx2), "AVX2 is the package's baseline")
        #expect(Kernels.isa == .avx2)
        #expect(Kernels.setISA(Kernels.bestISA))
        #expect(Kernels.isa == Kernels.bestISA)
        if Kernels.bestISA == .avx2 { #expect(!Kernels.setISA(.avx512)) }
    }
}
