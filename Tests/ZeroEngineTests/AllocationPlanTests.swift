import Testing
import ZeroComm
import ZeroEngine
import ZeroModels
import ZeroOptim
import ZeroTensor

/// The trainer allocates exactly its `AllocationPlan`, the plan's schedule is what the
/// stages mean, and clipping with no limit only measures.
@Suite struct AllocationPlanTests {
    /// A constructed trainer's ledger, category by category, against the plan it was built
    /// from (AdamW: 8 bytes of state per master element; no communicator attached).
    @Test(arguments: [0, 1, 2, 3])
    func trainerAllocatesThePlan(stage: Int) throws {
        for (ranks, accumulation, precision) in [(1, 3, "bf16"), (2, 1, "bf16"), (4, 2, "fp32"), (2, 2, "fp32")] {
            var config = tinyConfig(stage: stage)
            config.globalMicroBatches = nil
            config.gradAccum = accumulation
            config.precision = PrecisionName(rawValue: precision)!
            let train = config
            let results = try SimulatedCluster.run(ranks: ranks) { comm -> [String] in
                let ledger = MemoryLedger()
                let trainer = try Trainer(config: train, communicator: comm, dataset: TokenDataset.embedded(), ledger: ledger)
                let plan = trainer.allocation
                let compute: ComputePrecision = precision == "bf16" ? .bf16 : .fp32
                let buffers = plan.buffers(optimizerStateBytesPerElement: 8, activationBytes: GPT.activationBytes(
                    config: .tiny, batchSize: train.microBatch, sequenceLength: train.seqLen, precision: compute),
                    matmulOperandBytes: GPT.matmulOperandBytes(config: .tiny, batchSize: train.microBatch, sequenceLength: train.seqLen,
                                                               precision: compute))
                var mismatches: [String] = []
                for category in MemoryCategory.allCases {
                    let planned = buffers.filter { $0.category == category }.reduce(0) { $0 + $1.bytes }
                    if ledger.current(category) != planned { mismatches.append("\(category): ledger \(ledger.current(category)), plan \(planned)") }
                }
                if ledger.currentTotal != buffers.reduce(0) { $0 + $1.bytes } { mismatches.append("total") }
                return mismatches
            }
            for (r, mismatches) in results.enumerated() {
                #expect(mismatches.isEmpty, "stage \(stage), \(ranks) ranks, A=\(accumulation), \(precision), rank \(r): \(mismatches)")
            }
        }
    }

    let tiny = Partition(unitCounts: [20480, 49984, 49984, 128], ranks: 2)
    let ops = [[0], [1], [2], [3, 0]]

    func plan(stage: Int, precision: PrecisionPolicy = .bf16, rank: Int = 1, overlap: Bool = false) -> AllocationPlan {
        AllocationPlan(partition: tiny, opUnits: ops, rank: rank, stage: StagePlan(stage: stage), precision: precision,
                       microBatch: 2, sequenceLength: 16, accumulationSteps: 1, overlap: overlap)
    }

