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

/// Nearest-code search in O(1) on average, with the same answer as the binary search: the top 13
/// bits of the float (sign, exponent, 4 mantissa bits) select a bucket of values, and a table
/// holds how many midpoints lie below the bucket's smallest and largest value; only midpoints
/// inside the bucket (rarely more than one) are compared.
struct QuantizationIndex {
    let mid: [Float]
    let below: [UInt16]   // per key: count of midpoints < the bucket's smallest value
    let upTo: [UInt16]    // per key: count of midpoints < the bucket's largest value

    init(codes: [Float]) {
        let mid = DynamicQuantizationMap.midpoints(codes)
        func count(_ x: Float) -> UInt16 { UInt16(mid.filter { $0 < x }.count) }
        var below = [UInt16](repeating: 0, count: 8192), upTo = below
        for key in 0..<8192 {
            let first = Float(bitPattern: UInt32(key) << 19), last = Float(bitPattern: UInt32(key) << 19 | 0x7FFFF)
            if first.isNaN || last.isNaN { continue }
            let (lo, hi) = key < 4096 ? (first, last) : (last, first)  // negative keys run downwards
            below[key] = count(lo)
            upTo[key] = count(hi)
        }
        self.below = below
        self.upTo = upTo
        self.mid = mid
    }

    @inline(__always)
    func quantize(_ x: Float, mid: UnsafePointer<Float>, below: UnsafePointer<UInt16>, upTo: UnsafePointer<UInt16>) -> UInt8 {
        if x.isNaN { return 0 }
        let key = Int(x.bitPattern >> 19)
        var q = Int(below[key])
        let end = Int(upTo[key])
        while q < end && mid[q] < x { q += 1 }
        return UInt8(q)
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
final class AdamW8bitOptimizer: ShardOptimizer {
    let config: OptimizerConfig
    let count: Int
    let decay: DecaySegments
    let block: Int
    let qm: FlatBuffer<UInt8>, qv: FlatBuffer<UInt8>
    let absM: FlatBuffer<Float>, absV: FlatBuffer<Float>
    let signedCodes = DynamicQuantizationMap.signed, unsignedCodes = DynamicQuantizationMap.unsigned
    let signedIndex: QuantizationIndex, unsignedIndex: QuantizationIndex
    /// Dequantized m and v of the block being updated.
    let scratch: FlatBuffer<Float>

    init(config: OptimizerConfig, count: Int, decay: DecaySegments, ledger: MemoryLedger?) throws {
        block = config.quantizationBlockSize
        guard block > 0, 1024 % block == 0 else {
            throw OptimizerError("8-bit block size \(block) must divide 1024 so blocks align with shards")
        }
        self.config = config
        self.count = count
        self.decay = decay
        let blocks = (count + block - 1) / block
        qm = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        qv = FlatBuffer(count: count, category: .optimizerState, ledger: ledger)
        absM = FlatBuffer(count: blocks, category: .optimizerState, ledger: ledger)
        absV = FlatBuffer(count: blocks, category: .optimizerState, ledger: ledger)
        signedIndex = QuantizationIndex(codes: signedCodes)
        unsignedIndex = QuantizationIndex(codes: unsignedCodes)
        scratch = FlatBuffer(count: 2 * block, category: .scratch, ledger: ledger)
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
        signedCodes.withUnsafeBufferPointer { sc in
        unsignedCodes.withUnsafeBufferPointer { uc in
        signedIndex.mid.withUnsafeBufferPointer { sMid in
        signedIndex.below.withUnsafeBufferPointer { sBelow in
        signedIndex.upTo.withUnsafeBufferPointer { sUpTo in
        unsignedIndex.mid.withUnsafeBufferPointer { uMid in
        unsignedIndex.below.withUnsafeBufferPointer { uBelow in
        unsignedIndex.upTo.withUnsafeBufferPointer { uUpTo in
            var runIndex = 0
            var b = 0
            while b * block < count {
                let lo = b * block, hi = min(count, lo + block), n = hi - lo
                let am = absM[b], av = absV[b]
                for k in 0..<n {
                    m[k] = sc[Int(qm[lo + k])] * am
                    v[k] = uc[Int(qv[lo + k])] * av
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
                var maxM: Float = 0, maxV: Float = 0
                for k in 0..<n {
                    maxM = max(maxM, abs(m[k]))
                    maxV = max(maxV, abs(v[k]))
                }
                absM[b] = maxM
                absV[b] = maxV
                // Normalize in place (a vectorizable pass), then look the codes up.
                if maxM == 0 { for k in 0..<n { m[k] = 0 } } else { for k in 0..<n { m[k] = m[k] / maxM } }
                if maxV == 0 { for k in 0..<n { v[k] = 0 } } else { for k in 0..<n { v[k] = v[k] / maxV } }
                for k in 0..<n {
                    qm[lo + k] = signedIndex.quantize(m[k], mid: sMid.baseAddress!, below: sBelow.baseAddress!, upTo: sUpTo.baseAddress!)
                    qv[lo + k] = unsignedIndex.quantize(v[k], mid: uMid.baseAddress!, below: uBelow.baseAddress!, upTo: uUpTo.baseAddress!)
                }
                b += 1
            }
        }}}}}}}}
    }
}
