import CZeroDNNL
import CZeroKernels
import Foundation

/// The dtype the models multiply in. `.bf16` rounds both inputs of every matmul to bf16
/// (round to nearest even, as `torch.bfloat16`) and accumulates and outputs fp32.
public enum ComputePrecision: String, Sendable, CaseIterable {
    case fp32, bf16
}

/// One matmul call site's precision: the models call `gemm`, which goes to `Blas.sgemm`
/// (fp32) or `BF16Gemm.gemm` (bf16). Same argument convention as `Blas.sgemm`.
public struct Matmul: Sendable, Equatable {
    public let precision: ComputePrecision
    public init(_ precision: ComputePrecision) { self.precision = precision }
    public static let fp32 = Matmul(.fp32)
    public static let bf16 = Matmul(.bf16)

    /// Runs `body` (a matmul of m x n x k) under `MatmulProfile`; `gemm` and the fused
    /// backward products (Kernels.linearBackward) both count through it.
    @inline(__always)
    public func timed(m: Int, n: Int, k: Int, _ body: () -> Void) {
        let t0 = MatmulProfile.enabled ? MatmulProfile.now() : 0
        body()
        if MatmulProfile.enabled {
            MatmulProfile.seconds += MatmulProfile.now() - t0
            MatmulProfile.flops += 2 * Double(m) * Double(n) * Double(k)
        }
    }

    /// C = alpha * op(A) * op(B) + beta * C (row-major; see `Blas.sgemm`).
    @inline(__always)
    public func gemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        timed(m: m, n: n, k: k) {
            switch precision {
            case .fp32:
                Blas.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                           a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            case .bf16:
                BF16Gemm.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                              a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            }
        }
    }
}

extension Matmul {
    /// `gemm` with operands that may already be bf16 (`BF16Gemm.Input.bf16`: a stored bf16
    /// activation goes to oneDNN as is, no second rounding). fp32 compute takes only `.float`.
    public func gemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: BF16Gemm.Input, b: BF16Gemm.Input,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        switch (precision, a, b) {
        case (.fp32, .float(let pa, let lda), .float(let pb, let ldb)):
            gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                 a: pa, lda: lda, b: pb, ldb: ldb, beta: beta, c: c, ldc: ldc)
        case (.fp32, _, _):
            preconditionFailure("a bf16 matmul operand needs bf16 compute")
        case (.bf16, _, _):
            timed(m: m, n: n, k: k) {
                BF16Gemm.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                              a: a, b: b, beta: beta, c: c, ldc: ldc)
            }
        }
    }
}

/// The only place in the package that calls oneDNN (through the CZeroDNNL shim).
///
/// Inputs are rounded to dense bf16 scratch (per thread), then multiplied by oneDNN's
/// matmul primitive (bf16 x bf16, fp32 accumulation and output; created once per shape,
/// transpose, alpha, beta and thread count, and cached per thread). Repeated calls with the
/// same shape give the same bits. Without oneDNN support (no bf16 matmul on this CPU, or
/// `ZERO_TRAIN_BF16_GEMM=sgemm`), the same bf16-rounded inputs go through fp32 `Blas.sgemm`:
/// the products are exact in fp32 either way, only the summation order differs (and speed).
public enum BF16Gemm {
    public enum Path: String, Sendable {
        case oneDNN = "onednn"
        case sgemm
    }

    /// The route bf16 matmuls take in this process, chosen once: `ZERO_TRAIN_BF16_GEMM`
    /// (`onednn` or `sgemm`) if set, else oneDNN when a probe matmul succeeds.
    public static var path: Path { state.path }

    /// oneDNN's effective ISA ("avx512_core_bf16", ...), version and last implementation name.
    public static var isa: String { String(cString: zt_dnnl_isa()) }
    public static var version: String { String(cString: zt_dnnl_version()) }
    public static var lastImplementation: String { String(cString: zt_dnnl_last_impl()) }

    /// OpenMP threads oneDNN uses per calling thread (set with `--blas-threads`, like OpenBLAS).
    public static func setThreadCount(_ count: Int) { zt_dnnl_set_threads(Int32(max(1, count))) }

    /// Drops this thread's cached primitives (tests: a fresh primitive must give the same bits).
    public static func clearCache() { zt_dnnl_clear_cache() }
    /// Primitives cached on this thread.
    public static var cachedPrimitives: Int { Int(zt_dnnl_cache_count()) }

