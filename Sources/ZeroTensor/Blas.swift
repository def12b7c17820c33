import COpenBLAS

/// The only place in the package that calls cblas directly.
///
/// Everything is row-major, as in the kernels: a matrix with `rows` x `cols` and
/// leading dimension `ld` has element (i, j) at `i * ld + j`.
public enum Blas {
    /// C = alpha * op(A) * op(B) + beta * C, row-major single precision.
    ///
    /// op(A) is m x k, op(B) is k x n, C is m x n. `transposeA` means A is stored
    /// k x m (lda >= m); `transposeB` means B is stored n x k (ldb >= k).
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor,
            transposeA ? CblasTrans : CblasNoTrans,
            transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha,
            a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Sets the number of OpenBLAS threads, and oneDNN's OpenMP threads for bf16 matmuls
    /// (1 keeps ranks from fighting over cores).
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(count))
        BF16Gemm.setThreadCount(count)
    }

    /// The OpenBLAS kernel core chosen at load time ("Haswell", "SkylakeX", ...).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// OpenBLAS's current thread count.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }
}
