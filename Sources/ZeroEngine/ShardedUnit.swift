import ZeroComm
import ZeroOptim
import ZeroTensor

/// The buffers all units of a rank take turns in (sizes from the `AllocationPlan`): op
/// slots for gathered and widened weights, micro-batch gradient slots, the gradient wire
/// and the all-gather source. Each slot records which unit holds it, so two units that
/// share a slot can never be live in it at once. A unit holds a gathered slot from the
/// start of its all-gather (a prefetch) to `reshard`, and a gradient slot from
/// `beginGradient` until its reduction has completed.
public final class UnitSlots {
    let gathered: [WorkingBuffer]
    let compute: [FlatBuffer<Float>]
    let gradients: [FlatBuffer<Float>]
    /// Used only inside issued reductions, which run one at a time in issue order.
    let wire: GradientWire
    let gatherSource: WorkingBuffer
    var weightOwner: [Int?]
    var gatheredOwner: [Int?]
    var gradientOwner: [Int?]
    let plan: AllocationPlan

    public init(plan: AllocationPlan, ledger: MemoryLedger?) {
        self.plan = plan
        let working = plan.precision.working
        gradients = plan.gradientSlotCounts.map { FlatBuffer(count: $0, category: .gradients, ledger: ledger) }
        wire = GradientWire(plan.precision.reduce, count: plan.wireCount, ledger: ledger)
        compute = plan.computeSlotCounts.map { FlatBuffer(count: $0, category: plan.computeSlotCategory, ledger: ledger) }
        gathered = plan.gatheredSlotCounts.map { WorkingBuffer(working, count: $0, category: .gathered, ledger: ledger) }
        gatherSource = WorkingBuffer(working, count: plan.gatherSourceCount, category: .communication, ledger: ledger)
        weightOwner = Array(repeating: nil, count: plan.weightSlotCounts.count)
        gatheredOwner = Array(repeating: nil, count: plan.gatheredSlotCounts.count)
        gradientOwner = Array(repeating: nil, count: plan.gradientSlotCounts.count)
    }

    /// A free gathered slot unit u may use (slot 0 is unit 0's, the rest any other unit's).
    func freeGatheredSlot(for u: Int) -> Int? {
        (u == 0 ? 0 ..< 1 : 1 ..< gathered.count).first { gatheredOwner[$0] == nil }
    }

    /// A free gradient slot unit u may use: its own buffer at stages 0-1, else as gathered slots.
    func freeGradientSlot(for u: Int) -> Int? {
        guard plan.stage.reduceGradientsPerUnit else { return gradientOwner[u] == nil ? u : nil }
        return (u == 0 ? 0 ..< 1 : 1 ..< gradients.count).first { gradientOwner[$0] == nil }
    }
}

/// One parameter unit on one rank (FSDP2's `fully_shard` group): its fp32 master range,
/// optimizer state, reduced-gradient accumulator and working weights, with the state the
/// step moves it through. Every operation checks that state and stops the process on
/// misuse, so a wrong call order is a crash at the call, never a silently wrong result.
///
/// Per step: for each micro-batch, `unshard`/`reshard` around every op that reads the unit
/// (forward and backward; at stage 3 `startGather` may come earlier, as a prefetch),
/// `beginGradient` before its first backward op and `reduceMicroBatchGradient` after the
/// op the plan schedules (or its two halves, `startGradientReduction` there and
/// `completeGradientReduction` before the slot or the sum is needed); then
/// `averageGradient`, `step` (or `discardGradient` on a skipped step) and
/// `refreshWorkingReplica`.
public final class ShardedUnit {
    /// Whether the unit's full fp32 weights are resident in an op slot.
    public enum Residency: Sendable, Equatable { case sharded, unsharded }
    /// Where the unit is in the optimizer step's gradient life cycle.
    public enum Phase: Sendable, Equatable {
        /// Between micro-batches, with this many micro-batch gradients reduced so far.
        case accumulating(reduced: Int)
        /// A micro-batch gradient is being written into the unit's gradient slot.
        case gradientLive(reduced: Int)
        /// The micro-batch gradient is being reduced (issued, not yet completed); it still
        /// holds its gradient slot.
        case reducing(reduced: Int)
        /// The reduced sum is finished and averaged: ready to clip and step.
        case averaged
        /// The master range is updated; other ranks' parts of the replica are stale until refreshed.
        case stepped
    }

