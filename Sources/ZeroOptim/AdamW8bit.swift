import ZeroTensor

/// bitsandbytes-style dynamic quantization maps (Dettmers et al., "8-bit Optimizers via
/// Block-wise Quantization"): 7 decades of exponent, finer fractions in larger decades.
///
/// Construction (in Double, then rounded once to Float; the fixture script does the same):
/// for decade i in 0..<7 with scale 10^(i-6) (literal powers), n = 2^i + 1 (signed) or
/// 2^(i+1) + 1 (unsigned) boundaries b_j = 0.1 + (1.0 - 0.1) * j / (n - 1), values
/// scale * (b_j + b_{j+1}) / 2.0 (and their negatives when signed); plus 0 and 1; sorted.
/// Both maps have exactly 256 codes.
public enum DynamicQuantizationMap {
    public static let signed = make(signed: true)
    public static let unsigned = make(signed: false)

    static func make(signed: Bool) -> [Float] {
        let scales: [Double] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
        var data: [Double] = []
        for i in 0..<7 {
            let n = signed ? (1 << i) + 1 : (1 << (i + 1)) + 1
            var b: [Double] = []
            for j in 0..<n { b.append(0.1 + (1.0 - 0.1) * Double(j) / Double(n - 1)) }
            for j in 0..<(n - 1) {
                let mean = (b[j] + b[j + 1]) / 2.0
                data.append(scales[i] * mean)
                if signed { data.append(-(scales[i] * mean)) }
            }
        }
        data.append(0)
        data.append(1)
        precondition(data.count == 256)
        return data.map { Float($0) }.sorted()
    }

    /// Decision thresholds between neighbouring codes: (c[k] + c[k+1]) * 0.5 in float32.
    static func midpoints(_ codes: [Float]) -> [Float] {
        (0..<(codes.count - 1)).map { (codes[$0] + codes[$0 + 1]) * 0.5 }
    }

    /// Index of the nearest code: the number of midpoints strictly below x (ties go to the lower code).
    @inline(__always)
    static func quantize(_ x: Float, midpoints mid: UnsafeBufferPointer<Float>) -> UInt8 {
        var lo = 0, hi = mid.count  // answer in [lo, hi]
        while lo < hi {
            let k = (lo + hi) >> 1
            if mid[k] < x { lo = k + 1 } else { hi = k }
        }
        return UInt8(lo)
    }
}

/// A branch-free nearest-code search with the same answer as the binary search
/// (`DynamicQuantizationMap.quantize`) for every float of magnitude at most 1 and for NaN (the
/// only values the step quantizes: x = m / absmax with absmax >= |m|, or 0). The top 16 bits of
/// the float (sign, exponent, 7 mantissa bits) select a bucket; for both maps no bucket holds more
/// than one midpoint (checked when built), so the answer is `base[key] + (mid[base[key]] < x)`,
/// where `mid` is padded with +infinity so that a bucket without a midpoint (or base 255) adds
/// nothing. NaN keys have base 0 and compare false, giving code 0 like the binary search.
/// `ChainTests` checks the whole 8-bit step against the chain that uses the binary search.
///
/// Sendable because the tables are written once in `init` and never change or get freed
/// (two process-wide instances).
struct FastQuantizationIndex: @unchecked Sendable {
    static let signed = FastQuantizationIndex(codes: DynamicQuantizationMap.signed)
    static let unsigned = FastQuantizationIndex(codes: DynamicQuantizationMap.unsigned)

    /// The codes themselves, for dequantization.
    let codes: UnsafePointer<Float>
    /// Per 16-bit key: number of midpoints below the bucket's smallest value.
    let base: UnsafePointer<UInt8>
    /// The 255 midpoints followed by +infinity.
    let mid: UnsafePointer<Float>

