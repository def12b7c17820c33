import Foundation
import Testing
import ZeroOptim

struct ScheduleFixture: Decodable {
    struct Config: Decodable {
        var kind: String
        var base_lr: Double
        var warmup: Int?, total: Int?, floor: Double?
        var max_lr: Double?, pct_start: Double?, div_factor: Double?, final_div_factor: Double?, anneal: String?
        var step_size: Int?, gamma: Double?
        var up: Int?, down: Int?
        var mode: String?, factor: Double?, patience: Int?, threshold: Double?, threshold_mode: String?
        var cooldown: Int?, min_lr: Double?
    }
    var name: String
    var config: Config
    var lrs: [String]
    var metrics: [Double]?

    var scheduleConfig: ScheduleConfig {
        let c = config
        var s = ScheduleConfig(kind: ScheduleKind(rawValue: c.kind)!, baseLearningRate: c.base_lr)
        if let v = c.warmup { s.warmupSteps = v }
        if let v = c.total { s.totalSteps = v }
        if let v = c.floor { s.floorRatio = v }
        if let v = c.max_lr { s.maxLearningRate = v }
        if let v = c.pct_start { s.pctStart = v }
        if let v = c.div_factor { s.divFactor = v }
        if let v = c.final_div_factor { s.finalDivFactor = v }
        if let v = c.anneal { s.annealStrategy = v }
        if let v = c.step_size { s.stepSize = v }
        if let v = c.gamma { s.gamma = v }
        if let v = c.up { s.stepSizeUp = v }
        if let v = c.down { s.stepSizeDown = v }
        if let v = c.mode { s.mode = v }
        if let v = c.factor { s.factor = v }
        if let v = c.patience { s.patience = v }
        if let v = c.threshold { s.threshold = v }
        if let v = c.threshold_mode { s.thresholdMode = v }
        if let v = c.cooldown { s.cooldown = v }
        if let v = c.min_lr { s.minLearningRate = v }
        return s
    }
}

@Suite("Learning-rate schedules against torch.optim.lr_scheduler")
struct ScheduleTests {
    static let fixtures: [ScheduleFixture] = (try? loadFixture("schedules", as: [ScheduleFixture].self)) ?? []

    @Test func fixturesLoaded() { #expect(Self.fixtures.count == 8) }

    @Test(arguments: fixtures.map(\.name))
    func bitExact(_ name: String) throws {
        let f = Self.fixtures.first { $0.name == name }!
        var scheduler = try LearningRateScheduler(f.scheduleConfig)
        for (i, hex) in f.lrs.enumerated() {
            let expected = Double(bitPattern: UInt64(hex, radix: 16)!)
            let lr = scheduler.learningRate(at: i)
            #expect(lr.bitPattern == expected.bitPattern, "\(name) step \(i): \(lr) vs \(expected)")
            if let m = f.metrics { scheduler.observe(metric: m[i]) }
        }
    }

    @Test func plateauStateRoundTripsThroughCodable() throws {
        var c = ScheduleConfig(kind: .reduceOnPlateau, baseLearningRate: 0.1)
        c.patience = 0
        var s = try LearningRateScheduler(c)
        s.observe(metric: 1)
        s.observe(metric: 2)
        let data = try JSONEncoder().encode(s)
        let back = try JSONDecoder().decode(LearningRateScheduler.self, from: data)
        #expect(back == s)
        #expect(back.learningRate(at: 99) == 0.1 * 0.1)
    }

    @Test func rejectsBadConfigs() {
        #expect(throws: OptimizerError.self) {
            try LearningRateScheduler(.warmupCosine(baseLearningRate: 1, warmupSteps: 10, totalSteps: 5))
        }
    }
}
