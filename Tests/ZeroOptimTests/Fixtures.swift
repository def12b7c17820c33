import Foundation
import ZeroOptim
import ZeroTensor

/// Inputs shared with Tests/Fixtures/make_optim_fixtures.py: an integer hash gives float32
/// values exactly, so the fixtures store only outputs.
enum Inputs {
    static func mix(_ x0: UInt32) -> UInt32 {
        var x = x0
        x ^= x >> 16; x = x &* 0x7FEB352D
        x ^= x >> 15; x = x &* 0x846CA68B
        x ^= x >> 16
        return x
    }

    static func uniform(seed: Int, count: Int) -> [Float] {
        (0..<count).map { i in
            let h = mix(UInt32(truncatingIfNeeded: i) &* 0x9E3779B9 &+ UInt32(truncatingIfNeeded: seed) &* 0x85EBCA6B &+ 0x165667B1)
            return Float(Int32(bitPattern: h) >> 8) * 0x1p-23
        }
    }

    static func params(seed: Int, count: Int) -> [Float] { uniform(seed: seed, count: count).map { $0 * 0.5 } }

    static func gradient(seed: Int, step: Int, count: Int) -> [Float] {
        let u = uniform(seed: seed * 1000 + step, count: count)
        return (0..<count).map { i in
            let k = mix(UInt32(truncatingIfNeeded: i) &+ UInt32(truncatingIfNeeded: step) &* 7919 &+ UInt32(truncatingIfNeeded: seed)) % 8
            return u[i] * Float(sign: .plus, exponent: -Int(k), significand: 1)
        }
    }
}

struct FixtureConfig: Decodable {
    var kind: String
    var lr: Double
    var beta1: Double?
    var beta2: Double?
    var eps: Double?
    var weight_decay: Double?
    var momentum: Double?
    var dampening: Double?
    var nesterov: Bool?
    var alpha: Double?
    var centered: Bool?
    var lr_decay: Double?
    var initial_accumulator_value: Double?

    var optimizerConfig: OptimizerConfig {
        var c = OptimizerConfig(kind: OptimizerKind(rawValue: kind)!)
        c.learningRate = lr
        if let beta1 { c.beta1 = beta1 }
        if let beta2 { c.beta2 = beta2 }
        if let eps { c.eps = eps }
        if let weight_decay { c.weightDecay = weight_decay }
        if let momentum { c.momentum = momentum }
        if let dampening { c.dampening = dampening }
        if let nesterov { c.nesterov = nesterov }
        if let alpha { c.alpha = alpha }
        if let centered { c.centered = centered }
        if let lr_decay { c.learningRateDecay = lr_decay }
        if let initial_accumulator_value { c.initialAccumulatorValue = initial_accumulator_value }
        return c
    }
}

/// One optimizer trajectory: float32 params after each of `steps` steps, final state arrays.
struct OptimizerFixture: Decodable {
    var name: String
    var n: Int
    var seed: Int
    var steps: Int
    var decay_segments: [[Int]]
    var lrs: [Double]?
    var params: [[UInt32]]
    var state: [String: [UInt32]]
    var config: FixtureConfig
    var shapes: [[Int]]?
    var signed_map: [UInt32]?
    var unsigned_map: [UInt32]?
    var params_ieee_sqrt: [[UInt32]]?

    var decaySegments: [Range<Int>] { decay_segments.map { $0[0]..<$0[1] } }
    func learningRate(step: Int) -> Double { lrs?[step - 1] ?? config.lr }
}

func fixtureURL(_ name: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/optim/\(name).json")
}

func loadFixture<T: Decodable>(_ name: String, as: T.Type = OptimizerFixture.self) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: fixtureURL(name)))
}

/// Distance in units in the last place between two floats (0 when bit-equal, large across signs).
func ulpDistance(_ a: Float, _ b: Float) -> Int {
    if a.bitPattern == b.bitPattern { return 0 }
    if a.isNaN || b.isNaN { return Int.max }
    func ordered(_ x: Float) -> Int64 {
        let i = Int64(Int32(bitPattern: x.bitPattern))
        return i < 0 ? Int64(Int32.min) - i : i
    }
    return Int(abs(ordered(a) - ordered(b)))
}

func floats(_ bits: [UInt32]) -> [Float] { bits.map(Float.init(bitPattern:)) }

/// Error of `ours` against torch's `expected` in units of the last place of the larger of the
/// new value and the step's change: one ulp of the update is the resolution of torch's own sqrt.
func updateULPs(ours: Float, expected: Float, previous: Float) -> Double {
    if ours.bitPattern == expected.bitPattern { return 0 }
    let scale = max(abs(expected), abs(expected - previous))
    return Double(abs(ours - expected)) / Double(scale.ulp)
}

/// Runs `optimizer` over the fixture's steps; returns max ulp distance per step and the
/// bit-exact fraction of elements over all steps. With `reference` = nil the trajectory is
/// torch's `params`; `restart` resets the master to the reference's previous step before each
/// step (a per-step comparison from torch's own state).
func runTrajectory(_ f: OptimizerFixture, _ optimizer: any ShardOptimizer, reference: [[UInt32]]? = nil,
                   restart: Bool = false) throws -> (maxULP: [Int], exact: Double, master: [Float]) {
    let reference = reference ?? f.params
    var master = Inputs.params(seed: f.seed, count: f.n)
    var working = [UInt16](repeating: 0, count: f.n)
    var maxULP: [Int] = []
    var exact = 0
    for t in 1...f.steps {
        if restart && t > 1 { master = floats(reference[t - 2]) }
        let g = Inputs.gradient(seed: f.seed, step: t, count: f.n)
        try master.withUnsafeMutableBufferPointer { m in
            try g.withUnsafeBufferPointer { gp in
                try working.withUnsafeMutableBufferPointer { w in
                    try optimizer.step(master: m, gradient: gp, working: w,
                                       context: StepContext(step: t, learningRate: f.learningRate(step: t)))
                }
            }
        }
        let expected = floats(reference[t - 1])
        var worst = 0
        for i in 0..<f.n {
            let d = ulpDistance(master[i], expected[i])
            worst = max(worst, d)
            if d == 0 { exact += 1 }
            // bf16 write-back is the RNE of the new master.
            if working[i] != BFloat16.round(master[i]) { worst = Int.max }
        }
        maxULP.append(worst)
    }
    return (maxULP, Double(exact) / Double(f.n * f.steps), master)
}

/// Reads state array `name` of `optimizer` as floats.
func stateFloats(_ optimizer: any ShardOptimizer, _ name: String) -> [Float] {
    guard let s = optimizer.state.first(where: { $0.name == name }) else { return [] }
    return Array(s.bytes.bindMemory(to: Float.self))
}