    init(codes: [Float]) {
        let mid = DynamicQuantizationMap.midpoints(codes)
        let base = UnsafeMutablePointer<UInt8>.allocate(capacity: 65536)
        base.initialize(repeating: 0, count: 65536)
        mid.withUnsafeBufferPointer { m in
            for key in 0..<65536 {
                let first = Float(bitPattern: UInt32(key) << 16), last = Float(bitPattern: UInt32(key) << 16 | 0xFFFF)
                if first.isNaN || last.isNaN || first.isInfinite || last.isInfinite { continue }
                let (lo, hi) = key < 32768 ? (first, last) : (last, first)  // negative keys run downwards
                let below = Int(DynamicQuantizationMap.quantize(lo, midpoints: m))
                let upTo = Int(DynamicQuantizationMap.quantize(hi, midpoints: m))
                precondition(upTo - below <= 1, "a quantization bucket holds two midpoints")
                base[key] = UInt8(below)
            }
        }
        self.base = UnsafePointer(base)
        let padded = UnsafeMutablePointer<Float>.allocate(capacity: mid.count + 1)
        padded.initialize(from: mid + [Float.infinity], count: mid.count + 1)
        self.mid = UnsafePointer(padded)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: codes.count)
        c.initialize(from: codes, count: codes.count)
        self.codes = UnsafePointer(c)
    }

    /// The code nearest to x (|x| <= 1 or NaN).
    @inline(__always) func quantize(_ x: Float) -> UInt8 {
        let b = Int(base[Int(x.bitPattern >> 16)])
        return UInt8(truncatingIfNeeded: b &+ (mid[b] < x ? 1 : 0))
    }
}

/// AdamW with m and v stored as 8-bit codes, block-wise (256 elements) with one fp32 absmax
/// per block and state. Per block and step:
/// 1. dequantize: m = signedCode[qm] * absmax_m, v = unsignedCode[qv] * absmax_v;
/// 2. the fp32 AdamW update of `AdamWKernel` (same order, same bits given m and v);
/// 3. absmax = max |m| (and max v) over the block; q = nearest code of m / absmax
///    (an all-zero block keeps absmax 0 and the code of 0).
/// Blocks divide 1024, so shard boundaries (multiples of 1024) never cut a block and the state
/// reshards like any parameter-aligned array. The fixture script implements the same algorithm.
final class AdamW8bitOptimizer: FusedOptimizer {
    let setup: ShardSetup
    let block: Int
    let qm: FlatBuffer<UInt8>, qv: FlatBuffer<UInt8>
    let absM: FlatBuffer<Float>, absV: FlatBuffer<Float>
    let signedCodes = DynamicQuantizationMap.signed, unsignedCodes = DynamicQuantizationMap.unsigned
    /// Dequantized m and v of the block being updated.
    let scratch: FlatBuffer<Float>

    init(_ setup: ShardSetup) throws {
        block = setup.config.quantizationBlockSize
        guard block > 0, 1024 % block == 0 else {
            throw OptimizerError("8-bit block size \(block) must divide 1024 so blocks align with shards")
        }
        self.setup = setup
        let blocks = (setup.count + block - 1) / block
        qm = setup.state()
        qv = setup.state()
        absM = FlatBuffer(count: blocks, category: .optimizerState, ledger: setup.ledger)
        absV = FlatBuffer(count: blocks, category: .optimizerState, ledger: setup.ledger)
        scratch = FlatBuffer(count: 2 * block, category: .scratch, ledger: setup.ledger)
        let zeroM = UInt8(signedCodes.firstIndex(of: 0)!), zeroV = UInt8(unsignedCodes.firstIndex(of: 0)!)
        qm.fill(zeroM)
        qv.fill(zeroV)
    }

    var state: [OptimizerStateArray] {
        [
            OptimizerStateArray(name: "exp_avg_q", parametersPerBlock: 1, bytesPerBlock: 1,
                                bytes: UnsafeMutableRawBufferPointer(qm.pointer)),
            OptimizerStateArray(name: "exp_avg_sq_q", parametersPerBlock: 1, bytesPerBlock: 1,
                                bytes: UnsafeMutableRawBufferPointer(qv.pointer)),
            OptimizerStateArray(name: "exp_avg_absmax", parametersPerBlock: block, bytesPerBlock: 4,
                                bytes: UnsafeMutableRawBufferPointer(absM.pointer)),
            OptimizerStateArray(name: "exp_avg_sq_absmax", parametersPerBlock: block, bytesPerBlock: 4,
                                bytes: UnsafeMutableRawBufferPointer(absV.pointer)),
        ]
    }
    var supportsResharding: Bool { true }

    let signedIndex = FastQuantizationIndex.signed, unsignedIndex = FastQuantizationIndex.unsigned

    /// x[k] = x[k] / by (or 0 when by is 0), one correctly rounded division per element as before.
    @inline(__always)
    private func normalize(_ x: UnsafeMutablePointer<Float>, n: Int, by d: Float) {
        if d == 0 {
            for k in 0..<n { x[k] = 0 }
            return
        }
        let d8 = SIMD8<Float>(repeating: d)
        var k = 0
        while k + 8 <= n {
            let a = UnsafeRawPointer(x + k).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(x + k).storeBytes(of: a / d8, as: SIMD8<Float>.self)
            k += 8
        }
        while k < n { x[k] = x[k] / d; k += 1 }
    }

