#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Learning-rate schedules by their PyTorch names.
public enum ScheduleKind: String, Sendable, Codable, CaseIterable {
    /// lr = base.
    case constant
    /// torch LambdaLR with nanoGPT's factor: linear warmup, cosine decay to a floor (see `ScheduleConfig`).
    case warmupCosine = "warmup_cosine"
    /// torch.optim.lr_scheduler.OneCycleLR (two phases, learning rate only).
    case oneCycle = "one_cycle"
    /// torch.optim.lr_scheduler.StepLR.
    case step
    /// torch.optim.lr_scheduler.ReduceLROnPlateau (stateful: `PlateauState`).
    case reduceOnPlateau = "reduce_on_plateau"
    /// torch.optim.lr_scheduler.CyclicLR, mode "triangular".
    case cyclic
    /// One of DeepSpeed's schedulers (`ScheduleConfig.deepSpeed`).
    case deepSpeed = "deepspeed"
}

/// One schedule and its parameters, with PyTorch's defaults and semantics.
///
/// `learningRate(at: i)` is the rate of the optimizer step with 0-based index i, that is the
/// value torch's scheduler holds after i calls of `scheduler.step()`. Doubles throughout, with
/// the same operations in the same order as torch's Python code, so values match bit for bit.
public struct ScheduleConfig: Sendable, Codable, Equatable {
    public var kind: ScheduleKind
    /// The optimizer's learning rate (torch's `base_lr`, `initial lr`); OneCycle uses `maxLearningRate`.
    public var baseLearningRate: Double
    /// warmup_cosine: warmup steps W, decay end T (> W), floor as a fraction of base.
    public var warmupSteps: Int = 0
    public var totalSteps: Int = 0
    public var floorRatio: Double = 0.1
    /// one_cycle: max_lr, pct_start, div_factor, final_div_factor, anneal_strategy ("cos" or "linear"); uses totalSteps.
    public var maxLearningRate: Double = 0
    public var pctStart: Double = 0.3
    public var divFactor: Double = 25
    public var finalDivFactor: Double = 1e4
    public var annealStrategy: String = "cos"
    /// step: step_size and gamma.
    public var stepSize: Int = 1
    public var gamma: Double = 0.1
    /// reduce_on_plateau: mode ("min"/"max"), factor, patience, threshold, threshold_mode ("rel"/"abs"), cooldown, min_lr, eps.
    public var mode: String = "min"
    public var factor: Double = 0.1
    public var patience: Int = 10
    public var threshold: Double = 1e-4
    public var thresholdMode: String = "rel"
    public var cooldown: Int = 0
    public var minLearningRate: Double = 0
    public var plateauEps: Double = 1e-8
    /// cyclic: base_lr is `baseLearningRate`, max_lr `maxLearningRate`, step_size_up, step_size_down (nil: = up).
    public var stepSizeUp: Int = 2000
    public var stepSizeDown: Int? = nil
    /// deepspeed: the DeepSpeed scheduler and its parameters.
    public var deepSpeed: DeepSpeedSchedule? = nil

    public init(kind: ScheduleKind, baseLearningRate: Double) {
        self.kind = kind
        self.baseLearningRate = baseLearningRate
    }

    /// Linear warmup over `warmupSteps`, cosine decay until `totalSteps`, then `floorRatio * base`.
    public static func warmupCosine(baseLearningRate: Double, warmupSteps: Int, totalSteps: Int,
                                    floorRatio: Double = 0.1) -> ScheduleConfig {
        var c = ScheduleConfig(kind: .warmupCosine, baseLearningRate: baseLearningRate)
        c.warmupSteps = warmupSteps
        c.totalSteps = totalSteps
        c.floorRatio = floorRatio
        return c
    }

    /// Checks the parameters the way torch's constructors do.
    public func validate() throws {
        func fail(_ s: String) -> OptimizerError { OptimizerError("schedule \(kind.rawValue): \(s)") }
        switch kind {
        case .constant: break
        case .warmupCosine:
            guard warmupSteps >= 0, totalSteps > warmupSteps else { throw fail("needs 0 <= warmupSteps < totalSteps") }
        case .oneCycle:
            guard totalSteps > 0 else { throw fail("totalSteps must be positive") }
            guard pctStart >= 0, pctStart <= 1 else { throw fail("pctStart must be in [0, 1]") }
            guard annealStrategy == "cos" || annealStrategy == "linear" else { throw fail("annealStrategy is cos or linear") }
        case .step:
            guard stepSize > 0 else { throw fail("stepSize must be positive") }
        case .reduceOnPlateau:
            guard factor < 1 else { throw fail("factor must be < 1") }
            guard mode == "min" || mode == "max" else { throw fail("mode is min or max") }
            guard thresholdMode == "rel" || thresholdMode == "abs" else { throw fail("thresholdMode is rel or abs") }
        case .cyclic:
            guard stepSizeUp > 0, (stepSizeDown ?? 1) > 0 else { throw fail("step sizes must be positive") }
        case .deepSpeed:
            guard let deepSpeed else { throw fail("needs a DeepSpeed scheduler") }
            try deepSpeed.validate()
        }
    }

