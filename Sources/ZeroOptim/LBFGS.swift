import ZeroComm

/// torch.optim.LBFGS (one parameter group) over a flat fp32 vector that the ranks hold in
/// shards, ZeRO-1 style: every vector of the method (direction, previous gradient, the m
/// history pairs s and y) is sharded like the parameters, m x 2 x Psi / N floats per rank.
/// The scalars (dot products, max |x|) are the only cross-rank values, each reduced by
/// `ShardSpace` in a canonical order, so iterates are bit-identical for every rank count whose
/// shards are whole multiples of `ShardSpace.blockSize`.
///
/// Vectors are fp32 as in torch; scalars are fp64 sums of exact products (torch sums fp32), so
/// iterates agree with torch to a tolerance, not bit for bit (see LBFGSTests).
public final class LBFGS {
    public enum LineSearch: String, Sendable, Codable, CaseIterable {
        case none
        case strongWolfe = "strong_wolfe"
    }

    public struct Options: Sendable {
        public var learningRate = 1.0
        public var maxIterations = 20
        /// nil: maxIterations * 5 / 4, as torch.
        public var maxEvaluations: Int?
        public var toleranceGrad = 1e-7
        public var toleranceChange = 1e-9
        public var history = 100
        public var lineSearch = LineSearch.none
        public init() {}
    }

    /// Evaluates the loss at the given parameter shard and returns it with this rank's shard of
    /// the gradient (the loss is the global one: the same on every rank).
    public typealias Closure = ([Float]) throws -> (loss: Double, gradient: [Float])

    public let options: Options
    public let space: ShardSpace
    // State across calls of `step`, as torch keeps it in `state`.
    var direction: [Float] = [], stepLength = 0.0
    var oldDirections: [[Float]] = [], oldSteps: [[Float]] = [], rho: [Double] = []
    var hessianDiagonal = 1.0
    var previousGradient: [Float]?, previousLoss = 0.0
    public private(set) var iterations = 0, evaluations = 0

    public init(options: Options, space: ShardSpace) {
        self.options = options
        self.space = space
    }

    /// History bytes per rank at full history: 2 m shard floats.
    public var historyBytes: Int { 2 * options.history * space.count * 4 }

    /// One `optimizer.step(closure)`: up to maxIterations L-BFGS iterations. Returns the loss at entry.
    @discardableResult
    public func step(_ x: inout [Float], closure: Closure) throws -> Double {
        precondition(x.count == space.count)
        let o = options, maxEvaluations = o.maxEvaluations ?? o.maxIterations * 5 / 4
        var (loss, g) = try closure(x)
        let originalLoss = loss
        var currentEvaluations = 1
        evaluations += 1
        var optimal = try space.maxAbs(g) <= o.toleranceGrad
        if optimal { return originalLoss }

        var n = 0
        while n < o.maxIterations {
            n += 1
            iterations += 1
            if iterations == 1 {
                direction = g.map { -$0 }
                oldDirections = []; oldSteps = []; rho = []
                hessianDiagonal = 1
            } else {
                try updateDirection(gradient: g)
            }
            previousGradient = g
            previousLoss = loss
            let t0 = iterations == 1 ? min(1, 1 / (try space.sumAbs(g))) * o.learningRate : o.learningRate
            let gtd = try space.dot(g, direction)
            if gtd > -o.toleranceChange { break }

            var lineEvaluations = 0
            switch o.lineSearch {
            case .strongWolfe:
                let r = try strongWolfe(x: x, t: t0, d: direction, f: loss, g: g, gtd: gtd, closure: closure)
                (loss, g, stepLength, lineEvaluations) = (r.f, r.g, r.t, r.evaluations)
                axpy(stepLength, direction, &x)
                optimal = try space.maxAbs(g) <= o.toleranceGrad
            case .none:
                stepLength = t0
                axpy(stepLength, direction, &x)
                if n != o.maxIterations {
                    (loss, g) = try closure(x)
                    optimal = try space.maxAbs(g) <= o.toleranceGrad
                    lineEvaluations = 1
                }
            }
            currentEvaluations += lineEvaluations
            evaluations += lineEvaluations

            if n == o.maxIterations || currentEvaluations >= maxEvaluations || optimal { break }
            if try space.maxAbs(direction.map { $0 * Float(stepLength) }) <= o.toleranceChange { break }
            if abs(loss - previousLoss) < o.toleranceChange { break }
        }
        return originalLoss
    }

