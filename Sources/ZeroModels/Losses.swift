import Foundation

/// The losses of the classifier and embedding tasks, forward and backward side by side, each
/// matching its PyTorch definition (Tests/Fixtures/make_loss_fixtures.py writes the reference).
/// Inputs and gradients are fp32; every sum runs in fp64, in index order, so the bits depend
/// only on the inputs. Every loss is a mean over its rows; the gradient is of that mean.
public enum Loss {
    /// A loss value and the gradient with respect to each input, in the inputs' layout.
    public struct Result {
        public var value: Float
        public var gradients: [[Float]]
    }

    /// `torch.nn.functional.cross_entropy(logits, targets, label_smoothing: epsilon)` over
    /// `logits` [N, C] row-major: row i costs -(1 - epsilon) log p_y - (epsilon / C) sum_c log p_c,
    /// and d/dx_j = p_j - (1 - epsilon) [j = y] - epsilon / C (over N).
    public static func crossEntropy(logits: [Float], targets: [Int32], classes: Int, labelSmoothing epsilon: Double = 0) -> Result {
        meanOverRows(logits, targets, classes) { logp, y in
            var sumLogp = 0.0
            for c in 0..<classes { sumLogp += logp[c] }
            let loss = -(1 - epsilon) * logp[y] - epsilon / Double(classes) * sumLogp
            return (loss, { c in exp(logp[c]) - ((c == y ? 1 - epsilon : 0) + epsilon / Double(classes)) })
        }
    }

