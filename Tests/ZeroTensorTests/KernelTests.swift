import Foundation
import Testing
import ZeroTensor

/// Relative L2 distance ||a - b|| / ||b||, and max abs difference, for failure messages.
func distance(_ a: [Float], _ b: [Float]) -> (relL2: Double, maxAbs: Float) {
    var num = 0.0, den = 0.0, maxAbs: Float = 0
    for i in a.indices {
        let d = Double(a[i] - b[i])
        num += d * d; den += Double(b[i]) * Double(b[i])
        maxAbs = max(maxAbs, abs(a[i] - b[i]))
    }
    return ((num / max(den, 1e-300)).squareRoot(), maxAbs)
}

func randomArray(_ n: Int, _ rng: inout SeededGenerator, std: Float = 1) -> [Float] {
    var a = [Float](repeating: 0, count: n)
    a.withUnsafeMutableBufferPointer { rng.fillNormal($0, std: std) }
    return a
}

func expectClose(_ ours: [Float], _ ref: [Float], _ what: String, tolerance: Double = 1e-5) {
    let d = distance(ours, ref)
    #expect(d.relL2 <= tolerance, "\(what): rel L2 \(d.relL2), max abs \(d.maxAbs)")
}

/// Each fast kernel against its naive reference on odd sizes (not multiples of 8).
@Suite struct KernelTests {
    @Test func linear() {
        var rng = SeededGenerator(seed: 1)
        let N = 13, C = 19, OC = 23
        let x = randomArray(N * C, &rng), w = randomArray(C * OC, &rng), b = randomArray(OC, &rng), dy = randomArray(N * OC, &rng)
        var y1 = [Float](repeating: 0, count: N * OC), y2 = y1
        Kernels.linearForward(out: &y1, inp: x, weight: w, bias: b, N: N, C: C, OC: OC)
        ReferenceKernels.linearForward(out: &y2, inp: x, weight: w, bias: b, N: N, C: C, OC: OC)
        expectClose(y1, y2, "linear forward")
        let seed = randomArray(C * OC, &rng), seedB = randomArray(OC, &rng)
        var dx1 = [Float](repeating: 7, count: N * C), dx2 = dx1, dw1 = seed, dw2 = seed, db1 = seedB, db2 = seedB
        Kernels.linearBackward(dinp: &dx1, dweight: &dw1, dbias: &db1, dout: dy, inp: x, weight: w, N: N, C: C, OC: OC)
        ReferenceKernels.linearBackward(dinp: &dx2, dweight: &dw2, dbias: &db2, dout: dy, inp: x, weight: w, N: N, C: C, OC: OC)
        expectClose(dx1, dx2, "linear dinp"); expectClose(dw1, dw2, "linear dweight (accumulated)"); expectClose(db1, db2, "linear dbias")
    }

    @Test(arguments: [5, 64, 67])
    func layerNorm(C: Int) {
        var rng = SeededGenerator(seed: 2)
        let N = 9
        let x = randomArray(N * C, &rng).map { $0 * 3 + 1 }, w = randomArray(C, &rng), b = randomArray(C, &rng), dy = randomArray(N * C, &rng)
        var y1 = [Float](repeating: 0, count: N * C), y2 = y1, m1 = [Float](repeating: 0, count: N), m2 = m1, r1 = m1, r2 = m1
        Kernels.layerNormForward(out: &y1, mean: &m1, rstd: &r1, inp: x, weight: w, bias: b, N: N, C: C)
        ReferenceKernels.layerNormForward(out: &y2, mean: &m2, rstd: &r2, inp: x, weight: w, bias: b, N: N, C: C)
        expectClose(y1, y2, "layernorm forward"); expectClose(r1, r2, "layernorm rstd")
        var dx1 = randomArray(N * C, &rng), dx2 = dx1, dw1 = randomArray(C, &rng), dw2 = dw1, db1 = randomArray(C, &rng), db2 = db1
        Kernels.layerNormBackward(dinp: &dx1, dweight: &dw1, dbias: &db1, dout: dy, inp: x, weight: w, mean: m1, rstd: r1, N: N, C: C)
        ReferenceKernels.layerNormBackward(dinp: &dx2, dweight: &dw2, dbias: &db2, dout: dy, inp: x, weight: w, mean: m2, rstd: r2, N: N, C: C)
        expectClose(dx1, dx2, "layernorm dinp"); expectClose(dw1, dw2, "layernorm dweight"); expectClose(db1, db2, "layernorm dbias")
    }

    @Test func gelu() {
        var rng = SeededGenerator(seed: 3)
        let n = 1001
        var x = randomArray(n, &rng, std: 3)
        x += [0, -0.0, 20, -20, 9.5, -9.5, 1e-30, 80, -80]
        let dy = randomArray(x.count, &rng)
        var y1 = [Float](repeating: 0, count: x.count), y2 = y1, d1 = y1, d2 = y1
        Kernels.geluForward(out: &y1, inp: x, count: x.count)
        ReferenceKernels.geluForward(out: &y2, inp: x, count: x.count)
        Kernels.geluBackward(dinp: &d1, inp: x, dout: dy, count: x.count)
        ReferenceKernels.geluBackward(dinp: &d2, inp: x, dout: dy, count: x.count)
        for i in x.indices {
            #expect(abs(y1[i] - y2[i]) <= 2e-6 * max(1, abs(y2[i])), "gelu(\(x[i])) = \(y1[i]), reference \(y2[i])")
            #expect(abs(d1[i] - d2[i]) <= 2e-6 * max(1, abs(dy[i])), "gelu'(\(x[i])) = \(d1[i]), reference \(d2[i])")
        }
    }

