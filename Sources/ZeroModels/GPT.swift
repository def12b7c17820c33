import ZeroTensor

/// GPT-2 (tied head, no dropout) over flat unit buffers, llm.c style.
///
/// Ops: 0 = token + position embedding (unit 0); i in 1...L = block i-1 (unit i);
/// L+1 = ln_f, tied head (logits = x wte^T) and mean cross-entropy (units L+1 and 0).
/// Activations for one micro-batch of B x T are allocated once, in category
/// `.activations`, and `activationBytes` reports exactly that size. In bf16 compute the
/// activations whose only readers are matmuls (ln1, ln2, ln_f, the attention output, the GELU
/// output) are stored only as bf16 (RNE, the rounding the matmul would apply): the same bits,
/// half their memory. Each is computed in fp32 into backward scratch that is free at that point
/// (dbuf, dfch) and rounded in bulk into its bf16 slot.
///
/// With `recompute`, the forward keeps only each block's output (the next block's input) and
/// runs every block in one shared set of per-block buffers; block i's backward op first
/// recomputes block i's activations from its input with the weights it was handed (stage 3
/// has them gathered for that op), then runs. The kernels are deterministic, so the
/// recomputed values, and every gradient, are bit-identical to a run that kept them.
///
/// State flows between ops (activations forward, the residual-stream gradient backward),
/// so call `setBatch`, every forward op in order, then every backward op in reverse.
/// Sendable only to be handed to a rank thread: all use is from one thread at a time, never concurrent.
public final class GPT: TrainableModel, @unchecked Sendable {
    public let config: GPTConfig
    public let layout: ParameterLayout
    public let batchSize: Int
    public let sequenceLength: Int
    public let opUnits: [[Int]]
    public var vocabularySize: Int { config.vocabularySize }
    public var contextLength: Int { config.contextLength }
    public private(set) var loss: Float = .nan
    /// The dtype every matmul multiplies in (bf16: bf16-rounded inputs, fp32 accumulation).
    public let precision: ComputePrecision
    /// Per-block activation recompute (see the type's comment).
    public let recompute: Bool

    private let matmul: Matmul
    private let plan: ActivationPlan
    private let floats: FlatBuffer<Float>
    /// bf16 compute only: the matmul-only activations (`plan.halves` values).
    private let halves: FlatBuffer<UInt16>?
    private let ids: FlatBuffer<Int32>   // tokens [B*T] then targets [B*T]
    private let blockOffsets: BlockOffsets
    /// bf16 mode only: operand copies of the batched attention (category `.scratch`,
    /// `matmulOperandBytes` bytes).
    private let attentionHalves: FlatBuffer<UInt16>?
    private let attentionFloats: FlatBuffer<Float>?
    private let attentionBuffers: BF16AttentionBuffers?

    public init(config: GPTConfig, batchSize: Int, sequenceLength: Int, ledger: MemoryLedger?, precision: ComputePrecision = .fp32,
                recompute: Bool = false) {
        precondition(sequenceLength >= 1 && sequenceLength <= config.contextLength, "sequence length must be in 1...\(config.contextLength)")
        precondition(config.channels % config.heads == 0, "channels must be a multiple of heads")
        self.config = config
        self.precision = precision
        self.recompute = recompute
        matmul = Matmul(precision)
        layout = GPT.layout(for: config)
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        let L = config.layers
        opUnits = [[0]] + (1...max(1, L)).prefix(L).map { [$0] } + [[L + 1, 0]]
        plan = ActivationPlan(config: config, B: batchSize, T: sequenceLength, recompute: recompute, precision: precision)
        floats = FlatBuffer(count: plan.total, category: .activations, ledger: ledger)
        halves = plan.halves > 0 ? FlatBuffer(count: plan.halves, category: .activations, ledger: ledger) : nil
        ids = FlatBuffer(count: 2 * batchSize * sequenceLength, category: .activations, ledger: ledger)
        blockOffsets = BlockOffsets(C: config.channels)
        if precision == .bf16 {
            let n = BF16AttentionBuffers.counts(B: batchSize, T: sequenceLength, C: config.channels, NH: config.heads)
            let halves = FlatBuffer<UInt16>(count: n.halves, category: .scratch, ledger: ledger)
            let floats = FlatBuffer<Float>(count: n.floats, category: .scratch, ledger: ledger)
            attentionHalves = halves
            attentionFloats = floats
            attentionBuffers = BF16AttentionBuffers(halves: halves.pointer.baseAddress!, floats: floats.pointer.baseAddress!,
                                                    B: batchSize, T: sequenceLength, C: config.channels)
        } else {
            attentionHalves = nil
            attentionFloats = nil
            attentionBuffers = nil
        }
    }

