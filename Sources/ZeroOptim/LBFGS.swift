import ZeroComm
import ZeroTensor

/// torch.optim.LBFGS (one parameter group) over a flat fp32 vector that the ranks hold in
/// shards, ZeRO-1 style: every vector of the method (direction, previous gradient, the m
/// history pairs s and y) is sharded like the parameters, (2m + 2) x Psi / N floats per rank,
/// allocated once in one `.optimizerState` buffer. The scalars (dot products, max |x|) are the
/// only cross-rank values, each reduced by `ShardSpace` in a canonical order, so iterates are
/// bit-identical for every rank count whose shards are whole multiples of `ShardSpace.blockSize`.
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

    /// The learning rate may change between steps (a schedule); the rest is fixed.
    public var options: Options
    public let space: ShardSpace
    /// The state torch keeps in `state`, as data a checkpoint can hold: vector v of `Vector`
    /// at [v * n, (v + 1) * n) of `vectors` (history slot j: y at 2 + j, s at 2 + m + j), and
    /// the replicated scalars of `Scalar` followed by rho of each history slot.
    public let vectors: FlatBuffer<Float>
    public let scalars: FlatBuffer<Double>

    enum Vector: Int { case direction, previousGradient }
    enum Scalar: Int, CaseIterable {
        case stepLength, hessianDiagonal, previousLoss, iterations, evaluations, historyCount, historyStart
    }

    public init(options: Options, space: ShardSpace, ledger: MemoryLedger? = nil) {
        precondition(options.history >= 1)
        self.options = options
        self.space = space
        vectors = FlatBuffer(count: (2 * options.history + 2) * space.count, category: .optimizerState, ledger: ledger)
        // Under 1 KiB at m = 100, replicated: left out of the ledger, so the state the memory
        // report predicts ((2m + 2) x 4 bytes per master element) is exactly what it counts.
        scalars = FlatBuffer(count: Scalar.allCases.count + options.history, category: .optimizerState, ledger: nil)
        hessianDiagonal = 1
    }

    /// State bytes per rank: (2m + 2) shard vectors and m + 7 scalars.
    public var stateBytes: Int { vectors.byteCount + scalars.byteCount }
    /// History bytes per rank at full history: 2 m shard floats.
    public var historyBytes: Int { 2 * options.history * space.count * 4 }

    public private(set) var iterations: Int {
        get { Int(scalars[Scalar.iterations.rawValue]) }
        set { scalars[Scalar.iterations.rawValue] = Double(newValue) }
    }
    public private(set) var evaluations: Int {
        get { Int(scalars[Scalar.evaluations.rawValue]) }
        set { scalars[Scalar.evaluations.rawValue] = Double(newValue) }
    }
    var stepLength: Double {
        get { scalars[Scalar.stepLength.rawValue] }
        set { scalars[Scalar.stepLength.rawValue] = newValue }
    }
    var hessianDiagonal: Double {
        get { scalars[Scalar.hessianDiagonal.rawValue] }
        set { scalars[Scalar.hessianDiagonal.rawValue] = newValue }
    }
    var previousLoss: Double {
        get { scalars[Scalar.previousLoss.rawValue] }
        set { scalars[Scalar.previousLoss.rawValue] = newValue }
    }
    var historyCount: Int {
        get { Int(scalars[Scalar.historyCount.rawValue]) }
        set { scalars[Scalar.historyCount.rawValue] = Double(newValue) }
    }
    var historyStart: Int {
        get { Int(scalars[Scalar.historyStart.rawValue]) }
        set { scalars[Scalar.historyStart.rawValue] = Double(newValue) }
    }
    func rho(slot j: Int) -> Double { scalars[Scalar.allCases.count + j] }
    func setRho(slot j: Int, _ value: Double) { scalars[Scalar.allCases.count + j] = value }

    func vector(_ v: Int) -> UnsafeMutableBufferPointer<Float> { vectors.slice(v * space.count ..< (v + 1) * space.count) }
    var direction: UnsafeMutableBufferPointer<Float> { vector(Vector.direction.rawValue) }
    var previousGradient: UnsafeMutableBufferPointer<Float> { vector(Vector.previousGradient.rawValue) }
    /// The y and s of history slot j (physical; the oldest pair is at `historyStart`).
    func y(slot j: Int) -> UnsafeMutableBufferPointer<Float> { vector(2 + j) }
    func s(slot j: Int) -> UnsafeMutableBufferPointer<Float> { vector(2 + options.history + j) }

    /// The state arrays of elements [offset, offset + count) of this rank's vector (one
    /// trainer unit), for checkpoints: each vector's part, resharded by element range, and the
    /// scalars, replicated.
    public func stateArrays(offset: Int, count: Int) -> [OptimizerStateArray] {
        precondition(offset >= 0 && offset + count <= space.count)
        var arrays: [OptimizerStateArray] = []
        func part(_ name: String, _ v: Int) {
            let p = vector(v)
            arrays.append(OptimizerStateArray(name: name, parametersPerBlock: 1, bytesPerBlock: 4,
                                              bytes: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: p[offset ..< offset + count]))))
        }
        part("lbfgs.direction", Vector.direction.rawValue)
        part("lbfgs.previous_gradient", Vector.previousGradient.rawValue)
        for j in 0..<options.history {
            part("lbfgs.y.\(j)", 2 + j)
            part("lbfgs.s.\(j)", 2 + options.history + j)
        }
        arrays.append(OptimizerStateArray(name: "lbfgs.scalars", parametersPerBlock: 1, bytesPerBlock: 1,
                                          bytes: UnsafeMutableRawBufferPointer(scalars.pointer), isReplicated: true))
        return arrays
    }

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
                let d = direction
                for i in d.indices { d[i] = -g[i] }
                historyCount = 0; historyStart = 0
                hessianDiagonal = 1
            } else {
                try updateDirection(gradient: g)
            }
            _ = previousGradient.update(fromContentsOf: g)
            previousLoss = loss
            let t0 = iterations == 1 ? min(1, 1 / (try space.sumAbs(g))) * o.learningRate : o.learningRate
            let gtd = try g.withUnsafeBufferPointer { try space.dot($0, UnsafeBufferPointer(direction)) }
            if gtd > -o.toleranceChange { break }

            var lineEvaluations = 0
            switch o.lineSearch {
            case .strongWolfe:
                let r = try strongWolfe(x: x, t: t0, d: Array(direction), f: loss, g: g, gtd: gtd,
                                        maxSteps: maxEvaluations - currentEvaluations, closure: closure)
                (loss, g, stepLength, lineEvaluations) = (r.f, r.g, r.t, r.evaluations)
                axpy(stepLength, UnsafeBufferPointer(direction), &x)
                optimal = try space.maxAbs(g) <= o.toleranceGrad
            case .none:
                stepLength = t0
                axpy(stepLength, UnsafeBufferPointer(direction), &x)
                if n != o.maxIterations {
                    (loss, g) = try closure(x)
                    optimal = try space.maxAbs(g) <= o.toleranceGrad
                    lineEvaluations = 1
                }
            }
            currentEvaluations += lineEvaluations
            evaluations += lineEvaluations

            if n == o.maxIterations || currentEvaluations >= maxEvaluations || optimal { break }
            let d = direction, t = Float(stepLength)
            if try space.maxAbs(d.count, { d[$0] * t }) <= o.toleranceChange { break }
            if abs(loss - previousLoss) < o.toleranceChange { break }
        }
        return originalLoss
    }

    /// The two-loop recursion: d = -H g from the history, after adding the newest pair (which
    /// replaces the oldest once m are held).
    func updateDirection(gradient g: [Float]) throws {
        let d = direction, previous = previousGradient, t = Float(stepLength), m = options.history
        let y = (0..<g.count).map { g[$0] - previous[$0] }
        let s = (0..<g.count).map { d[$0] * t }
        let ys = try space.dot(y, s)
        if ys > 1e-10 {
            let slot: Int
            if historyCount == m {
                slot = historyStart
                historyStart = (historyStart + 1) % m
            } else {
                slot = (historyStart + historyCount) % m
                historyCount += 1
            }
            _ = self.y(slot: slot).update(fromContentsOf: y)
            _ = self.s(slot: slot).update(fromContentsOf: s)
            setRho(slot: slot, 1 / ys)
            hessianDiagonal = ys / (try space.dot(y, y))
        }
        // Logical pair i (0 = oldest) sits in slot (historyStart + i) % m.
        let slots = (0..<historyCount).map { (historyStart + $0) % m }
        var q = g.map { -$0 }
        var alpha = [Double](repeating: 0, count: slots.count)
        for i in slots.indices.reversed() {
            let j = slots[i]
            alpha[i] = try q.withUnsafeBufferPointer { try space.dot(UnsafeBufferPointer(self.s(slot: j)), $0) } * rho(slot: j)
            axpy(-alpha[i], UnsafeBufferPointer(self.y(slot: j)), &q)
        }
        var r = q.map { $0 * Float(hessianDiagonal) }
        for i in slots.indices {
            let j = slots[i]
            let beta = try r.withUnsafeBufferPointer { try space.dot(UnsafeBufferPointer(self.y(slot: j)), $0) } * rho(slot: j)
            axpy(alpha[i] - beta, UnsafeBufferPointer(self.s(slot: j)), &r)
        }
        _ = d.update(fromContentsOf: r)
    }

    /// torch's `_strong_wolfe` (c1 1e-4, c2 0.9): bracket, then zoom with cubic interpolation,
    /// at most `maxSteps` evaluations after the first (torch's max_ls, which LBFGS.step passes
    /// as max_eval - current_evals). Evaluates at x + t d; returns the accepted step and its
    /// loss and gradient.
    func strongWolfe(x: [Float], t initial: Double, d: [Float], f: Double, g: [Float], gtd: Double,
                     maxSteps: Int, closure: Closure) throws -> (f: Double, g: [Float], t: Double, evaluations: Int) {
        let c1 = 1e-4, c2 = 0.9
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
    x.withUnsafeBufferPointer { axpy(a, $0, &y) }
}

