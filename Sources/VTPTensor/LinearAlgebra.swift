import COpenBLAS

/// Why a LAPACK routine gave no answer.
public enum LinearAlgebraError: Error, Equatable, CustomStringConvertible {
    /// `dgeev` did not converge (LAPACK's INFO > 0) or rejected an argument (INFO < 0).
    case eigenvaluesFailed(info: Int32)

    public var description: String {
        switch self {
        case let .eigenvaluesFailed(info) where info > 0: "the eigenvalue QR iteration did not converge (dgeev info \(info))"
        case let .eigenvaluesFailed(info): "dgeev rejected argument \(-info)"
        }
    }
}

/// Double-precision dense linear algebra for the evaluation statistics (FID), through OpenBLAS's
/// BLAS and LAPACK. Matrices are row-major and square unless stated.
public enum LinearAlgebra {
    /// Eigenvalues (real and imaginary parts) of a general `n × n` matrix, as LAPACK's `dgeev`
    /// computes them (Hessenberg reduction and shifted QR, the same path as the Schur form SciPy's
    /// `sqrtm` starts from). The order is LAPACK's.
    public static func eigenvalues(_ matrix: [Double], n: Int) throws(LinearAlgebraError) -> (real: [Double], imaginary: [Double]) {
        precondition(matrix.count == n * n, "an n x n matrix")
        guard n > 0 else { return ([], []) }
        // LAPACK is column-major: the transpose has the same eigenvalues, so the row-major storage is used as is.
        var a = matrix
        var wr = [Double](repeating: 0, count: n), wi = [Double](repeating: 0, count: n)
        var dimension = Int32(n), one: Int32 = 1, info: Int32 = 0
        var left = 0.0, right = 0.0
        var query = 0.0, lwork: Int32 = -1
        dgeev_("N", "N", &dimension, &a, &dimension, &wr, &wi, &left, &one, &right, &one, &query, &lwork, &info)
        guard info == 0 else { throw .eigenvaluesFailed(info: info) }
        lwork = Int32(query)
        var work = [Double](repeating: 0, count: max(1, Int(lwork)))
        dgeev_("N", "N", &dimension, &a, &dimension, &wr, &wi, &left, &one, &right, &one, &work, &lwork, &info)
        guard info == 0 else { throw .eigenvaluesFailed(info: info) }
        return (wr, wi)
    }

    /// `C[m×n] = A[m×k] · B[k×n]` in double precision.
    public static func multiply(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int) -> [Double] {
        precondition(a.count == m * k && b.count == k * n, "operand sizes")
        var c = [Double](repeating: 0, count: m * n)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
        return c
    }

    /// `C += Xᵀ · X` for `rows` rows of width `n` (row-major `X`), on the upper triangle of the
    /// symmetric `n × n` matrix `C` only; ``symmetrizeUpper(_:n:)`` fills the rest.
    public static func addGram(_ x: UnsafePointer<Double>, rows: Int, n: Int, into c: UnsafeMutablePointer<Double>) {
        guard rows > 0 else { return }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(rows), 1, x, Int32(n), 1, c, Int32(n))
    }

    /// Copies the upper triangle of a row-major `n × n` matrix onto its lower triangle.
    public static func symmetrizeUpper(_ c: inout [Double], n: Int) {
        for i in 0..<n { for j in 0..<i { c[i * n + j] = c[j * n + i] } }
    }
}