    /// Bytes of bf16 matmul operand copies this model allocates (category `.scratch`) beyond
    /// `activationBytes`: the batched attention's buffers in bf16 compute, none in fp32.
    public static func matmulOperandBytes(config: GPTConfig, batchSize: Int, sequenceLength: Int, precision: ComputePrecision) -> Int {
        guard precision == .bf16 else { return 0 }
        let n = BF16AttentionBuffers.counts(B: batchSize, T: sequenceLength, C: config.channels, NH: config.heads)
        return n.halves * MemoryLayout<UInt16>.stride + n.floats * MemoryLayout<Float>.stride
    }

    /// Bytes this model allocates through the ledger (category `.activations`) for a B x T
    /// micro-batch; bf16 compute stores the matmul-only activations in half the bytes.
    public static func activationBytes(config: GPTConfig, batchSize: Int, sequenceLength: Int, recompute: Bool = false,
                                       precision: ComputePrecision = .fp32) -> Int {
        let plan = ActivationPlan(config: config, B: batchSize, T: sequenceLength, recompute: recompute, precision: precision)
        return plan.total * MemoryLayout<Float>.stride + plan.halves * MemoryLayout<UInt16>.stride
            + 2 * batchSize * sequenceLength * MemoryLayout<Int32>.stride
    }

    /// A matmul-only activation of `columns` values per row as a matmul operand: its bf16 slot
    /// in bf16 compute, its fp32 slot otherwise.
    private func operand(_ offset: Int, columns: Int) -> BF16Gemm.Input {
        if let halves { return .bf16(UnsafePointer(halves.pointer.baseAddress! + offset)) }
        return .float(UnsafePointer(floats.pointer.baseAddress! + offset), columns)
    }

    /// Computes a matmul-only activation of `count` values with `body` (given where to write
    /// fp32): straight into its slot, or in bf16 compute into `staging`, then rounded into its
    /// bf16 slot.
    private func produce(_ offset: Int, count: Int, staging: UnsafeMutablePointer<Float>,
                         _ body: (UnsafeMutablePointer<Float>) -> Void) {
        guard let halves else { return body(floats.pointer.baseAddress! + offset) }
        body(staging)
        BF16Gemm.round(staging, rows: 1, columns: count, leadingDimension: count, into: halves.pointer.baseAddress! + offset)
    }

    public func initialize(unit: Int, into buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        GPT.initialize(layout: layout, config: config, unit: unit, into: buffer, seed: seed)
    }

    public func setBatch(tokens: UnsafeBufferPointer<Int32>, targets: UnsafeBufferPointer<Int32>, batchSize: Int, sequenceLength: Int) {
        precondition(batchSize == self.batchSize && sequenceLength == self.sequenceLength, "batch shape differs from the model's")
        let n = batchSize * sequenceLength
        precondition(tokens.count >= n && targets.count >= n, "batch too short")
        for i in 0..<n {
            precondition(tokens[i] >= 0 && Int(tokens[i]) < config.vocabularySize && targets[i] >= 0 && Int(targets[i]) < config.vocabularySize,
                         "token id out of range")
            ids[i] = tokens[i]
            ids[n + i] = targets[i]
        }
    }