    public let index: Int
    public let plan: AllocationPlan
    public private(set) var residency = Residency.sharded
    public private(set) var phase = Phase.accumulating(reduced: 0)
    public let master: FlatBuffer<Float>
    public let optimizer: any ShardOptimizer
    let working: WorkingBuffer
    let accumulator: GradientAccumulator
    let slots: UnitSlots
    let communicator: any Communicator
    private var sum: FlatBuffer<Float>?
    /// Stage 3: the gathered slot holding (or receiving) this unit's full weights, and the
    /// all-gather still in flight into it.
    private var gatheredSlot: Int?
    private var gathering: CommTicket?
    /// The gradient slot of the live or reducing micro-batch gradient.
    private var gradientSlot: Int?
    /// The reduction in flight and the accumulator input it writes.
    private var reduction: (ticket: CommTicket, output: FlatBuffer<Float>)?
    /// Stages 1-2: the all-gather of the updated shards into the working replica, in flight.
    private var refreshing: CommTicket?
    /// Coupled penalties (`--l1`, `--l2`) added to the averaged gradient before the optimizer
    /// step, on `regularizedSegments` (master-range coordinates: the decaying tensors).
    public var regularization = CoupledRegularization()
    public var regularizedSegments: [Range<Int>] = []

    public init(index u: Int, plan: AllocationPlan, optimizer: any ShardOptimizer, slots: UnitSlots,
                communicator: any Communicator, ledger: MemoryLedger?) {
        index = u
        self.plan = plan
        self.optimizer = optimizer
        self.slots = slots
        self.communicator = communicator
        let masterCount = plan.range(plan.master, unit: u).count
        precondition(optimizer.count == masterCount, "unit \(u): optimizer for \(optimizer.count) elements, master has \(masterCount)")
        working = WorkingBuffer(plan.precision.working, count: plan.range(plan.working, unit: u).count, category: .weights, ledger: ledger)
        master = FlatBuffer(count: masterCount, category: .master, ledger: ledger)
        accumulator = GradientAccumulator(count: masterCount, accumulationSteps: plan.accumulationSteps, ledger: ledger)
        shardCounts = plan.partition.shardCounts(unit: u)
    }

    var paddedCount: Int { plan.partition.paddedCounts[index] }
    /// Every rank's shard size of this unit: the counts of its gathers and reductions.
    let shardCounts: [Int]

    /// Sets master and working weights from the unit's full padded values.
    public func load(fullValues: UnsafeBufferPointer<Float>) {
        precondition(residency == .sharded && phase == .accumulating(reduced: 0) && refreshing == nil, "unit \(index): load during a step (\(phase))")
        precondition(fullValues.count == paddedCount)
        _ = master.pointer.update(fromContentsOf: fullValues[plan.range(plan.master, unit: index)])
        working.write(UnsafeBufferPointer(rebasing: fullValues[plan.range(plan.working, unit: index)]))
    }

    // MARK: - Weights for one op

    /// Stage 3: whether the unit's gather has been started (a prefetch) and not yet released.
    public var isGathered: Bool { gatheredSlot != nil }

    /// Stage 3: starts the all-gather of the unit's shards into a free gathered slot it may
    /// use, and returns true; false (nothing started) while every such slot is held.
    /// `unshard` waits for it. Issued ahead of the op, it is a prefetch.
    @discardableResult
    public func startGather() -> Bool {
        precondition(plan.working == .ownedShard, "unit \(index): gather at a stage with full working weights")
        precondition(residency == .sharded && gatheredSlot == nil, "unit \(index): gather started twice")
        guard let s = slots.freeGatheredSlot(for: index) else { return false }
        slots.gatheredOwner[s] = index
        gatheredSlot = s
        let gathered = slots.gathered[s], working = self.working, counts = shardCounts
        gathering = communicator.issue { try gathered.allGather(working, 0 ..< working.count, counts: counts, communicator: $0) }
        return true
    }

