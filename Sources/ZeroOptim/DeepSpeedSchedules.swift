#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// DeepSpeed's learning-rate schedulers (deepspeed.runtime.lr_schedules), with DeepSpeed's
/// parameter names, defaults and formulas, in Doubles with the same operations in the same
/// order as its Python code.
///
/// Step indexing. DeepSpeed's engine steps the scheduler after each optimizer step, and the
/// scheduler writes its "not started" value into the optimizer when it is built. So optimizer
/// step i (0-based) uses `value(lastBatchIteration: i - 1)`, and step 0 uses the start value:
/// warmup_min_lr for WarmupLR / WarmupDecayLR, 0 for WarmupCosineLR, cycle_min_lr for OneCycle.
/// `learningRate(at: i)` returns exactly that: the rate DeepSpeed's optimizer holds during its
/// i-th step (what `get_last_lr()` reports before that step).
public struct DeepSpeedSchedule: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case warmupLR = "WarmupLR"
        case warmupDecayLR = "WarmupDecayLR"
        case warmupCosineLR = "WarmupCosineLR"
        case oneCycle = "OneCycle"
    }

    public var kind: Kind
    /// The optimizer's lr (WarmupCosineLR's org_lr; WarmupLR's warmup_max_lr when that is absent).
    public var optimizerLR: Double
    // WarmupLR, WarmupDecayLR
    public var warmupMinLR = 0.0
    public var warmupMaxLR: Double? = nil
    public var warmupNumSteps = 1000
    /// "log" (DeepSpeed's default) or "linear".
    public var warmupType = "log"
    // WarmupDecayLR, WarmupCosineLR
    public var totalNumSteps = 0
    // WarmupCosineLR
    public var warmupMinRatio = 0.0
    public var cosMinRatio = 0.0001
    // OneCycle
    public var cycleMinLR = 0.0
    public var cycleMaxLR = 0.0
    public var decayLRRate = 0.0
    public var cycleFirstStepSize = 2000
    public var cycleSecondStepSize: Int? = nil
    public var decayStepSize = 0

    public init(kind: Kind, optimizerLR: Double) {
        self.kind = kind
        self.optimizerLR = optimizerLR
    }

    /// The rate of optimizer step `step` (0-based), as DeepSpeed's engine applies it.
    public func learningRate(at step: Int) -> Double { value(lastBatchIteration: step - 1) }

    /// `get_lr()` of the scheduler whose `last_batch_iteration` is `t` (t = -1: the value it
    /// writes into the optimizer when it is built).
    public func value(lastBatchIteration t: Int) -> Double {
        switch kind {
        case .warmupLR, .warmupDecayLR:
            let minLR = warmupMinLR, maxLR = warmupMaxLR ?? optimizerLR
            if t < 0 { return minLR }
            let delta = maxLR - minLR
            return minLR + (delta * warmupGamma(t))
        case .warmupCosineLR:
            if t < 0 { return 0.0 }
            return optimizerLR * cosineRatio(t)
        case .oneCycle:
            if t < 0 { return cycleMinLR }
            let first = Double(cycleFirstStepSize)
            let second = cycleSecondStepSize.map(Double.init) ?? first
            let totalSize = first + second
            if Double(t) < totalSize {
                let stepRatio = first / totalSize
                let batch = Double(t + 1)
                let cycle = (1 + batch / totalSize).rounded(.down)
                let x = 1.0 + batch / totalSize - cycle
                let scale = x <= stepRatio ? x / stepRatio : (x - 1) / (stepRatio - 1)
                return cycleMinLR + (cycleMaxLR - cycleMinLR) * scale
            }
            // Decay after the cycle; skipped (flat at cycle_min_lr) when either knob is 0.
            if decayStepSize == 0 || decayLRRate == 0 { return cycleMinLR }
            let interval = Double(t - Int(totalSize) + 1) / Double(decayStepSize)
            return cycleMinLR / (1 + decayLRRate * interval)
        }
    }

    /// DeepSpeed clamps warmup_num_steps to at least 2 (log(1) would divide by zero).
    var effectiveWarmup: Int { max(2, warmupNumSteps) }

    /// WarmupLR / WarmupDecayLR `_get_gamma`.
    func warmupGamma(_ t: Int) -> Double {
        let w = effectiveWarmup
        if t < w {
            if warmupType == "linear" { return Double(t) / Double(w) }
            return (1.0 / log(Double(w))) * log(Double(t + 1))
        }
        guard kind == .warmupDecayLR else { return 1.0 }
        return max(0.0, Double(totalNumSteps - t) / max(1.0, Double(totalNumSteps - w)))
    }

    /// WarmupCosineLR `get_lr_ratio`.
    func cosineRatio(_ t: Int) -> Double {
        let w = effectiveWarmup
        if t < w {
            let r = warmupType == "linear" ? Double(t) / Double(w) : (1.0 / log(Double(w))) * log(Double(t + 1))
            return warmupMinRatio + r * (1.0 - warmupMinRatio)
        }
        let realLast = Double(t - w + 1)
        let realTotal = Double(totalNumSteps - w)
        let ratio = (1 + cos(Double.pi * realLast / realTotal)) / 2
        return max(0.0, cosMinRatio + (1.0 - cosMinRatio) * ratio)
    }

    /// Refuses what DeepSpeed would fail on (or divide by zero for).
    public func validate() throws {
        func fail(_ s: String) -> OptimizerError { OptimizerError("scheduler \(kind.rawValue): \(s)") }
        guard warmupType == "log" || warmupType == "linear" else { throw fail("warmup_type is \"log\" or \"linear\"") }
        switch kind {
        case .warmupLR: break
        case .warmupDecayLR, .warmupCosineLR:
            guard totalNumSteps >= 1 else { throw fail("needs total_num_steps >= 1") }
            if kind == .warmupCosineLR {
                guard totalNumSteps > effectiveWarmup else { throw fail("needs total_num_steps > warmup_num_steps (and > 2)") }
            }
        case .oneCycle:
            guard cycleFirstStepSize >= 1, (cycleSecondStepSize ?? 1) >= 1 else { throw fail("cycle step sizes must be >= 1") }
            guard decayStepSize >= 0 else { throw fail("decay_step_size must be >= 0") }
        }
    }
}