    /// The two-loop recursion: d = -H g from the history, after adding the newest pair.
    func updateDirection(gradient g: [Float]) throws {
        let y = zip(g, previousGradient!).map { $0 - $1 }
        let s = direction.map { $0 * Float(stepLength) }
        let ys = try space.dot(y, s)
        if ys > 1e-10 {
            if oldDirections.count == options.history {
                oldDirections.removeFirst(); oldSteps.removeFirst(); rho.removeFirst()
            }
            oldDirections.append(y); oldSteps.append(s); rho.append(1 / ys)
            hessianDiagonal = ys / (try space.dot(y, y))
        }
        var q = g.map { -$0 }
        var alpha = [Double](repeating: 0, count: oldDirections.count)
        for i in oldDirections.indices.reversed() {
            alpha[i] = try space.dot(oldSteps[i], q) * rho[i]
            axpy(-alpha[i], oldDirections[i], &q)
        }
        var r = q.map { $0 * Float(hessianDiagonal) }
        for i in oldDirections.indices {
            let beta = try space.dot(oldDirections[i], r) * rho[i]
            axpy(alpha[i] - beta, oldSteps[i], &r)
        }
        direction = r
    }

    /// torch's `_strong_wolfe` (c1 1e-4, c2 0.9, 25 evaluations): bracket, then zoom with cubic
    /// interpolation. Evaluates at x + t d; returns the accepted step and its loss and gradient.
    func strongWolfe(x: [Float], t initial: Double, d: [Float], f: Double, g: [Float], gtd: Double,
                     closure: Closure) throws -> (f: Double, g: [Float], t: Double, evaluations: Int) {
        let c1 = 1e-4, c2 = 0.9, maxSteps = 25
        let dNorm = try space.maxAbs(d)
        func evaluate(_ t: Double) throws -> (Double, [Float], Double) {
            var p = x
            axpy(t, d, &p)
            let (fNew, gNew) = try closure(p)
            return (fNew, gNew, try space.dot(gNew, d))
        }
        var t = initial
        var (fNew, gNew, gtdNew) = try evaluate(t)
        var evaluations = 1, steps = 0
        var (tPrev, fPrev, gPrev, gtdPrev) = (0.0, f, g, gtd)
        var done = false
        var bracket: [Double] = [], bracketF: [Double] = [], bracketG: [[Float]] = [], bracketGtd: [Double] = []
        while steps < maxSteps {
            let sufficientDecrease = !(fNew > f + c1 * t * gtd || (steps > 1 && fNew >= fPrev))
            if sufficientDecrease && abs(gtdNew) <= -c2 * gtd {
                (bracket, bracketF, bracketG, done) = ([t], [fNew], [gNew], true)
                break
            }
            if !sufficientDecrease || gtdNew >= 0 {
                (bracket, bracketF, bracketG, bracketGtd) = ([tPrev, t], [fPrev, fNew], [gPrev, gNew], [gtdPrev, gtdNew])
                break
            }
            let minStep = t + 0.01 * (t - tPrev), maxStep = t * 10
            let previous = t
            t = cubicMinimum(tPrev, fPrev, gtdPrev, t, fNew, gtdNew, bounds: (minStep, maxStep))
            (tPrev, fPrev, gPrev, gtdPrev) = (previous, fNew, gNew, gtdNew)
            (fNew, gNew, gtdNew) = try evaluate(t)
            evaluations += 1
            steps += 1
        }
        if steps == maxSteps {
            (bracket, bracketF, bracketG, bracketGtd) = ([0, t], [f, fNew], [g, gNew], [gtd, gtdNew])
        }

        var insufficientProgress = false
        var (low, high) = bracketF[0] <= bracketF[bracketF.count - 1] ? (0, 1) : (1, 0)
        while !done && steps < maxSteps {
            if abs(bracket[1] - bracket[0]) * dNorm < options.toleranceChange { break }
            t = cubicMinimum(bracket[0], bracketF[0], bracketGtd[0], bracket[1], bracketF[1], bracketGtd[1], bounds: nil)
            let top = bracket.max()!, bottom = bracket.min()!, eps = 0.1 * (top - bottom)
            if min(top - t, t - bottom) < eps {
                if insufficientProgress || t >= top || t <= bottom {
                    t = abs(t - top) < abs(t - bottom) ? top - eps : bottom + eps
                    insufficientProgress = false
                } else {
                    insufficientProgress = true
                }
            } else {
                insufficientProgress = false
            }
            (fNew, gNew, gtdNew) = try evaluate(t)
            evaluations += 1
            steps += 1
            if fNew > f + c1 * t * gtd || fNew >= bracketF[low] {
                (bracket[high], bracketF[high], bracketG[high], bracketGtd[high]) = (t, fNew, gNew, gtdNew)
                (low, high) = bracketF[0] <= bracketF[1] ? (0, 1) : (1, 0)
            } else {
                if abs(gtdNew) <= -c2 * gtd {
                    done = true
                } else if gtdNew * (bracket[high] - bracket[low]) >= 0 {
                    (bracket[high], bracketF[high], bracketG[high], bracketGtd[high]) = (bracket[low], bracketF[low], bracketG[low], bracketGtd[low])
                }
                (bracket[low], bracketF[low], bracketG[low], bracketGtd[low]) = (t, fNew, gNew, gtdNew)
            }
        }
        return (bracketF[low], bracketG[low], bracket[low], evaluations)
    }
}

