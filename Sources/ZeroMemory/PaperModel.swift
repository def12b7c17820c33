import Foundation

/// The ZeRO paper's model-state memory (Rajbhandari et al., SC'20, section 5, Table 1).
///
/// Real-valued, as in the paper: 2 bytes of 16-bit weights and 2 of 16-bit gradients per
/// parameter, K bytes of optimizer state (fp32 master included), each either replicated
/// or divided by the rank count N depending on the stage. No padding, no activations.
public enum PaperModel {
    /// K for mixed-precision Adam: fp32 master 4 + m 4 + v 4.
    public static let adamOptimizerBytes = 12

    /// Per-rank bytes of the three model-state parts for `stage`.
    public static func modelStateParts(stage: Int, parameters psi: Double, ranks n: Int,
                                       optimizerBytesPerParameter k: Int = adamOptimizerBytes)
        -> (weights: Double, gradients: Double, optimizer: Double)
    {
        let nd = Double(n)
        let weights = stage >= 3 ? 2 * psi / nd : 2 * psi
        let gradients = stage >= 2 ? 2 * psi / nd : 2 * psi
        let optimizer = stage >= 1 ? Double(k) * psi / nd : Double(k) * psi
        return (weights, gradients, optimizer)
    }

    /// Per-rank model-state bytes: stage 0 (2+2+K)Psi, 1: 2Psi + 2Psi + K Psi/N,
    /// 2: 2Psi + (2+K)Psi/N, 3: (2+2+K)Psi/N.
    public static func modelStateBytes(stage: Int, parameters psi: Double, ranks n: Int,
                                       optimizerBytesPerParameter k: Int = adamOptimizerBytes) -> Double
    {
        let p = modelStateParts(stage: stage, parameters: psi, ranks: n, optimizerBytesPerParameter: k)
        return p.weights + p.gradients + p.optimizer
    }

    /// Communication per step and rank, in parameter-sized elements (the paper's count):
    /// 2 Psi for stages 0-2 (reduce-scatter + all-gather, or all-reduce), 3 Psi for stage 3
    /// (parameters gathered in forward and again in backward, gradients reduce-scattered).
    /// Ring collectives move (N-1)/N of this; the paper rounds that to 1.
    public static func communicationElements(stage: Int, parameters psi: Double) -> Double {
        stage >= 3 ? 3 * psi : 2 * psi
    }

    /// Communication bytes per optimizer step and rank with `accumulationSteps` micro-steps:
    /// gradients cross the wire every micro-step (the canonical order reduces each micro-step),
    /// in `gradientWireBytes`; weights in `weightWireBytes`.
    /// Stage 0 all-reduces (2 Psi) per micro-step; stages 1-2 reduce-scatter per micro-step and
    /// all-gather the updated weights once; stage 3 gathers twice and reduce-scatters per
    /// micro-step. With one micro-step and equal wire bytes this is the paper's volume.
    public static func communicationBytes(stage: Int, parameters psi: Double, accumulationSteps a: Int = 1,
                                          gradientWireBytes g: Int = 2, weightWireBytes w: Int = 2) -> Double
    {
        let steps = Double(a)
        switch stage {
        case 0: return steps * psi * Double(2 * g)
        case 1, 2: return steps * psi * Double(g) + psi * Double(w)
        default: return steps * psi * Double(g + 2 * w)
        }
    }

    /// The paper's Table 1: per-device GB for P_os, P_os+g, P_os+g+p (stages 1, 2, 3).
    public static let table1Parameters: [Double] = [7.5e9, 128e9, 1e12]
    public static let table1Ranks = [1, 4, 16, 64, 256, 1024]
    /// Cells as printed in the paper, indexed [ranks row][model column][stage - 1].
    public static let table1Printed: [[[String]]] = [
        [["120", "120", "120"], ["2048", "2048", "2048"], ["16000", "16000", "16000"]],
        [["52.5", "41.3", "30"], ["896", "704", "512"], ["7000", "5500", "4000"]],
        [["35.6", "21.6", "7.5"], ["608", "368", "128"], ["4750", "2875", "1000"]],
        [["31.4", "16.6", "1.88"], ["536", "284", "32"], ["4187", "2218", "250"]],
        [["30.4", "15.4", "0.47"], ["518", "263", "8"], ["4046", "2054", "62.5"]],
        [["30.1", "15.1", "0.12"], ["513", "257", "2"], ["4011", "2013", "15.6"]],
    ]

    /// Table 1 recomputed from the formulas with the paper's rounding, same indexing.
    public static func table1() -> [[[String]]] {
        table1Ranks.map { n in
            table1Parameters.map { psi in
                (1...3).map { s in PaperRounding.table(modelStateBytes(stage: s, parameters: psi, ranks: n) / 1e9) }
            }
        }
    }
}

/// How the ZeRO paper prints gigabytes (GB = 1e9 bytes).
public enum PaperRounding {
    /// Table 1's rule, which reproduces every cell: at or above 100 GB the value is truncated
    /// to an integer (513.5 prints 513, 4187.5 prints 4187); from 10 to 100 it keeps one
    /// decimal, below 10 two decimals, rounding half up (41.25 prints 41.3, 1.875 prints 1.88,
    /// 0.46875 prints 0.47); trailing zeros are dropped (30.0 prints 30, 7.50 prints 7.5).
    /// That is "3 significant digits" for the 7.5B column except its two smallest cells,
    /// which the paper prints with two decimals (0.47, 0.12), not three digits (0.469, 0.117).
    public static func table(_ gigabytes: Double) -> String {
        if gigabytes >= 100 { return String(Int((gigabytes * (1 + 1e-12)).rounded(.down))) }
        return roundHalfUp(gigabytes, decimals: gigabytes >= 10 ? 1 : 2)
    }

    /// Figure 1's rule: one decimal, half up, trailing zero dropped (120, 31.4, 16.6, 1.9).
    public static func figure(_ gigabytes: Double) -> String {
        roundHalfUp(gigabytes, decimals: 1)
    }

    /// `value` rounded half up to `decimals` places, without trailing zeros. A relative
    /// nudge of 1e-12 keeps exact binary ties (41.25) and near-ties from division rounding up.
    static func roundHalfUp(_ value: Double, decimals: Int) -> String {
        let scale = pow(10, Double(decimals))
        let scaled = (value * scale * (1 + 1e-12) + 0.5).rounded(.down)
        let whole = Int(scaled)
        let intPart = whole / Int(scale)
        var frac = whole % Int(scale)
        var digits = decimals
        while digits > 0 && frac % 10 == 0 { frac /= 10; digits -= 1 }
        if digits == 0 { return String(intPart) }
        let fracText = String(frac)
        return "\(intPart)." + String(repeating: "0", count: digits - fracText.count) + fracText
    }
}