    /// torchvision's `sigmoid_focal_loss(x, t, alpha, gamma, reduction: "mean")` for binary
    /// targets t in {0, 1}: alpha_t * BCE(x, t) * (1 - p_t)^gamma with p = sigmoid(x),
    /// p_t = p t + (1 - p)(1 - t), alpha_t = alpha t + (1 - alpha)(1 - t) (alpha < 0: no weighting).
    public static func sigmoidFocal(logits: [Float], targets: [Float], alpha: Double = 0.25, gamma: Double = 2) -> Result {
        precondition(logits.count == targets.count)
        let n = logits.count
        var total = 0.0, grad = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let x = Double(logits[i]), t = Double(targets[i])
            let p = 1 / (1 + exp(-x))
            let ce = max(x, 0) - x * t + log1p(exp(-abs(x)))
            let m = 1 - (p * t + (1 - p) * (1 - t))
            let alphaT = alpha >= 0 ? alpha * t + (1 - alpha) * (1 - t) : 1
            total += alphaT * ce * pow(m, gamma)
            // d ce/dx = p - t; d m/dx = -(2t - 1) p (1 - p).
            let dm = -(2 * t - 1) * p * (1 - p)
            let focalSlope = m > 0 && gamma != 0 ? gamma * pow(m, gamma - 1) * dm : 0
            grad[i] = Float(alphaT * ((p - t) * pow(m, gamma) + ce * focalSlope) / Double(n))
        }
        return Result(value: Float(total / Double(n)), gradients: [grad])
    }

    /// The multi-class focal loss (Lin et al.): row i costs -alpha (1 - p_y)^gamma log p_y,
    /// p = softmax(logits [N, C]); d/dx_j = alpha (gamma m^(gamma-1) p_y log p_y - m^gamma)([j = y] - p_j),
    /// m = 1 - p_y.
    public static func softmaxFocal(logits: [Float], targets: [Int32], classes: Int, alpha: Double = 0.25, gamma: Double = 2) -> Result {
        meanOverRows(logits, targets, classes) { logp, y in
            let py = exp(logp[y]), m = 1 - py
            let slope = alpha * ((m > 0 && gamma != 0 ? gamma * pow(m, gamma - 1) * py * logp[y] : 0) - pow(m, gamma))
            return (-alpha * pow(m, gamma) * logp[y], { c in slope * ((c == y ? 1 : 0) - exp(logp[c])) })
        }
    }

    /// NT-Xent (SimCLR's InfoNCE) over `embeddings` [2N, D]: rows i and (i + N) mod 2N are two
    /// views of one example. s_ij = cos(z_i, z_j) / temperature (z normalized as
    /// `F.normalize`, eps 1e-12), row i costs -s_i,pos + log sum_{j != i} exp(s_ij); mean over 2N.
    /// The negatives are every other row, so for the same loss at any rank count the rows must
    /// be the global batch (all-gathered).
    public static func ntXent(embeddings z: [Float], dimension d: Int, temperature: Double = 0.5) -> Result {
        let rows = z.count / d
        precondition(rows * d == z.count && rows % 2 == 0 && rows >= 2)
        var norms = [Double](repeating: 0, count: rows), zn = [Double](repeating: 0, count: z.count)
        for i in 0..<rows {
            var s = 0.0
            for k in 0..<d { s += Double(z[i * d + k]) * Double(z[i * d + k]) }
            norms[i] = max(s.squareRoot(), 1e-12)
            for k in 0..<d { zn[i * d + k] = Double(z[i * d + k]) / norms[i] }
        }
        func dot(_ i: Int, _ j: Int) -> Double {
            var s = 0.0
            for k in 0..<d { s += zn[i * d + k] * zn[j * d + k] }
            return s
        }
        // G_ij = dL/ds_ij = (softmax_j(s_i) - [j = pos(i)]) / 2N, zero on the diagonal.
        var total = 0.0, g = [Double](repeating: 0, count: rows * rows)
        for i in 0..<rows {
            let positive = (i + rows / 2) % rows
            var s = [Double](repeating: -.infinity, count: rows)
            for j in 0..<rows where j != i { s[j] = dot(i, j) / temperature }
            let top = s.max()!
            var sum = 0.0
            for j in 0..<rows where j != i { sum += exp(s[j] - top) }
            let logSum = top + log(sum)
            total += logSum - s[positive]
            for j in 0..<rows where j != i {
                g[i * rows + j] = (exp(s[j] - logSum) - (j == positive ? 1 : 0)) / Double(rows)
            }
        }
        // dL/dzn_i = (1/T) sum_j (G_ij + G_ji) zn_j; then through the normalization.
        var grad = [Float](repeating: 0, count: z.count)
        for i in 0..<rows {
            var dzn = [Double](repeating: 0, count: d)
            for j in 0..<rows where j != i {
                let w = (g[i * rows + j] + g[j * rows + i]) / temperature
                for k in 0..<d { dzn[k] += w * zn[j * d + k] }
            }
            var radial = 0.0
            for k in 0..<d { radial += zn[i * d + k] * dzn[k] }
            for k in 0..<d { grad[i * d + k] = Float((dzn[k] - zn[i * d + k] * radial) / norms[i]) }
        }
        return Result(value: Float(total / Double(rows)), gradients: [grad])
    }

    /// `torch.nn.TripletMarginLoss(margin, p: 2, eps: 1e-6)` over rows of anchor, positive and
    /// negative [N, D]: max(d(a, p) - d(a, n) + margin, 0), d(x, y) = ||x - y + eps||; gradients
    /// are [anchor, positive, negative].
    public static func tripletMargin(anchor a: [Float], positive p: [Float], negative q: [Float], dimension d: Int,
                                     margin: Double = 1, eps: Double = 1e-6) -> Result {
        precondition(a.count == p.count && a.count == q.count && a.count % d == 0)
        let n = a.count / d
        var total = 0.0
        var ga = [Float](repeating: 0, count: a.count), gp = ga, gq = ga
        for i in 0..<n {
            let r = i * d ..< (i + 1) * d
            let up = r.map { Double(a[$0]) - Double(p[$0]) + eps }, uq = r.map { Double(a[$0]) - Double(q[$0]) + eps }
            let dp = up.reduce(0) { $0 + $1 * $1 }.squareRoot(), dq = uq.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let hinge = dp - dq + margin
            guard hinge > 0 else { continue }
            total += hinge
            for k in 0..<d {
                let towardP = dp > 0 ? up[k] / dp / Double(n) : 0, towardQ = dq > 0 ? uq[k] / dq / Double(n) : 0
                ga[r.lowerBound + k] = Float(towardP - towardQ)
                gp[r.lowerBound + k] = Float(-towardP)
                gq[r.lowerBound + k] = Float(towardQ)
            }
        }
        return Result(value: Float(total / Double(n)), gradients: [ga, gp, gq])
    }

    /// The mean over the rows of `logits` [N, C] of a per-row loss of the row's log softmax and
    /// target; `row` returns the row's loss and d(loss)/d(logit c), which is divided by N here.
    static func meanOverRows(_ logits: [Float], _ targets: [Int32], _ classes: Int,
                             _ row: (_ logp: [Double], _ target: Int) -> (Double, (Int) -> Double)) -> Result {
        let n = targets.count
        precondition(logits.count == n * classes && classes > 0)
        var total = 0.0, grad = [Float](repeating: 0, count: logits.count)
        for i in 0..<n {
            let at = i * classes
            let (loss, slope) = row(logSoftmax(logits[at ..< at + classes]), Int(targets[i]))
            total += loss
            for c in 0..<classes { grad[at + c] = Float(slope(c) / Double(n)) }
        }
        return Result(value: Float(total / Double(n)), gradients: [grad])
    }

    /// log softmax of one row, in fp64.
    static func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let top = Double(row.max()!)
        var sum = 0.0
        for x in row { sum += exp(Double(x) - top) }
        let logSum = top + log(sum)
        return row.map { Double($0) - logSum }
    }
}