    @Test(arguments: [(2, 7, 24, 3), (1, 16, 32, 4), (3, 33, 40, 5), (1, 150, 16, 2), (2, 128, 8, 1)])
    func attention(shape: (Int, Int, Int, Int)) {
        let (B, T, C, NH) = shape
        var rng = SeededGenerator(seed: 4)
        let qkv = randomArray(B * T * 3 * C, &rng), dy = randomArray(B * T * C, &rng)
        var y1 = [Float](repeating: 0, count: B * T * C), y2 = y1
        var a1 = [Float](repeating: 0, count: B * NH * T * T), a2 = a1
        Kernels.attentionForward(out: &y1, att: &a1, qkv: qkv, B: B, T: T, C: C, NH: NH)
        ReferenceKernels.attentionForward(out: &y2, att: &a2, qkv: qkv, B: B, T: T, C: C, NH: NH)
        expectClose(y1, y2, "attention out"); expectClose(a1, a2, "attention probabilities")
        let start = randomArray(B * T * 3 * C, &rng)
        var d1 = start, d2 = start, scratch = [Float](repeating: 0, count: T * T)
        Kernels.attentionBackward(dqkv: &d1, scratch: &scratch, dout: dy, qkv: qkv, att: a1, B: B, T: T, C: C, NH: NH)
        ReferenceKernels.attentionBackward(dqkv: &d2, dout: dy, qkv: qkv, att: a2, B: B, T: T, C: C, NH: NH)
        expectClose(d1, d2, "attention dqkv (accumulated)")
    }

    @Test func crossEntropy() {
        var rng = SeededGenerator(seed: 5)
        let N = 11, V = 37
        let logits = randomArray(N * V, &rng, std: 4)
        let targets = (0..<N).map { Int32(($0 * 7) % V) }
        var losses = [Float](repeating: 0, count: N), d1 = logits, d2 = logits
        let loss = Kernels.crossEntropyForward(losses: &losses, logits: logits, targets: targets, N: N, V: V)
        let ref = ReferenceKernels.crossEntropy(logits: logits, targets: targets, N: N, V: V, dlogits: &d2)
        #expect(abs(loss - ref) <= 1e-6 * abs(ref), "loss \(loss) vs \(ref)")
        d1.withUnsafeMutableBufferPointer { p in
            Kernels.crossEntropyBackward(dlogits: p.baseAddress!, logits: p.baseAddress!, targets: targets, N: N, V: V, dloss: 1 / Float(N))
        }
        expectClose(d1, d2, "dlogits (in place)")
    }

    @Test func encoderResidualRelu() {
        var rng = SeededGenerator(seed: 6)
        let B = 2, T = 5, C = 6, V = 4
        let wte = randomArray(V * C, &rng), wpe = randomArray(T * C, &rng)
        let tokens: [Int32] = [0, 1, 1, 3, 2, 3, 3, 0, 2, 1]
        var out = [Float](repeating: 0, count: B * T * C)
        Kernels.encoderForward(out: &out, tokens: tokens, wte: wte, wpe: wpe, B: B, T: T, C: C)
        for b in 0..<B { for t in 0..<T { for i in 0..<C {
            #expect(out[(b * T + t) * C + i] == wte[Int(tokens[b * T + t]) * C + i] + wpe[t * C + i])
        } } }
        let dout = randomArray(B * T * C, &rng)
        var dwte = [Float](repeating: 0, count: V * C), dwpe = [Float](repeating: 0, count: T * C)
        Kernels.encoderBackward(dwte: &dwte, dwpe: &dwpe, dout: dout, tokens: tokens, B: B, T: T, C: C)
        var ewte = [Float](repeating: 0, count: V * C), ewpe = [Float](repeating: 0, count: T * C)
        for r in 0..<(B * T) { for i in 0..<C {
            ewte[Int(tokens[r]) * C + i] += dout[r * C + i]; ewpe[(r % T) * C + i] += dout[r * C + i]
        } }
        #expect(dwte == ewte && dwpe == ewpe)
        let x = randomArray(50, &rng)
        var y = [Float](repeating: 0, count: 50), dx = y
        Kernels.reluForward(out: &y, inp: x, count: 50)
        Kernels.reluBackward(dinp: &dx, out: y, dout: x, count: 50)
        #expect(y == x.map { max($0, 0) } && dx == x.map { $0 > 0 ? $0 : 0 })
        var s = [Float](repeating: 0, count: 50), da = [Float](repeating: 1, count: 50), db = da
        Kernels.residualForward(out: &s, a: x, b: y, count: 50)
        Kernels.residualBackward(da: &da, db: &db, dout: x, count: 50)
        #expect(s == zip(x, y).map { $0 + $1 } && da == x.map { 1 + $0 } && db == da)
    }
}