/// Minimum of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to `bounds` (default:
/// the interval between the points); the midpoint when the cubic has no minimum.
func cubicMinimum(_ x1: Double, _ f1: Double, _ g1: Double, _ x2: Double, _ f2: Double, _ g2: Double,
                  bounds: (Double, Double)?) -> Double {
    let (lo, hi) = bounds ?? (x1 <= x2 ? (x1, x2) : (x2, x1))
    let d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    let d2Square = d1 * d1 - g1 * g2
    guard d2Square >= 0 else { return (lo + hi) / 2 }
    let d2 = d2Square.squareRoot()
    let m = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                     : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(m, lo), hi)
}

/// y += a x (fp32 vectors, torch's `add_(x, alpha: a)`).
@inline(__always) func axpy(_ a: Double, _ x: [Float], _ y: inout [Float]) {
    let a = Float(a)
    for i in y.indices { y[i] = y[i] + a * x[i] }
}

/// This rank's shard of a flat vector and the reductions over all shards, in a canonical order:
/// fp64 sums of 1024-element blocks (sequential within a block; a product of floats is exact
/// in fp64), the block sums then added in global block order. A shard that is a whole number of
/// blocks (the last may be short) gives the same bits at every rank count.
public struct ShardSpace: Sendable {
    public static let blockSize = 1024
    public let count: Int
    public let communicator: (any Communicator)?

    public init(count: Int, communicator: (any Communicator)? = nil) {
        self.count = count
        self.communicator = communicator
    }

    public func dot(_ a: [Float], _ b: [Float]) throws -> Double {
        try blockSum(a.count) { Double(a[$0]) * Double(b[$0]) }
    }
    public func sumAbs(_ a: [Float]) throws -> Double { try blockSum(a.count) { Double(abs(a[$0])) } }

    /// max |a_i| over every shard (NaN if any is NaN).
    public func maxAbs(_ a: [Float]) throws -> Double {
        var m = 0.0
        for x in a { let v = Double(abs(x)); if v > m || v.isNaN { m = v }; if m.isNaN { break } }
        guard let communicator, communicator.size > 1 else { return m }
        var all = [Double](repeating: 0, count: communicator.size)
        try [m].withUnsafeBufferPointer { l in try all.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        return all.reduce(0) { $0.isNaN || $1.isNaN ? .nan : max($0, $1) }
    }

    func blockSum(_ n: Int, _ term: (Int) -> Double) throws -> Double {
        let blocks = (n + Self.blockSize - 1) / Self.blockSize
        var sums = [Double](repeating: 0, count: blocks)
        for b in 0..<blocks {
            var s = 0.0
            for i in b * Self.blockSize ..< min(n, (b + 1) * Self.blockSize) { s += term(i) }
            sums[b] = s
        }
        guard let communicator, communicator.size > 1 else { return sums.reduce(0, +) }
        // Shards may hold different block counts: gather the counts, then the padded sums.
        var counts = [Double](repeating: 0, count: communicator.size)
        try [Double(blocks)].withUnsafeBufferPointer { l in try counts.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) } }
        let widest = Int(counts.max()!)
        var padded = sums + [Double](repeating: 0, count: widest - blocks)
        var all = [Double](repeating: 0, count: widest * communicator.size)
        try padded.withUnsafeMutableBufferPointer { l in
            try all.withUnsafeMutableBufferPointer { try communicator.allGather(UnsafeBufferPointer(l), into: $0) }
        }
        var total = 0.0
        for q in 0..<communicator.size { for b in 0..<Int(counts[q]) { total += all[q * widest + b] } }
        return total
    }
}