    /// The logits [B, T, V] after the last forward op (overwritten by backward).
    public var logits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: floats.readOnly[plan.logits..<(plan.logits + plan.N * config.vocabularySize)])
    }

    // MARK: forward

    public func forward(op: Int, weights: [UnsafeBufferPointer<Float>?]) {
        let B = batchSize, T = sequenceLength, C = config.channels, L = config.layers, V = config.vocabularySize
        let N = B * T
        let a = floats.pointer.baseAddress!
        let tokens = UnsafePointer(ids.pointer.baseAddress!)
        if op == 0 {
            let w = unit(weights, 0)
            Kernels.encoderForward(out: a + plan.encoded, tokens: tokens, wte: w, wpe: w + V * C, B: B, T: T, C: C)
        } else if op <= L {
            blockForward(op - 1, weights: unit(weights, op), throughOutput: true)
        } else {
            precondition(op == L + 1, "op \(op) out of range")
            let w = unit(weights, L + 1), wte = unit(weights, 0)
            produce(plan.lnf, count: N * C, staging: a + plan.dbuf) {
                Kernels.layerNormForward(out: $0, mean: a + plan.lnfMean, rstd: a + plan.lnfRstd, inp: a + plan.blockInput(L),
                                         weight: w, bias: w + C, N: N, C: C)
            }
            matmul.gemm(transposeB: true, m: N, n: V, k: C, a: operand(plan.lnf, columns: C), b: .float(wte, C), c: a + plan.logits, ldc: V)
            loss = Kernels.crossEntropyForward(losses: a + plan.losses, logits: a + plan.logits, targets: tokens + N, N: N, V: V)
        }
    }

    /// Block l's forward. Without `throughOutput` it stops before the MLP's output projection
    /// and residual (the block's output): all a recompute needs for block l's backward.
    private func blockForward(_ l: Int, weights w: UnsafePointer<Float>, throughOutput: Bool) {
        let B = batchSize, T = sequenceLength, C = config.channels
        let N = B * T
        let a = floats.pointer.baseAddress!
        let o = blockOffsets, p = plan.layer(l)
        let input = UnsafePointer(a + plan.blockInput(l))
        // Staging for the bf16-only activations: dbuf and dfch are free in forward and when a
        // block's backward recomputes it (written before read there).
        let staging = a + plan.dbuf, wideStaging = a + plan.dfch
        produce(p.ln1, count: N * C, staging: staging) {
            Kernels.layerNormForward(out: $0, mean: a + p.ln1Mean, rstd: a + p.ln1Rstd, inp: input,
                                     weight: w + o.ln1w, bias: w + o.ln1b, N: N, C: C)
        }
        Kernels.linearForward(out: a + p.qkv, input: operand(p.ln1, columns: C), weight: w + o.attnW, bias: w + o.attnB,
                              N: N, C: C, OC: 3 * C, matmul: matmul)
        produce(p.atty, count: N * C, staging: staging) {
            Kernels.attentionForward(out: $0, att: a + p.att, qkv: a + p.qkv, B: B, T: T, C: C, NH: config.heads, matmul: matmul,
                                     bf16: attentionBuffers)
        }
        Kernels.linearForward(out: a + p.res2, input: operand(p.atty, columns: C), weight: w + o.attnProjW, bias: w + o.attnProjB,
                              N: N, C: C, OC: C, matmul: matmul)
        Kernels.residualForward(out: a + p.res2, a: a + p.res2, b: input, count: N * C)
        produce(p.ln2, count: N * C, staging: staging) {
            Kernels.layerNormForward(out: $0, mean: a + p.ln2Mean, rstd: a + p.ln2Rstd, inp: a + p.res2,
                                     weight: w + o.ln2w, bias: w + o.ln2b, N: N, C: C)
        }
        Kernels.linearForward(out: a + p.fch, input: operand(p.ln2, columns: C), weight: w + o.fcW, bias: w + o.fcB,
                              N: N, C: C, OC: 4 * C, matmul: matmul)
        produce(p.fchGelu, count: N * 4 * C, staging: wideStaging) {
            Kernels.geluForward(out: $0, inp: a + p.fch, count: N * 4 * C)
        }
        guard throughOutput else { return }
        Kernels.linearForward(out: a + p.res3, input: operand(p.fchGelu, columns: 4 * C), weight: w + o.fcProjW, bias: w + o.fcProjB,
                              N: N, C: 4 * C, OC: C, matmul: matmul)
        Kernels.residualForward(out: a + p.res3, a: a + p.res3, b: a + p.res2, count: N * C)
    }

    // MARK: backward

    public func backward(op: Int, weights: [UnsafeBufferPointer<Float>?], gradients: [UnsafeMutableBufferPointer<Float>?]) {
        let B = batchSize, T = sequenceLength, C = config.channels, L = config.layers, V = config.vocabularySize
        let N = B * T
        let a = floats.pointer.baseAddress!
        let tokens = UnsafePointer(ids.pointer.baseAddress!)
        let dres = a + plan.dres, dbuf = a + plan.dbuf
        if op == L + 1 {
            let w = unit(weights, L + 1), wte = unit(weights, 0)
            let g = grad(gradients, L + 1), dwte = grad(gradients, 0)
            let dlogits = a + plan.logits
            Kernels.crossEntropyBackward(dlogits: dlogits, logits: dlogits, targets: tokens + N, N: N, V: V, dloss: 1 / Float(N))
            // dwte += dlogits^T lnf; dlnf = dlogits wte
            if precision == .bf16 {
                // Round dlogits once for both products, in place: element i's bf16 goes to
                // bytes [2i, 2i + 2) of the fp32 buffer, which the sequential rounding pass
                // has already read (no [N, V] bf16 scratch; the logits are dead after this).
                UnsafeMutableRawPointer(dlogits).withMemoryRebound(to: UInt16.self, capacity: N * V) { h in
                    matmul.timed(m: 0, n: 0, k: 0) { BF16Gemm.round(dlogits, rows: 1, columns: N * V, leadingDimension: N * V, into: h) }
                    let d = BF16Gemm.Input.bf16(h)
                    matmul.gemm(transposeA: true, m: V, n: C, k: N, a: d, b: operand(plan.lnf, columns: C), beta: 1, c: dwte, ldc: C)
                    matmul.gemm(m: N, n: C, k: V, a: d, b: .float(wte, C), c: dbuf, ldc: C)
                }
            } else {
                matmul.gemm(transposeA: true, m: V, n: C, k: N, a: dlogits, lda: V, b: a + plan.lnf, ldb: C, beta: 1, c: dwte, ldc: C)
                matmul.gemm(m: N, n: C, k: V, a: dlogits, lda: V, b: wte, ldb: C, c: dbuf, ldc: C)
            }
            dres.update(repeating: 0, count: N * C)
            Kernels.layerNormBackward(dinp: dres, dweight: g, dbias: g + C, dout: dbuf, inp: a + plan.blockInput(L), weight: w,
                                      mean: a + plan.lnfMean, rstd: a + plan.lnfRstd, N: N, C: C)
        } else if op >= 1 {
            precondition(op <= L, "op \(op) out of range")
            let l = op - 1
            let w = unit(weights, op), g = grad(gradients, op), o = blockOffsets, p = plan.layer(l)
            if recompute { blockForward(l, weights: w, throughOutput: false) }
            let input = UnsafePointer(a + plan.blockInput(l))
            let dqkv = a + plan.dqkv, dfch = a + plan.dfch
            // res3 = res2 + fcproj: dres flows to both; fcproj = gelu(fch) Wp + bp
            Kernels.linearBackward(dinp: dfch, dweight: g + o.fcProjW, dbias: g + o.fcProjB, dout: dres, input: operand(p.fchGelu, columns: 4 * C),
                                   weight: w + o.fcProjW, N: N, C: 4 * C, OC: C, matmul: matmul)
            Kernels.geluBackward(dinp: dfch, inp: a + p.fch, dout: dfch, count: N * 4 * C)
            Kernels.linearBackward(dinp: dbuf, dweight: g + o.fcW, dbias: g + o.fcB, dout: dfch, input: operand(p.ln2, columns: C),
                                   weight: w + o.fcW, N: N, C: C, OC: 4 * C, matmul: matmul)
            Kernels.layerNormBackward(dinp: dres, dweight: g + o.ln2w, dbias: g + o.ln2b, dout: dbuf, inp: a + p.res2,
                                      weight: w + o.ln2w, mean: a + p.ln2Mean, rstd: a + p.ln2Rstd, N: N, C: C)
            // res2 = input + attproj: dres (now d res2) flows to both
            Kernels.linearBackward(dinp: dbuf, dweight: g + o.attnProjW, dbias: g + o.attnProjB, dout: dres, input: operand(p.atty, columns: C),
                                   weight: w + o.attnProjW, N: N, C: C, OC: C, matmul: matmul)
            dqkv.update(repeating: 0, count: N * 3 * C)
            Kernels.attentionBackward(dqkv: dqkv, scratch: a + plan.dattScratch, dout: dbuf, qkv: a + p.qkv, att: a + p.att,
                                      B: B, T: T, C: C, NH: config.heads, matmul: matmul, bf16: attentionBuffers)
            Kernels.linearBackward(dinp: dbuf, dweight: g + o.attnW, dbias: g + o.attnB, dout: dqkv, input: operand(p.ln1, columns: C),
                                   weight: w + o.attnW, N: N, C: C, OC: 3 * C, matmul: matmul)
            Kernels.layerNormBackward(dinp: dres, dweight: g + o.ln1w, dbias: g + o.ln1b, dout: dbuf, inp: input,
                                      weight: w + o.ln1w, mean: a + p.ln1Mean, rstd: a + p.ln1Rstd, N: N, C: C)
        } else {
            precondition(op == 0, "op \(op) out of range")
            let g = grad(gradients, 0)
            Kernels.encoderBackward(dwte: g, dwpe: g + V * C, dout: dres, tokens: tokens, B: B, T: T, C: C)
        }
    }

    private func unit(_ weights: [UnsafeBufferPointer<Float>?], _ u: Int) -> UnsafePointer<Float> {
        guard u < weights.count, let w = weights[u] else { preconditionFailure("unit \(u) weights not resident") }
        precondition(w.count >= layout.units[u].count, "unit \(u) weights too short")
        return w.baseAddress!
    }

    private func grad(_ gradients: [UnsafeMutableBufferPointer<Float>?], _ u: Int) -> UnsafeMutablePointer<Float> {
        guard u < gradients.count, let g = gradients[u] else { preconditionFailure("unit \(u) gradient not resident") }
        precondition(g.count >= layout.units[u].count, "unit \(u) gradient too short")
        return g.baseAddress!
    }
}