    /// C = alpha * op(bf16(A)) * op(bf16(B)) + beta * C, fp32 accumulation; `Blas.sgemm`'s convention.
    public static func gemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
             a: .float(a, lda), b: .float(b, ldb), beta: beta, c: c, ldc: ldc)
    }

    /// A matmul input: fp32 with a leading dimension (rounded at the call), or values already
    /// rounded to bf16, dense in their stored shape (a caller that feeds one operand to two
    /// matmuls rounds it once).
    public enum Input {
        case float(UnsafePointer<Float>, Int)
        case bf16(UnsafePointer<UInt16>)
    }

    /// `gemm` with each input either fp32 (rounded here) or already bf16.
    public static func gemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: Input, b: Input,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k).
        let aRows = transposeA ? k : m, aCols = transposeA ? m : k
        let bRows = transposeB ? n : k, bCols = transposeB ? k : n
        if state.path == .oneDNN {
            let ab = bf16(a, rows: aRows, columns: aCols, slot: 0), bb = bf16(b, rows: bRows, columns: bCols, slot: 1)
            let status = zt_dnnl_gemm_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, ab, bb, beta, c, ldc)
            if status == 0 { return }
            state.fallBack("oneDNN matmul \(m)x\(n)x\(k) failed (status \(status))")
        }
        let af = quantized(a, rows: aRows, columns: aCols, slot: 2), bf = quantized(b, rows: bRows, columns: bCols, slot: 3)
        Blas.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                   a: af, lda: aCols, b: bf, ldb: bCols, beta: beta, c: c, ldc: ldc)
    }

    /// The input as dense bf16: rounded into scratch `slot`, or as given.
    private static func bf16(_ x: Input, rows: Int, columns: Int, slot: Int32) -> UnsafePointer<UInt16> {
        switch x {
        case .bf16(let p):
            return p
        case .float(let p, let ld):
            let d = scratch(slot, rows * columns * 2).assumingMemoryBound(to: UInt16.self)
            round(p, rows: rows, columns: columns, leadingDimension: ld, into: d)
            return UnsafePointer(d)
        }
    }

    /// The input rounded to bf16 and widened back to dense fp32 in scratch `slot` (sgemm path).
    private static func quantized(_ x: Input, rows: Int, columns: Int, slot: Int32) -> UnsafePointer<Float> {
        let d = scratch(slot, rows * columns * 4).assumingMemoryBound(to: Float.self)
        switch x {
        case .bf16(let p): zt_bf16_widen(p, d, rows * columns)
        case .float(let p, let ld): zt_dnnl_quantize_f32(p, rows, columns, ld, d)
        }
        return UnsafePointer(d)
    }

    /// A per-thread scratch of `count` bf16 values (slot 4: for callers that round an operand
    /// once and pass it to several `gemm` calls as `.bf16`).
    public static func operandScratch(count: Int) -> UnsafeMutablePointer<UInt16> {
        scratch(4, count * 2).assumingMemoryBound(to: UInt16.self)
    }

    /// Rounds a rows x columns fp32 matrix (row stride `leadingDimension`) to dense bf16 bit
    /// patterns, `BFloat16.round`'s rule (the vectorized kernel, same bits).
    public static func round(_ src: UnsafePointer<Float>, rows: Int, columns: Int, leadingDimension: Int,
                             into dst: UnsafeMutablePointer<UInt16>) {
        if leadingDimension == columns || rows == 1 {
            zt_bf16_round(src, dst, rows * columns)
        } else {
            for r in 0..<rows { zt_bf16_round(src + r * leadingDimension, dst + r * columns, columns) }
        }
    }

    /// Element strides of a 4-d operand (batch0, batch1, row, column) for `batched`.
    public typealias Strides = (Int, Int, Int, Int)

    /// For every (i, j) < (batch0, batch1): C[i, j] = alpha A[i, j] B[i, j] + beta C[i, j] with
    /// A[i, j] m x k and B[i, j] k x n already in bf16 and C fp32, each element at
    /// base + i s.0 + j s.1 + row s.2 + column s.3 (strides express transposes and heads that
    /// sit side by side in a row). One oneDNN primitive per shape and strides, cached.
    /// Returns false (after switching the process to the sgemm path, said once on stderr)
    /// when oneDNN cannot run it; the caller then computes the product another way.
    public static func batched(
        batch: (Int, Int), m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<UInt16>, aStrides: Strides,
        b: UnsafePointer<UInt16>, bStrides: Strides,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, cStrides: Strides
    ) -> Bool {
        guard state.path == .oneDNN else { return false }
        let t0 = MatmulProfile.enabled ? MatmulProfile.now() : 0
        var sa = [aStrides.0, aStrides.1, aStrides.2, aStrides.3]
        var sb = [bStrides.0, bStrides.1, bStrides.2, bStrides.3]
        var sc = [cStrides.0, cStrides.1, cStrides.2, cStrides.3]
        let status = zt_dnnl_batched_bf16(batch.0, batch.1, m, n, k, &sa, &sb, &sc, alpha, beta, a, b, c)
        if MatmulProfile.enabled {
            MatmulProfile.seconds += MatmulProfile.now() - t0
            MatmulProfile.flops += 2 * Double(batch.0 * batch.1) * Double(m) * Double(n) * Double(k)
        }
        if status == 0 { return true }
        state.fallBack("oneDNN batched matmul \(batch.0)x\(batch.1)x\(m)x\(n)x\(k) failed (status \(status))")
        return false
    }

    private static func scratch(_ slot: Int32, _ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = zt_dnnl_scratch(slot, max(bytes, 64)) else { fatalError("bf16 gemm: cannot allocate \(bytes) bytes of scratch") }
        return p
    }

    private static let state = State()

    /// The chosen path, switched to `.sgemm` (once, with one line on stderr) if oneDNN fails.
    private final class State: @unchecked Sendable {
        private let lock = NSLock()
        private var current: Path

        init() {
            let forced = ProcessInfo.processInfo.environment["ZERO_TRAIN_BF16_GEMM"]
            switch forced {
            case "sgemm":
                current = .sgemm
            case "onednn":
                current = .oneDNN
            default:
                if let forced { FileHandle.standardError.write(Data("zero-train: ZERO_TRAIN_BF16_GEMM=\(forced) is not onednn or sgemm; ignored\n".utf8)) }
                current = State.probe() ? .oneDNN : .sgemm
                if current == .sgemm {
                    FileHandle.standardError.write(Data("zero-train: bf16 matmuls fall back to fp32 sgemm on bf16-rounded inputs (oneDNN has no bf16 matmul here); slower, same products, different summation order\n".utf8))
                } else if !String(cString: zt_dnnl_isa()).hasPrefix("avx512_core_bf16") && !String(cString: zt_dnnl_isa()).hasPrefix("avx512_core_amx") {
                    FileHandle.standardError.write(Data("zero-train: bf16 matmuls run on oneDNN without native bf16 instructions (ISA \(String(cString: zt_dnnl_isa())))\n".utf8))
                }
            }
        }

        var path: Path { lock.lock(); defer { lock.unlock() }; return current }

        func fallBack(_ reason: String) {
            lock.lock(); defer { lock.unlock() }
            guard current == .oneDNN else { return }
            current = .sgemm
            FileHandle.standardError.write(Data("zero-train: \(reason); bf16 matmuls fall back to fp32 sgemm on bf16-rounded inputs\n".utf8))
        }

        /// A 2x2x2 bf16 matmul: does this oneDNN build have a bf16 matmul for this CPU?
        private static func probe() -> Bool {
            var a: [UInt16] = [0x3F80, 0, 0, 0x3F80], b: [UInt16] = [0x4000, 0, 0, 0x4000]
            var c: [Float] = [0, 0, 0, 0]
            let status = zt_dnnl_gemm_bf16(0, 0, 2, 2, 2, 1, &a, &b, 0, &c, 2)
            return status == 0 && c == [2, 0, 0, 2]
        }
    }
}

/// Time spent inside `Matmul.gemm` while `enabled` (for `bench step`'s matmul share).
/// Single-threaded use only: the bench enables it around its own loop.
public enum MatmulProfile {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public static var seconds = 0.0
    nonisolated(unsafe) public static var flops = 0.0

    public static func reset() { seconds = 0; flops = 0 }

    @inline(__always)
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
}
