import Foundation

/// The loss a feature model ends in (`--loss`), with its hyper-parameters.
public enum Objective: Sendable, Equatable {
    /// `torch.nn.CrossEntropyLoss(label_smoothing:)` over the K logits.
    case crossEntropy(labelSmoothing: Float)
    /// Multi-class focal loss: -alpha (1 - p_y)^gamma log p_y, p = softmax(logits).
    case softmaxFocal(alpha: Float, gamma: Float)
    /// torchvision's `sigmoid_focal_loss` over the K logits against the one-hot labels, mean over
    /// the N x K elements (alpha < 0: no class weighting). K = 2 is the binary case per logit.
    case sigmoidFocal(alpha: Float, gamma: Float)
    /// NT-Xent over 2M embeddings, rows i and M + i the two views of one example (in training the
    /// rows are the whole global batch: `Trainer.globalContrastiveLosses`).
    case infoNCE(temperature: Float)
    /// `TripletMarginLoss(margin, p: 2, eps: 1e-6)`: anchor = view 1 of example b, positive = its
    /// view 2, negative = view 2 of example (b + 1) mod B.
    case triplet(margin: Float)

    /// Whether the model runs two views per example and outputs embeddings.
    public var isContrastive: Bool {
        switch self {
        case .infoNCE, .triplet: return true
        default: return false
        }
    }
}

/// The fp32 kernels of the feature models' losses, forward and backward written out. They match
/// the fp64 references of `Loss` (the same formulas) to fp32 rounding. Row losses are summed in
/// Double in row order, so the value depends only on the inputs.
public enum ObjectiveKernels {
    /// The mean loss over `rows` rows of `outputs` [rows, width]; labels [rows] (classifier losses).
    public static func forward(_ objective: Objective, outputs x: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                               rows N: Int, width C: Int) -> Float {
        var total = 0.0
        switch objective {
        case .crossEntropy(let eps):
            for n in 0..<N {
                let r = x + n * C, y = Int(labels[n]), lse = logSumExp(r, C)
                var sum: Float = 0
                for c in 0..<C { sum += r[c] }
                total += Double(-(1 - eps) * (r[y] - lse) - eps / Float(C) * (sum - Float(C) * lse))
            }
        case .softmaxFocal(let alpha, let gamma):
            for n in 0..<N {
                let r = x + n * C, logp = r[Int(labels[n])] - logSumExp(r, C)
                total += Double(-alpha * pow(1 - exp(logp), gamma) * logp)
            }
            return Float(total / Double(N))
        case .sigmoidFocal(let alpha, let gamma):
            for n in 0..<N {
                for c in 0..<C { total += Double(sigmoidFocalTerm(x[n * C + c], target: c == Int(labels[n]), alpha: alpha, gamma: gamma).loss) }
            }
            return Float(total / Double(N * C))
        case .infoNCE(let temperature):
            return ntXent(x, rows: N, width: C, temperature: temperature, gradient: nil)
        case .triplet(let margin):
            return triplet(x, rows: N, width: C, margin: margin, gradient: nil)
        }
        return Float(total / Double(N))
    }

    /// d(mean loss)/d(outputs) into `gradient` [rows, width], which may alias `outputs`.
    public static func backward(_ objective: Objective, gradient g: UnsafeMutablePointer<Float>, outputs x: UnsafePointer<Float>,
                                labels: UnsafePointer<Int32>, rows N: Int, width C: Int) {
        let scale = 1 / Float(N)
        switch objective {
        case .crossEntropy(let eps):
            for n in 0..<N {
                let r = x + n * C, o = g + n * C, y = Int(labels[n]), lse = logSumExp(r, C)
                for c in 0..<C { o[c] = (exp(r[c] - lse) - ((c == y ? 1 - eps : 0) + eps / Float(C))) * scale }
            }
        case .softmaxFocal(let alpha, let gamma):
            for n in 0..<N {
                let r = x + n * C, o = g + n * C, y = Int(labels[n]), lse = logSumExp(r, C)
                let logp = r[y] - lse, py = exp(logp), m = 1 - py
                let focus: Float = m > 0 && gamma != 0 ? gamma * pow(m, gamma - 1) * py * logp : 0
                let slope = alpha * (focus - pow(m, gamma))
                for c in 0..<C { o[c] = slope * ((c == y ? 1 : 0) - exp(r[c] - lse)) * scale }
            }
        case .sigmoidFocal(let alpha, let gamma):
            let s = 1 / Float(N * C)
            for n in 0..<N {
                for c in 0..<C {
                    g[n * C + c] = sigmoidFocalTerm(x[n * C + c], target: c == Int(labels[n]), alpha: alpha, gamma: gamma).slope * s
                }
            }
        case .infoNCE(let temperature):
            var grad = [Float](repeating: 0, count: N * C)
            _ = grad.withUnsafeMutableBufferPointer { ntXent(x, rows: N, width: C, temperature: temperature, gradient: $0.baseAddress!) }
            g.update(from: grad, count: N * C)
        case .triplet(let margin):
            var grad = [Float](repeating: 0, count: N * C)
            _ = grad.withUnsafeMutableBufferPointer { triplet(x, rows: N, width: C, margin: margin, gradient: $0.baseAddress!) }
            g.update(from: grad, count: N * C)
        }
    }