    /// Makes the full fp32 weights resident for one op: waits for (or, without a prefetch,
    /// runs) the gather of the shards into a gathered slot (stage 3) and widens narrower
    /// working weights into the slot's compute copy.
    public func unshard() throws -> UnsafeBufferPointer<Float> {
        precondition(residency == .sharded, "unit \(index): unshard while already unsharded")
        try completeRefresh()
        switch phase {
        case .accumulating, .gradientLive, .reducing: break
        default: preconditionFailure("unit \(index): unshard with the working replica not refreshed (\(phase))")
        }
        let s = plan.weightSlot(of: index)
        if let owner = slots.weightOwner[s] { preconditionFailure("unit \(index): weight slot \(s) is held by unit \(owner)") }
        if plan.working == .ownedShard && gatheredSlot == nil && !startGather() {
            preconditionFailure("unit \(index): every gathered slot it may use is held (\(slots.gatheredOwner))")
        }
        slots.weightOwner[s] = index
        residency = .unsharded
        let compute = slots.compute.isEmpty ? nil : slots.compute[s]
        guard plan.working == .ownedShard else { return working.fp32(0 ..< paddedCount, widenInto: compute) }
        if let ticket = gathering {
            gathering = nil
            try communicator.wait(ticket)
        }
        return slots.gathered[gatheredSlot!].fp32(0 ..< paddedCount, widenInto: compute)
    }

    /// Releases the op slots (the gathered or widened weights are dead after the op).
    public func reshard() {
        precondition(residency == .unsharded, "unit \(index): reshard while sharded")
        slots.weightOwner[plan.weightSlot(of: index)] = nil
        if let g = gatheredSlot { slots.gatheredOwner[g] = nil }
        gatheredSlot = nil
        residency = .sharded
    }

    // MARK: - Gradients

    /// Claims and zeroes a free gradient slot for this micro-batch's backward (the trainer
    /// completes reductions first when every slot the unit may use is still reducing).
    public func beginGradient() {
        guard case .accumulating(let reduced) = phase, reduced < plan.accumulationSteps else {
            preconditionFailure("unit \(index): gradient begun in phase \(phase) (A = \(plan.accumulationSteps))")
        }
        guard let s = slots.freeGradientSlot(for: index) else {
            preconditionFailure("unit \(index): every gradient slot it may use is held (\(slots.gradientOwner))")
        }
        slots.gradientOwner[s] = index
        gradientSlot = s
        phase = .gradientLive(reduced: reduced)
        gradient.update(repeating: 0)
    }

    /// The fp32 micro-batch gradient the model's backward adds into (padded unit).
    public var gradient: UnsafeMutableBufferPointer<Float> {
        guard case .gradientLive = phase, let s = gradientSlot else { preconditionFailure("unit \(index): gradient used in phase \(phase)") }
        return slots.gradients[s].slice(0 ..< paddedCount)
    }

    /// Reduces the micro-batch gradient across ranks (through the policy's wire type) into
    /// the canonical accumulator and releases the gradient slot.
    public func reduceMicroBatchGradient() throws {
        startGradientReduction()
        try completeGradientReduction()
    }

    /// Issues the reduction of the micro-batch gradient (rounded to the wire type inside the
    /// issued call, so one wire buffer serves every unit); the gradient slot stays held
    /// until `completeGradientReduction`.
    public func startGradientReduction() {
        guard case .gradientLive(let reduced) = phase else {
            preconditionFailure("unit \(index): reduce without a live gradient (\(phase))")
        }
        let out = accumulator.nextInput()
        let gradient = UnsafeBufferPointer(self.gradient), wire = slots.wire
        let kind = plan.reduction, counts = shardCounts
        let ticket = communicator.issue { try wire.reduce(gradient, into: out.pointer, kind, counts: counts, communicator: $0) }
        reduction = (ticket, out)
        phase = .reducing(reduced: reduced)
    }