    @Test func overlapAddsOneSlotInFlightAndReducesEachUnitEarly() {
        // Every stage reduces a unit right after its last backward use, so it travels while backward goes on.
        for s in 0...3 { #expect(plan(stage: s, overlap: true).gradientReductions == [[0], [1], [2], [3]]) }
        // Stage 3: a prefetch slot for the next op's unit; stages 2-3: a gradient slot for a reduction in flight.
        #expect(plan(stage: 3, overlap: true).gatheredSlotCounts == [20480, 50176, 50176])
        #expect(plan(stage: 3, overlap: true).computeSlotCounts == [20480, 50176])
        #expect(plan(stage: 2, overlap: true).gradientSlotCounts == [20480, 50176, 50176])
        #expect(plan(stage: 3, overlap: true).gradientSlotCounts == [20480, 50176, 50176])
        #expect(plan(stage: 1, overlap: true).gradientSlotCounts == [20480, 50176, 50176, 1024])
        #expect(plan(stage: 2, overlap: true).gatheredSlotCounts.isEmpty)
        // The report lists the extra slots: 4 bytes x 50176 of gradient, 2 x 50176 of bf16 prefetch.
        let extra = plan(stage: 3, overlap: true).buffers(optimizerStateBytesPerElement: 8, activationBytes: 0).filter { $0.name.contains("--overlap") }
        #expect(extra.map(\.bytes) == [4 * 50176, 2 * 50176])
        #expect(plan(stage: 3).buffers(optimizerStateBytesPerElement: 8, activationBytes: 0).allSatisfy { !$0.name.contains("--overlap") })
    }

    @Test func scheduleIsTheStage() {
        // A unit's gradient starts at its first backward use (the highest op that reads it).
        for s in 0...3 { #expect(plan(stage: s).gradientStarts == [[], [1], [2], [0, 3]]) }
        // Stages 0-1 reduce every unit once backward is over; 2-3 each after its last use.
        for s in 0...1 { #expect(plan(stage: s).gradientReductions == [[0, 1, 2, 3], [], [], []]) }
        for s in 2...3 { #expect(plan(stage: s).gradientReductions == [[0], [1], [2], [3]]) }
        #expect([0, 1, 2, 3].map { plan(stage: $0).reduction } == [.allReduce, .reduceScatter, .reduceScatter, .reduceScatter])
        #expect([0, 1, 2, 3].map { plan(stage: $0).weightGather } == [.never, .afterUpdate, .afterUpdate, .beforeEachOp])
        #expect(plan(stage: 1).updatedWorkingRange(unit: 1) == 24576 ..< 50176)   // 49 blocks: 24 + 25
        #expect(plan(stage: 3).updatedWorkingRange(unit: 1) == 0 ..< 25600)
        #expect(plan(stage: 0).updatedWorkingRange(unit: 1) == 0 ..< 50176)
    }

    @Test func slotsFollowThePolicy() {
        let bf16 = plan(stage: 3), fp32 = plan(stage: 3, precision: .fp32)
        #expect(bf16.gatheredSlotCounts == [20480, 50176] && bf16.computeSlotCounts == [20480, 50176])
        #expect(fp32.gatheredSlotCounts == [20480, 50176] && fp32.computeSlotCounts.isEmpty)
        #expect(bf16.wireCount == 50176 && fp32.wireCount == 0)
        #expect(plan(stage: 1).gradientSlotCounts == [20480, 50176, 50176, 1024])
        #expect(plan(stage: 2).gradientSlotCounts == [20480, 50176])
        #expect(plan(stage: 2).gatherSourceCount == 25600 && plan(stage: 3).gatherSourceCount == 0)
    }

    @Test func matmulOperandCopiesAreScratch() {
        let p = plan(stage: 2)
        let without = p.buffers(optimizerStateBytesPerElement: 8, activationBytes: 0)
        let with = p.buffers(optimizerStateBytesPerElement: 8, activationBytes: 0, matmulOperandBytes: 4096)
        #expect(!without.contains { $0.name == "bf16 matmul operand copies" })
        #expect(with.filter { $0.name == "bf16 matmul operand copies" } == [PlannedBuffer(category: .scratch, name: "bf16 matmul operand copies", bytes: 4096)])
        #expect(with.reduce(0) { $0 + $1.bytes } == without.reduce(0) { $0 + $1.bytes } + 4096)
    }

    /// `--clip 0` passes an infinite max-norm: the norm is measured, nothing is scaled.
    @Test func infiniteMaxNormMeasuresOnly() throws {
        var g: [Float] = (0..<3000).map { Float($0 % 17) * 1e3 - 5e3 }
        let before = g.map(\.bitPattern)
        let norm = g.withUnsafeBufferPointer { GlobalNorm.norm(units: [$0]) }
        let r = try g.withUnsafeMutableBufferPointer { try GlobalNorm.clip([$0], norm: norm, maxNorm: .infinity) }
        #expect(r.isFinite && !r.clipped && r.coefficient == 1 && r.norm == norm && norm > 1e5)
        #expect(g.map(\.bitPattern) == before)
        var zero = [Float](repeating: 0, count: 1024)
        let z = try zero.withUnsafeMutableBufferPointer { try GlobalNorm.clip([$0], norm: 0, maxNorm: .infinity) }
        #expect(z.isFinite && !z.clipped && zero.allSatisfy { $0 == 0 })
    }
}

/// A one-rank gpt-tiny unit set for the life-cycle tests; `body` runs on the rank.
func withTinyUnits(stage: Int, accumulation: Int = 1, _ body: @escaping @Sendable ([ShardedUnit]) throws -> Void) throws {
    _ = try SimulatedCluster.run(ranks: 1) { comm in
        let partition = Partition(unitCounts: [20480, 49984, 49984, 128], ranks: 1)
        let plan = AllocationPlan(partition: partition, opUnits: [[0], [1], [2], [3, 0]], rank: 0, stage: StagePlan(stage: stage),
                                  precision: .bf16, microBatch: 1, sequenceLength: 8, accumulationSteps: accumulation)
        let slots = UnitSlots(plan: plan, ledger: nil)
        let units = try (0..<partition.unitCount).map { u in
            let n = plan.range(plan.master, unit: u).count
            return ShardedUnit(index: u, plan: plan, optimizer: try makeOptimizer(OptimizerConfig(kind: .adamw), count: n, decaySegments: [], ledger: nil),
                               slots: slots, communicator: comm, ledger: nil)
        }
        try body(units)
    }
}

/// Each operation checks the unit's state: a call out of order stops the process.
@Suite struct ShardedUnitTests {
    @Test func lifeCycle() throws {
        try withTinyUnits(stage: 3, accumulation: 2) { units in
            let unit = units[1]
            for a in 0..<2 {
                _ = try unit.unshard()
                #expect(unit.residency == .unsharded)
                unit.reshard()
                unit.beginGradient()
                #expect(unit.phase == .gradientLive(reduced: a))
                unit.gradient[0] = 1
                try unit.reduceMicroBatchGradient()
                #expect(unit.phase == .accumulating(reduced: a + 1))
            }
            let g = unit.averageGradient(over: 2)
            #expect(g[0] == 1 && unit.phase == .averaged)
            try unit.step(StepContext(step: 1, learningRate: 1e-3))
            #expect(unit.phase == .stepped)
            try unit.refreshWorkingReplica()
            #expect(unit.phase == .accumulating(reduced: 0) && unit.residency == .sharded)
        }
    }

    @Test func reshardWhileSharded() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 2) { $0[1].reshard() }
        }
    }

    @Test func unshardTwice() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 0) { units in _ = try units[1].unshard(); _ = try units[1].unshard() }
        }
    }

    @Test func twoUnitsInOneSlot() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 3) { units in _ = try units[1].unshard(); _ = try units[2].unshard() }
        }
    }

    @Test func reduceWithoutGradient() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 2) { try $0[1].reduceMicroBatchGradient() }
        }
    }

    @Test func stepBeforeAllMicroBatches() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 1, accumulation: 2) { units in
                units[1].beginGradient()
                try units[1].reduceMicroBatchGradient()
                _ = units[1].averageGradient(over: 2)
            }
        }
    }

    @Test func unshardBeforeRefresh() async {
        await #expect(processExitsWith: .failure) {
            try withTinyUnits(stage: 1) { units in
                units[1].beginGradient()
                try units[1].reduceMicroBatchGradient()
                _ = units[1].averageGradient(over: 1)
                try units[1].step(StepContext(step: 1, learningRate: 1e-3))
                _ = try units[1].unshard()
            }
        }
    }
}
