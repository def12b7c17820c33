import Foundation
import ZeroModels

extension Trainer {
    /// The step key of validation windows. Training steps count up from 0 and never reach it,
    /// so validation micro-batch m reads the same windows at every evaluation of the run.
    static let validationStep = -1

    /// Mean loss over the fixed validation micro-batches 0..<M of `data` at the current weights.
    ///
    /// Rank r computes m = k * N + r for k = 0, 1, ... (the forward of training, without the
    /// backward; stage 3 gathers each unit's weights as it does for training). Every rank runs
    /// the same number of forwards, so the gathers of stage 3 stay matched; a forward past M
    /// only keeps them so and is not counted. The M losses are all-gathered and summed in m
    /// order in fp64, so the value is bit-identical for every stage and rank count.
    public func validationLoss(on data: any MicroBatchSource, batches m: Int) throws -> Double {
        precondition(m >= 1, "validation needs at least one micro-batch")
        let n = ranks, rounds = (m + n - 1) / n
        var local = [Float](repeating: 0, count: rounds)
        for k in 0 ..< rounds {
            local[k] = try evaluating { try forward(microBatch: k * n + rank, of: Self.validationStep, in: data) }
        }
        var gathered = [Float](repeating: 0, count: rounds * n)
        try local.withUnsafeBufferPointer { l in
            try gathered.withUnsafeMutableBufferPointer { try communicator.allGather(l, into: $0) }
        }
        var sum = 0.0
        for index in 0 ..< m {
            let (k, r) = index.quotientAndRemainder(dividingBy: n)
            sum += Double(gathered[r * rounds + k])
        }
        return sum / Double(m)
    }
}