    /// Whether a reduction is in flight (issued and not yet completed here).
    public var isReducing: Bool { reduction != nil }

    /// Waits for the issued reduction, adds it to the canonical accumulator (micro-batches
    /// in order: a unit's next gradient cannot begin before this) and frees the gradient slot.
    public func completeGradientReduction() throws {
        guard case .reducing(let reduced) = phase, let pending = reduction, let s = gradientSlot else {
            preconditionFailure("unit \(index): complete without a reduction in flight (\(phase))")
        }
        try communicator.wait(pending.ticket)
        accumulator.push(pending.output)
        reduction = nil
        slots.gradientOwner[s] = nil
        gradientSlot = nil
        phase = .accumulating(reduced: reduced + 1)
    }

    /// Finishes the canonical sum of the step's A reduced gradients and divides by G; returns
    /// it over the master range (clipping scales it in place).
    public func averageGradient(over globalMicroBatches: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(residency == .sharded && phase == .accumulating(reduced: plan.accumulationSteps),
                     "unit \(index): average after \(phase), A = \(plan.accumulationSteps)")
        let total = accumulator.finish()
        let p = total.pointer, scale = Float(globalMicroBatches)
        for i in p.indices { p[i] = p[i] / scale }
        sum = total
        phase = .averaged
        return p
    }

    /// The averaged gradient over this rank's owned shard (what the global norm adds up).
    public var ownedGradient: UnsafeBufferPointer<Float> {
        guard phase == .averaged, let sum else { preconditionFailure("unit \(index): no averaged gradient (\(phase))") }
        let owned = plan.range(.ownedShard, unit: index), base = plan.range(plan.master, unit: index).lowerBound
        return UnsafeBufferPointer(rebasing: sum.readOnly[(owned.lowerBound - base) ..< (owned.upperBound - base)])
    }

    // MARK: - Update

    /// Optimizer step on the master range; the working copy of that range is written back
    /// (by the fused kernel's bf16 output, or copied).
    public func step(_ context: StepContext) throws {
        guard phase == .averaged, let sum else { preconditionFailure("unit \(index): step in phase \(phase)") }
        try completeRefresh()
        try regularization.apply(to: sum.pointer, params: master.pointer, segments: regularizedSegments)
        let range = plan.updatedWorkingRange(unit: index)
        try optimizer.step(master: master.pointer, gradient: sum.readOnly, working: working.optimizerOutput(range), context: context)
        working.finishStep(master: master.readOnly, range)
        phase = .stepped
    }

    /// A skipped step: the averaged gradient is dropped, weights and state stay untouched.
    public func discardGradient() {
        precondition(phase == .averaged, "unit \(index): discard in phase \(phase)")
        recycleSum()
    }

    /// Brings the working replica up to date after `step`: stages 1-2 issue the all-gather of
    /// every rank's updated shard (copied out first, inside the issued call: the own chunk of
    /// the output is the input's home, and issued calls run one at a time, so one source
    /// buffer serves every unit). The next `unshard` waits for it, so with overlap the gather
    /// runs during the other units' optimizer steps and the next forward's first ops.
    public func refreshWorkingReplica() throws {
        precondition(phase == .stepped, "unit \(index): refresh in phase \(phase)")
        if plan.weightGather == .afterUpdate {
            let range = plan.updatedWorkingRange(unit: index)
            let source = slots.gatherSource, working = self.working, counts = shardCounts
            refreshing = communicator.issue { comm in
                source.copy(from: working, range)
                try working.allGather(source, 0 ..< range.count, counts: counts, communicator: comm)
            }
        }
        recycleSum()
    }

    /// Waits for the refresh all-gather, if one is in flight: the working replica is whole again.
    public func completeRefresh() throws {
        guard let ticket = refreshing else { return }
        refreshing = nil
        try communicator.wait(ticket)
    }

    private func recycleSum() {
        if let sum { accumulator.recycle(sum) }
        sum = nil
        phase = .accumulating(reduced: 0)
    }
}
