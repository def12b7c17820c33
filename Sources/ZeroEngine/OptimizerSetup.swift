import ZeroModels
import ZeroOptim

/// The optimizer a run's config asks for, with PyTorch's defaults for the rest.
func optimizerConfig(_ c: TrainingConfig) -> OptimizerConfig {
    let kind = OptimizerKind(rawValue: c.optimizer)!
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
    case "warmup_cosine", "cosine":
        s = .warmupCosine(baseLearningRate: c.lr, warmupSteps: min(c.warmup, c.steps - 1), totalSteps: c.steps,
                          floorRatio: c.minLR / c.lr)
    case "warmup_constant":
        s = .warmupCosine(baseLearningRate: c.lr, warmupSteps: min(c.warmup, c.steps - 1), totalSteps: c.steps, floorRatio: 1)
    case "constant":
        s = ScheduleConfig(kind: .constant, baseLearningRate: c.lr)
    case "onecycle", "one_cycle":
        s = ScheduleConfig(kind: .oneCycle, baseLearningRate: c.lr)
        s.maxLearningRate = c.lr
        s.totalSteps = c.steps
    case "step":
        s = ScheduleConfig(kind: .step, baseLearningRate: c.lr)
        s.stepSize = max(1, c.steps / 3)
    case "cyclic":
        s = ScheduleConfig(kind: .cyclic, baseLearningRate: c.minLR)
        s.maxLearningRate = c.lr
        s.stepSizeUp = max(1, c.warmup)
    case "plateau", "reduce_on_plateau":
        s = ScheduleConfig(kind: .reduceOnPlateau, baseLearningRate: c.lr)
        s.minLearningRate = c.minLR
    default:
        throw ConfigError("unknown schedule '\(c.schedule)' (warmup_cosine, warmup_constant, constant, onecycle, step, cyclic, plateau)")
    }
    do { try s.validate() } catch { throw ConfigError("\(error)") }
    return try LearningRateScheduler(s)
}

/// Adafactor factors whole matrices: the tensors of unit u lying wholly inside `range`
/// keep their shape; pieces of a tensor cut by a shard boundary, and padding, are vectors.
func parameterShapes(_ layout: ParameterLayout, unit u: Int, range: Range<Int>) -> [ParameterShape] {
    var shapes: [ParameterShape] = []
    var next = range.lowerBound
    for t in layout.tensors.filter({ $0.unit == u }).sorted(by: { $0.offset < $1.offset }) {
        let lo = max(t.offset, range.lowerBound), hi = min(t.offset + t.count, range.upperBound)
        guard lo < hi else { continue }
        if lo > next { shapes.append(.vector((next - range.lowerBound) ..< (lo - range.lowerBound))) }
        let local = (lo - range.lowerBound) ..< (hi - range.lowerBound)
        if lo == t.offset && hi == t.offset + t.count && t.shape.count >= 2 {
            shapes.append(ParameterShape(range: local, rows: t.shape[0], cols: t.count / t.shape[0]))
        } else {
            shapes.append(.vector(local))
        }
        next = hi
    }
    if next < range.upperBound { shapes.append(.vector((next - range.lowerBound) ..< (range.upperBound - range.lowerBound))) }
    return shapes
}