/// Element offsets of the tensors inside one block unit (same order as the layout).
struct BlockOffsets {
    let ln1w, ln1b, attnW, attnB, attnProjW, attnProjB, ln2w, ln2b, fcW, fcB, fcProjW, fcProjB: Int
    init(C: Int) {
        var o = 0
        func take(_ n: Int) -> Int { defer { o += n }; return o }
        ln1w = take(C); ln1b = take(C); attnW = take(3 * C * C); attnB = take(3 * C)
        attnProjW = take(C * C); attnProjB = take(C); ln2w = take(C); ln2b = take(C)
        fcW = take(4 * C * C); fcB = take(4 * C); fcProjW = take(4 * C * C); fcProjB = take(C)
    }
}

/// Offsets of every activation: fp32 values in the float buffer, and in bf16 compute the
/// matmul-only ones (ln1, atty, ln2, fchGelu, lnf) in the bf16 buffer (offsets in bf16
/// values; in fp32 compute they are floats like the rest). With `recompute`, every layer
/// shares one set of per-block buffers and keeps only its own output (`res3`, the next
/// block's input).
struct ActivationPlan {
    struct Layer { var ln1, ln1Mean, ln1Rstd, qkv, atty, att, res2, ln2, ln2Mean, ln2Rstd, fch, fchGelu, res3: Int }
    let N: Int
    let encoded: Int
    let layers: [Layer]
    let lnf, lnfMean, lnfRstd, logits, losses: Int
    // backward scratch, shared by all ops
    let dres, dbuf, dqkv, dfch, dattScratch: Int
    /// fp32 values.
    let total: Int
    /// bf16 values (bf16 compute only, else 0).
    let halves: Int