    /// The learning rate of the optimizer step with 0-based index `step`.
    /// For `reduce_on_plateau` this is the initial rate; use `LearningRateScheduler` for its state.
    public func learningRate(at step: Int) -> Double {
        let i = max(0, step)
        switch kind {
        case .constant, .reduceOnPlateau:
            return baseLearningRate
        case .warmupCosine:
            // LambdaLR: base_lr * lr_lambda(last_epoch), nanoGPT's get_lr as a factor.
            return baseLearningRate * warmupCosineFactor(i)
        case .oneCycle:
            return oneCycle(i)
        case .step:
            // StepLR.get_lr is chainable: multiply by gamma at every multiple of step_size.
            var lr = baseLearningRate
            if stepSize > 0 { for _ in 0..<(i / stepSize) { lr = lr * gamma } }
            return lr
        case .cyclic:
            return cyclic(i)
        case .deepSpeed:
            return deepSpeed?.learningRate(at: i) ?? baseLearningRate
        }
    }

    /// nanoGPT: (it + 1) / (W + 1) while it < W; floor after T; cosine in between.
    func warmupCosineFactor(_ it: Int) -> Double {
        if it < warmupSteps { return Double(it + 1) / Double(warmupSteps + 1) }
        if it > totalSteps { return floorRatio }
        let decayRatio = Double(it - warmupSteps) / Double(totalSteps - warmupSteps)
        let coeff = 0.5 * (1.0 + cos(Double.pi * decayRatio))
        return floorRatio + coeff * (1.0 - floorRatio)
    }

    /// OneCycleLR.get_lr, two phases; steps past total_steps keep the final value (torch raises).
    func oneCycle(_ stepIndex: Int) -> Double {
        let initial = maxLearningRate / divFactor
        let minimum = initial / finalDivFactor
        let stepNum = Double(min(stepIndex, totalSteps))
        let phases: [(end: Double, start: Double, stop: Double)] = [
            (Double(pctStart * Double(totalSteps)) - 1, initial, maxLearningRate),
            (Double(totalSteps - 1), maxLearningRate, minimum),
        ]
        var startStep = 0.0
        for (k, phase) in phases.enumerated() {
            if stepNum <= phase.end || k == phases.count - 1 {
                let pct = (stepNum - startStep) / (phase.end - startStep)
                if annealStrategy == "linear" { return (phase.stop - phase.start) * pct + phase.start }
                let cosOut = cos(Double.pi * pct) + 1
                return phase.stop + (phase.start - phase.stop) / 2.0 * cosOut
            }
            startStep = phase.end
        }
        return minimum
    }

    /// CyclicLR.get_lr, mode triangular (scale_fn 1, scale_mode "cycle").
    func cyclic(_ lastEpoch: Int) -> Double {
        let up = Double(stepSizeUp), down = Double(stepSizeDown ?? stepSizeUp)
        let totalSize = up + down
        let stepRatio = up / totalSize
        let e = Double(lastEpoch)
        let cycle = (1 + e / totalSize).rounded(.down)
        let x = 1.0 + e / totalSize - cycle
        let scaleFactor = x <= stepRatio ? x / stepRatio : (x - 1) / (stepRatio - 1)
        let baseHeight = (maxLearningRate - baseLearningRate) * scaleFactor
        return baseLearningRate + baseHeight * 1.0
    }
}

/// ReduceLROnPlateau's mutable state, Codable for checkpoints.
public struct PlateauState: Sendable, Codable, Equatable {
    public var learningRate: Double
    public var best: Double
    public var badEpochs = 0
    public var cooldownCounter = 0
    public var lastEpoch = 0

    public init(config: ScheduleConfig) {
        learningRate = config.baseLearningRate
        best = config.mode == "min" ? .infinity : -.infinity
    }

    /// torch's `scheduler.step(metric)`: tracks the best value and cuts the rate after
    /// more than `patience` bad observations, then waits `cooldown` observations.
    public mutating func observe(metric current: Double, config c: ScheduleConfig) {
        lastEpoch += 1
        if isBetter(current, than: best, c) {
            best = current
            badEpochs = 0
        } else {
            badEpochs += 1
        }
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            badEpochs = 0
        }
        if badEpochs > c.patience {
            let old = learningRate
            let new = max(old * c.factor, c.minLearningRate)
            if old - new > c.plateauEps { learningRate = new }
            cooldownCounter = c.cooldown
            badEpochs = 0
        }
    }

    func isBetter(_ a: Double, than best: Double, _ c: ScheduleConfig) -> Bool {
        switch (c.mode, c.thresholdMode) {
        case ("min", "rel"): return a < best * (1.0 - c.threshold)
        case ("min", _): return a < best - c.threshold
        case (_, "rel"): return a > best * (c.threshold + 1.0)
        default: return a > best + c.threshold
        }
    }
}

/// A schedule with its state: what the trainer holds and checkpoints.
public struct LearningRateScheduler: Sendable, Codable, Equatable {
    public let config: ScheduleConfig
    public private(set) var plateau: PlateauState?

    public init(_ config: ScheduleConfig) throws {
        try config.validate()
        self.config = config
        plateau = config.kind == .reduceOnPlateau ? PlateauState(config: config) : nil
    }

    /// The rate of the optimizer step with 0-based index `step`.
    public func learningRate(at step: Int) -> Double {
        plateau?.learningRate ?? config.learningRate(at: step)
    }

    /// Feeds a metric (validation loss...) to ReduceLROnPlateau; no effect on other kinds.
    public mutating func observe(metric: Double) {
        plateau?.observe(metric: metric, config: config)
    }
}