    /// Bit pattern of the largest |x[k]| that is not NaN (+0 when none). Branch-free integer
    /// arithmetic on SIMD8<Int32> (all values lie in 0...0x7F80_0000 after NaN masking, so
    /// differences never overflow), which Swift lowers to plain vector instructions.
    @inline(__always)
    private func absMaxBits(_ x: UnsafeMutablePointer<Float>, n: Int) -> UInt32 {
        let magnitude = SIMD8<Int32>(repeating: 0x7FFF_FFFF), infinity = SIMD8<Int32>(repeating: 0x7F80_0000)
        var best8 = SIMD8<Int32>(repeating: 0)
        var k = 0
        while k + 8 <= n {
            var a = UnsafeRawPointer(x + k).loadUnaligned(as: SIMD8<Int32>.self) & magnitude
            a = a & ~((infinity &- a) &>> 31)       // NaN (a > infinity's bits) -> 0
            let diff = a &- best8
            best8 = best8 &+ (diff & ~(diff &>> 31))  // max(best8, a)
            k += 8
        }
        var best: UInt32 = 0
        for l in 0..<8 { best = Swift.max(best, UInt32(best8[l])) }
        while k < n {
            let a = x[k].bitPattern & 0x7FFF_FFFF
            if a <= 0x7F80_0000 { best = Swift.max(best, a) }
            k += 1
        }
        return best
    }

    /// Dequantized moments (for tests and inspection).
    func dequantized() -> (m: [Float], v: [Float]) {
        var m = [Float](repeating: 0, count: count), v = m
        for i in 0..<count {
            m[i] = signedCodes[Int(qm[i])] * absM[i / block]
            v[i] = unsignedCodes[Int(qv[i])] * absV[i / block]
        }
        return (m, v)
    }

    func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
              working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        try checkStepArguments(count: count, master: master, gradient: gradient, working: working, context: context)
        let plain = AdamWKernel.Coefficients(config: config, step: context.step, learningRate: context.learningRate, decays: false)
        let decayed = AdamWKernel.Coefficients(config: config, step: context.step, learningRate: context.learningRate, decays: true)
        let m = scratch.pointer.baseAddress!, v = m + block
        let qm = qm.pointer.baseAddress!, qv = qv.pointer.baseAddress!
        let absM = absM.pointer.baseAddress!, absV = absV.pointer.baseAddress!
        let p = master.baseAddress!, g = gradient.baseAddress!, w = working?.baseAddress
        let runs = decay.runs
        let sc = signedIndex.codes, uc = unsignedIndex.codes
        var runIndex = 0
        var b = 0
        while b * block < count {
            let lo = b * block, hi = min(count, lo + block), n = hi - lo
            let am = absM[b], av = absV[b]
            let cm = qm + lo, cv = qv + lo
            for k in 0..<n {
                m[k] = sc[Int(cm[k])] * am
                v[k] = uc[Int(cv[k])] * av
            }
            // A decay run may start inside a block: split the block at run edges.
            var at = lo
            while at < hi {
                while runs[runIndex].range.upperBound <= at { runIndex += 1 }
                let run = runs[runIndex]
                let end = min(hi, run.range.upperBound)
                AdamWKernel.step(master: p + at, gradient: g + at, m: m + (at - lo), v: v + (at - lo),
                                 working: w.map { $0 + at }, count: end - at, run.decays ? decayed : plain)
                at = end
            }
            // absmax = max(absmax, |x|) over the block, where NaN never wins (Swift's max keeps
            // its first argument when the second is NaN). Non-negative floats order like their
            // bit patterns, so this is an integer max over |x|'s bits with NaNs (bits above
            // infinity's) replaced by +0: same value, order-free, and it vectorizes.
            let maxM = Float(bitPattern: absMaxBits(m, n: n))
            let maxV = Float(bitPattern: absMaxBits(v, n: n))
            absM[b] = maxM
            absV[b] = maxV
            // Normalize in place, then look the codes up.
            normalize(m, n: n, by: maxM)
            normalize(v, n: n, by: maxV)
            for k in 0..<n {
                cm[k] = signedIndex.quantize(m[k])
                cv[k] = unsignedIndex.quantize(v[k])
            }
            b += 1
        }
    }
}