    init(config: GPTConfig, B: Int, T: Int, recompute: Bool = false, precision: ComputePrecision = .fp32) {
        let C = config.channels, NH = config.heads, V = config.vocabularySize
        let N = B * T
        self.N = N
        var o = 0, h = 0
        let bf16 = precision == .bf16
        func take(_ n: Int) -> Int { defer { o += n }; return o }
        /// A matmul-only activation: a bf16 slot in bf16 compute.
        func operand(_ n: Int) -> Int {
            guard bf16 else { return take(n) }
            defer { h += n }
            return h
        }
        encoded = take(N * C)
        func block(res3: () -> Int) -> Layer {
            Layer(ln1: operand(N * C), ln1Mean: take(N), ln1Rstd: take(N), qkv: take(3 * N * C), atty: operand(N * C),
                  att: take(B * NH * T * T), res2: take(N * C), ln2: operand(N * C), ln2Mean: take(N), ln2Rstd: take(N),
                  fch: take(4 * N * C), fchGelu: operand(4 * N * C), res3: res3())
        }
        if recompute {
            let outputs = (0..<config.layers).map { _ in take(N * C) }
            let shared = block(res3: { -1 })
            layers = outputs.map { var layer = shared; layer.res3 = $0; return layer }
        } else {
            layers = (0..<config.layers).map { _ in block(res3: { take(N * C) }) }
        }
        lnf = operand(N * C); lnfMean = take(N); lnfRstd = take(N); logits = take(N * V); losses = take(N)
        dres = take(N * C); dbuf = take(N * C); dqkv = take(3 * N * C); dfch = take(4 * N * C); dattScratch = take(T * T)
        total = o
        halves = h
    }

    func layer(_ l: Int) -> Layer { layers[l] }
    /// The residual stream entering block l (l == L: entering ln_f).
    func blockInput(_ l: Int) -> Int { l == 0 ? encoded : layers[l - 1].res3 }
}