    static func logSumExp(_ r: UnsafePointer<Float>, _ C: Int) -> Float {
        var top = -Float.infinity
        for c in 0..<C { top = max(top, r[c]) }
        var sum: Float = 0
        for c in 0..<C { sum += exp(r[c] - top) }
        return top + log(sum)
    }

    /// One element of torchvision's sigmoid focal loss and its derivative in x (not yet averaged).
    static func sigmoidFocalTerm(_ x: Float, target: Bool, alpha: Float, gamma: Float) -> (loss: Float, slope: Float) {
        let t: Float = target ? 1 : 0
        let p = 1 / (1 + exp(-x))
        let ce = max(x, 0) - x * t + log1p(exp(-abs(x)))
        let m = 1 - (p * t + (1 - p) * (1 - t))
        let alphaT: Float = alpha >= 0 ? alpha * t + (1 - alpha) * (1 - t) : 1
        let dm = -(2 * t - 1) * p * (1 - p)
        let focus: Float = m > 0 && gamma != 0 ? gamma * pow(m, gamma - 1) * dm : 0
        return (alphaT * ce * pow(m, gamma), alphaT * ((p - t) * pow(m, gamma) + ce * focus))
    }

    /// NT-Xent (see `Loss.ntXent`) over z [R, D]; writes the gradient when asked.
    static func ntXent(_ z: UnsafePointer<Float>, rows R: Int, width D: Int, temperature T: Float,
                       gradient: UnsafeMutablePointer<Float>?) -> Float {
        var norms = [Float](repeating: 0, count: R), zn = [Float](repeating: 0, count: R * D)
        for i in 0..<R {
            var s: Float = 0
            for k in 0..<D { s += z[i * D + k] * z[i * D + k] }
            norms[i] = max(s.squareRoot(), 1e-12)
            for k in 0..<D { zn[i * D + k] = z[i * D + k] / norms[i] }
        }
        var sim = [Float](repeating: 0, count: R * R)
        for i in 0..<R {
            for j in 0..<R where j != i {
                var s: Float = 0
                for k in 0..<D { s += zn[i * D + k] * zn[j * D + k] }
                sim[i * R + j] = s / T
            }
        }
        var total = 0.0
        // sim becomes G_ij = dL/ds_ij = (softmax_j(s_i) - [j = pos(i)]) / R, zero on the diagonal.
        for i in 0..<R {
            let positive = (i + R / 2) % R, row = i * R
            var top = -Float.infinity
            for j in 0..<R where j != i { top = max(top, sim[row + j]) }
            var sum: Float = 0
            for j in 0..<R where j != i { sum += exp(sim[row + j] - top) }
            let lse = top + log(sum)
            total += Double(lse - sim[row + positive])
            for j in 0..<R { sim[row + j] = j == i ? 0 : (exp(sim[row + j] - lse) - (j == positive ? 1 : 0)) / Float(R) }
        }
        if let gradient {
            var dzn = [Float](repeating: 0, count: D)
            for i in 0..<R {
                for k in 0..<D { dzn[k] = 0 }
                for j in 0..<R where j != i {
                    let w = (sim[i * R + j] + sim[j * R + i]) / T
                    for k in 0..<D { dzn[k] += w * zn[j * D + k] }
                }
                var radial: Float = 0
                for k in 0..<D { radial += zn[i * D + k] * dzn[k] }
                for k in 0..<D { gradient[i * D + k] = (dzn[k] - zn[i * D + k] * radial) / norms[i] }
            }
        }
        return Float(total / Double(R))
    }

    /// The triplet margin loss over the two views z [2B, D] (see `Objective.triplet`).
    static func triplet(_ z: UnsafePointer<Float>, rows R: Int, width D: Int, margin: Float,
                        gradient: UnsafeMutablePointer<Float>?) -> Float {
        let B = R / 2, eps: Float = 1e-6
        var total = 0.0
        var up = [Float](repeating: 0, count: D), uq = up
        gradient?.update(repeating: 0, count: R * D)
        for i in 0..<B {
            let a = z + i * D, p = z + (B + i) * D, q = z + (B + (i + 1) % B) * D
            var dp: Float = 0, dq: Float = 0
            for k in 0..<D {
                up[k] = a[k] - p[k] + eps; uq[k] = a[k] - q[k] + eps
                dp += up[k] * up[k]; dq += uq[k] * uq[k]
            }
            dp = dp.squareRoot(); dq = dq.squareRoot()
            let hinge = dp - dq + margin
            guard hinge > 0 else { continue }
            total += Double(hinge)
            guard let g = gradient else { continue }
            for k in 0..<D {
                let towardP = dp > 0 ? up[k] / dp / Float(B) : 0, towardQ = dq > 0 ? uq[k] / dq / Float(B) : 0
                g[i * D + k] += towardP - towardQ
                g[(B + i) * D + k] -= towardP
                g[(B + (i + 1) % B) * D + k] += towardQ
            }
        }
        return Float(total / Double(B))
    }
}