@inline(__always) func axpy(_ a: Double, _ x: UnsafeBufferPointer<Float>, _ y: inout [Float]) {
    let a = Float(a)
    for i in y.indices { y[i] = y[i] + a * x[i] }
}

/// One trainer unit's view of an `LBFGS` that spans all units: the per-unit `ShardOptimizer`
/// the engine's step machinery and checkpoints go through. The L-BFGS step itself runs over
/// all units at once (the trainer's closure); this object's `step` only publishes a master
/// range the trainer has already written (the bf16 write-back), and its `state` is the unit's
/// part of every L-BFGS vector plus the replicated scalars, so checkpoints save, restore and
/// reshard it like any parameter-aligned optimizer state.
public final class LBFGSShard: ShardOptimizer {
    public let lbfgs: LBFGS
    public let offset: Int
    public let count: Int
    public let config: OptimizerConfig

    /// Elements [offset, offset + count) of `lbfgs`'s vectors.
    public init(_ lbfgs: LBFGS, offset: Int, count: Int) {
        self.lbfgs = lbfgs
        self.offset = offset
        self.count = count
        var config = OptimizerConfig(kind: .lbfgs)
        config.learningRate = lbfgs.options.learningRate
        config.history = lbfgs.options.history
        self.config = config
    }

    /// `master` already holds the new values: writes their bf16 into `working` when given.
    public func step(master: UnsafeMutableBufferPointer<Float>, gradient: UnsafeBufferPointer<Float>,
                     working: UnsafeMutableBufferPointer<UInt16>?, context: StepContext) throws {
        guard master.count == count else { throw OptimizerError("L-BFGS unit view of \(count) elements given \(master.count)") }
        writeBack(master, working)
    }

    public var state: [OptimizerStateArray] { lbfgs.stateArrays(offset: offset, count: count) }
    public var supportsResharding: Bool { true }
}
