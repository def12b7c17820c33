import ZeroModels
import ZeroOptim

/// The optimizer a run's config asks for, with PyTorch's defaults for the rest.
func optimizerConfig(_ c: TrainingConfig) -> OptimizerConfig {
    let kind = c.optimizer
    var o = OptimizerConfig(kind: kind, learningRate: c.lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps,
                            weightDecay: c.weightDecay)
    if kind == .sgd { o.momentum = 0.9 }
    return o
}

/// The learning-rate schedule a run's config names. `warmup_constant` is the warm-up of
/// `warmup_cosine` with a floor of 1 (DeepSpeed's WarmupLR).
func makeSchedule(_ c: TrainingConfig) throws -> LearningRateScheduler {
    var s: ScheduleConfig
    switch c.schedule {
    case .warmupCosine, .cosine:
        s = .warmupCosine(baseLearningRate: c.lr, warmupSteps: min(c.warmup, c.steps - 1), totalSteps: c.steps,
                          floorRatio: c.minLR / c.lr)
    case .warmupConstant:
        s = .warmupCosine(baseLearningRate: c.lr, warmupSteps: min(c.warmup, c.steps - 1), totalSteps: c.steps, floorRatio: 1)
    case .constant:
        s = ScheduleConfig(kind: .constant, baseLearningRate: c.lr)
    case .onecycle, .oneCycle:
        s = ScheduleConfig(kind: .oneCycle, baseLearningRate: c.lr)
        s.maxLearningRate = c.lr
        s.totalSteps = c.steps
    case .step:
        s = ScheduleConfig(kind: .step, baseLearningRate: c.lr)
        s.stepSize = max(1, c.steps / 3)
    case .cyclic:
        s = ScheduleConfig(kind: .cyclic, baseLearningRate: c.minLR)
        s.maxLearningRate = c.lr
        s.stepSizeUp = max(1, c.warmup)
    case .plateau, .reduceOnPlateau:
        s = ScheduleConfig(kind: .reduceOnPlateau, baseLearningRate: c.lr)
        s.minLearningRate = c.minLR
    case .deepspeed:
        s = ScheduleConfig(kind: .deepSpeed, baseLearningRate: c.lr)
        s.deepSpeed = c.deepSpeedSchedule
        s.deepSpeed?.optimizerLR = c.lr  // the optimizer's lr, after any --lr flag
    }
    do { try s.validate() } catch { throw ConfigError("\(error)") }
    return try LearningRateScheduler(s)
}

/// Adafactor's view of unit u: its tensors, whole, in unit coordinates (matrices keep their
/// shape, everything else is a vector). Pieces cut by shard boundaries are combined over ranks.
func parameterShapes(_ layout: ParameterLayout, unit u: Int) -> [ParameterShape] {
    layout.tensors.filter { $0.unit == u }.sorted { $0.offset < $1.offset }.map { t in
        let range = t.offset ..< t.offset + t.count
        return t.shape.count >= 2 ? ParameterShape(range: range, rows: t.shape[0], cols: t.count / t.shape[0]) : .vector(range)
    }
}
