import Foundation
import Testing
import ZeroOptim

/// DeepSpeed's schedulers, step by step, against reference rates written by
/// Tests/Fixtures/make_deepspeed_schedule_fixtures.py from DeepSpeed's formulas
/// (deepspeed.runtime.lr_schedules), as its engine applies them: step i uses the value at
/// last_batch_iteration = i - 1.
@Suite struct DeepSpeedScheduleTests {
    struct Case: Decodable {
        struct Params: Decodable {
            var warmup_min_lr: Double?, warmup_max_lr: Double?, warmup_num_steps: Int?, warmup_type: String?
            var total_num_steps: Int?, warmup_min_ratio: Double?, cos_min_ratio: Double?
            var cycle_min_lr: Double?, cycle_max_lr: Double?, decay_lr_rate: Double?
            var cycle_first_step_size: Int?, cycle_second_step_size: Int?, decay_step_size: Int?
        }
        var name: String
        var type: String
        var optimizer_lr: Double
        var params: Params
        var lrs: [String]

        var schedule: DeepSpeedSchedule {
            let p = params
            var d = DeepSpeedSchedule(kind: DeepSpeedSchedule.Kind(rawValue: type)!, optimizerLR: optimizer_lr)
            if d.kind == .warmupDecayLR { d.warmupMaxLR = 0.001 }
            if let v = p.warmup_min_lr { d.warmupMinLR = v }
            if let v = p.warmup_max_lr { d.warmupMaxLR = v }
            if let v = p.warmup_num_steps { d.warmupNumSteps = v }
            if let v = p.warmup_type { d.warmupType = v }
            if let v = p.total_num_steps { d.totalNumSteps = v }
            if let v = p.warmup_min_ratio { d.warmupMinRatio = v }
            if let v = p.cos_min_ratio { d.cosMinRatio = v }
            if let v = p.cycle_min_lr { d.cycleMinLR = v }
            if let v = p.cycle_max_lr { d.cycleMaxLR = v }
            if let v = p.decay_lr_rate { d.decayLRRate = v }
            if let v = p.cycle_first_step_size { d.cycleFirstStepSize = v }
            if let v = p.cycle_second_step_size { d.cycleSecondStepSize = v }
            if let v = p.decay_step_size { d.decayStepSize = v }
            return d
        }
    }

    @Test func everyStepMatchesDeepSpeedBitForBit() throws {
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: fixtureURL("deepspeed_schedules")))
        #expect(Set(cases.map(\.type)) == Set(DeepSpeedSchedule.Kind.allCases.map(\.rawValue)))
        for c in cases {
            let d = c.schedule
            try d.validate()
            var s = ScheduleConfig(kind: .deepSpeed, baseLearningRate: c.optimizer_lr)
            s.deepSpeed = d
            let scheduler = try LearningRateScheduler(s)
            for (i, text) in c.lrs.enumerated() {
                let want = Double(text)!
                #expect(d.learningRate(at: i).bitPattern == want.bitPattern, "\(c.name) step \(i): \(d.learningRate(at: i)) vs \(want)")
                #expect(scheduler.learningRate(at: i) == want)
            }
        }
    }

    /// A few values by hand from the documented definitions, independent of the fixture.
    @Test func handValues() {
        var w = DeepSpeedSchedule(kind: .warmupLR, optimizerLR: 0.01)
        w.warmupMaxLR = 1.0
        w.warmupNumSteps = 100
        // Step 0 holds the start value, step i the value at iteration i - 1: log(i) / log(100).
        #expect(w.learningRate(at: 0) == 0 && w.learningRate(at: 1) == 0)
        #expect(abs(w.learningRate(at: 10) - log(10) / log(100)) < 1e-15)
        #expect(w.learningRate(at: 101) == 1.0)
        w.warmupType = "linear"
        #expect(w.learningRate(at: 51) == 0.5)
        var cosine = DeepSpeedSchedule(kind: .warmupCosineLR, optimizerLR: 2.0)
        cosine.totalNumSteps = 10
        cosine.warmupNumSteps = 2
        cosine.cosMinRatio = 0
        // Iteration 5: real step 4 of 8, half-way down the cosine: ratio 0.5.
        #expect(abs(cosine.learningRate(at: 6) - 1.0) < 1e-15)
        var bad = cosine
        bad.warmupType = "exp"
        #expect(throws: OptimizerError.self) { try bad.validate() }
    }
}
