import Foundation
import ZeroModels
import ZeroTensor

/// A byte unit stated plainly: binary (KiB, MiB, GiB = 2^30) or decimal (GB = 1e9).
public struct ByteUnit: Sendable, Equatable {
    public var name: String
    public var bytes: Double
    public static let kib = ByteUnit(name: "KiB", bytes: 1024)
    public static let mib = ByteUnit(name: "MiB", bytes: 1048576)
    public static let gib = ByteUnit(name: "GiB", bytes: 1073741824)
    public static let gb = ByteUnit(name: "GB", bytes: 1e9)
    /// "GiB = 2^30 bytes" for the table headers.
    public var legend: String {
        switch name {
        case "KiB": "KiB = 2^10 bytes"
        case "MiB": "MiB = 2^20 bytes"
        case "GiB": "GiB = 2^30 bytes"
        default: "GB = 1e9 bytes"
        }
    }
    /// The binary unit that keeps `bytes` readable (GiB from 1 GiB up, else MiB, else KiB).
    public static func binary(for bytes: Double) -> ByteUnit {
        bytes >= gib.bytes ? .gib : bytes >= mib.bytes ? .mib : .kib
    }
    public func format(_ bytes: Double) -> String { String(format: "%.2f", bytes / self.bytes) }
    public func format(_ bytes: Int) -> String { format(Double(bytes)) }
}

extension MemoryReport {
    static let stageNames = ["baseline DP", "P_os", "P_os+g", "P_os+g+p"]
    static let stageFormulas = ["(2+2+K) Psi", "2 Psi + 2 Psi + K Psi/N", "2 Psi + (2+K) Psi/N", "(2+2+K) Psi/N"]

    // MARK: JSON

    /// The report as one JSON object:
    /// {"params", "ranks", "view", ..., "stages": [{"stage", "model_states_bytes",
    ///  "categories": {weights ... scratch, "padding"}, "total_bytes", ...}], ...}.
    public func json(deepSpeed: Bool = false) -> JSONValue {
        var top: [(String, JSONValue)] = [
            ("params", .int(parameters)), ("ranks", .int(ranks)), ("view", .string(view.rawValue)),
            ("optimizer_bytes_per_param", .int(optimizerBytesPerParameter)),
        ]
        if let run {
            top.append(("model", .object([
                ("name", .string(run.model.name)), ("vocabulary_size", .int(run.model.vocabularySize)),
                ("context_length", .int(run.model.contextLength)), ("layers", .int(run.model.layers)),
                ("heads", .int(run.model.heads)), ("channels", .int(run.model.channels)),
            ])))
            top += [("micro_batch", .int(run.microBatch)), ("sequence_length", .int(run.sequenceLength)),
                    ("grad_accum", .int(run.accumulationSteps)), ("precision", .string(run.precision.rawValue)),
                    ("alignment", .int(run.alignment)), ("padded_params", .int(run.units.all.padded)),
                    ("backend", .string(run.backend.rawValue)), ("fixed_overhead_bytes", .int(run.fixedOverheadBytes))]
        }
        top.append(("budget_bytes", budgetBytes.map(JSONValue.int) ?? .null))
        top.append(("recommended_stage", recommendedStage.map(JSONValue.int) ?? .null))
        if let n = ranksNeededAtStage3 { top.append(("ranks_needed_at_stage3", .int(n))) }
        top.append(("stages", .array(shownStages.map { stageJSON(stages[$0]) })))
        if deepSpeed { top.append(("deepspeed", deepSpeedJSON())) }
        if let measured { top.append(("measured", measuredJSON(measured))) }
        if let node { top.append(("node", node.json(shown: shownStages))) }
        return .object(top)
    }

    func stageJSON(_ e: StageEstimate) -> JSONValue {
        var categories: [(String, JSONValue)] = MemoryCategory.allCases.map { ($0.rawValue, .int(e.bytes($0))) }
        categories.append(("padding", .int(e.paddingBytes)))   // already inside the categories above
        var fields: [(String, JSONValue)] = [
            ("stage", .int(e.stage)), ("model_states_bytes", .bytes(e.modelStateBytes)),
            ("categories", .object(categories)), ("padding_included_in_categories", .bool(true)),
            ("total_bytes", .int(e.totalBytes)),
            ("communication_bytes_per_step", .bytes(e.communicationBytesPerStep)),
        ]
        fields.append(("fits", fits(e.stage).map(JSONValue.bool) ?? .null))
        fields.append(("terms", .array(e.terms.map {
            .object([("category", .string($0.category.rawValue)), ("name", .string($0.name)),
                     ("bytes", .int($0.bytes)), ("padding_bytes", .int($0.paddingBytes))])
        })))
        return .object(fields)
    }

    func deepSpeedJSON() -> JSONValue {
        let largest = largestLayerParameters ?? 0
        let z2 = DeepSpeedEstimate.zero2(totalParameters: parameters, gpusPerNode: ranks, cpuOffload: false)
        let z3 = DeepSpeedEstimate.zero3(totalParameters: parameters, largestLayerParameters: largest, gpusPerNode: ranks,
                                         cpuOffload: false, cpuOffloadParameters: false, zeroInit: true)
        return .object([
            ("largest_layer_params", .int(largest)),
            ("zero2_device_bytes", .int(z2.gpu)), ("zero2_host_bytes", .int(z2.cpu)),
            ("zero3_device_bytes", .int(z3.gpu)), ("zero3_host_bytes", .int(z3.cpu)),
            ("note", .string("no offload, 1 node with one GPU per rank; DeepSpeed prints these in GiB labelled GB")),
        ])
    }

    func measuredJSON(_ m: MeasuredMemory) -> JSONValue {
        .object([
            ("stage", .int(m.stage)),
            ("ranks", .array(m.ranks.map { r in
                var fields: [(String, JSONValue)] = [("rank", .int(r.rank))]
                fields.append(("peak_bytes", .object(MemoryCategory.allCases.map { ($0.rawValue, .int(r.peakBytes[$0, default: 0])) })))
                fields.append(("peak_total_bytes", .int(r.peakTotalBytes)))
                fields.append(("peak_resident_bytes", r.peakResidentBytes.map(JSONValue.int) ?? .null))
                return .object(fields)
            })),
        ])
    }

    // MARK: Text

    /// The human report: per-stage table, fit verdict and recommendation first.
    public func text(paper: Bool = false, deepSpeed: Bool = false) -> String {
        var out = header()
        switch view {
        case .modelStates: out += paper ? paperTable() : scaleTable()
        case .runtime: out += runtimeTable()
        }
        if let node { out += node.text(shown: shownStages) }
        out += verdict()
        if deepSpeed { out += "\n" + deepSpeedText() }
        if let measured { out += "\n" + measuredText(measured) }
        return out
    }

    func header() -> String {
        let k = optimizerBytesPerParameter
        let kText = k == 12 ? "K = 12 bytes/param: mixed-precision AdamW" : "K = \(k) bytes/param"
        switch view {
        case .modelStates:
            return "Model states per rank: \(grouped(parameters)) parameters, \(ranks) rank\(ranks == 1 ? "" : "s"), \(kText).\n"
                + "Parameters only: 16-bit weights and gradients, fp32 master and optimizer state; activations,\n"
                + "communication and scratch buffers are NOT included (pass --model NAME for the runtime's full plan).\n\n"
        case .runtime:
            let r = run!
            return "Per-rank memory of the runtime: \(r.model.name) (\(grouped(parameters)) parameters, padded to "
                + "\(grouped(r.units.all.padded)): every unit to a multiple of \(r.alignment)), \(ranks) rank\(ranks == 1 ? "" : "s"),\n"
                + "micro-batch \(r.microBatch) x \(r.sequenceLength) tokens, grad-accum \(r.accumulationSteps), \(r.precision.rawValue), \(kText).\n"
                + "Every buffer the engine allocates (padding included); total = all live at once.\n\n"
        }
    }

    func budgetLabel(_ unit: ByteUnit) -> String {
        guard let b = budgetBytes else { return "fits?" }
        return "fits \(ByteUnit.gib.format(b)) GiB"
    }

    func fitText(_ stage: Int) -> String {
        switch fits(stage) { case true?: "yes"; case false?: "NO"; case nil: "-" }
    }

    func scaleTable() -> String {
        var rows = [["stage", "ZeRO", "model states (bytes)", "+ padding (bytes)", "total GiB", "total GB", "comm/step GB", budgetLabel(.gib)]]
        for s in shownStages {
            let e = stages[s]
            let exact = Int(exactly: e.modelStateBytes).map(String.init) ?? String(format: "%.2f", e.modelStateBytes)
            rows.append([String(s), Self.stageNames[s], exact, String(e.paddingBytes), ByteUnit.gib.format(e.totalBytes),
                         ByteUnit.gb.format(e.totalBytes), ByteUnit.gb.format(e.communicationBytesPerStep), fitText(s)])
        }
        return table(rows, leftColumns: 2)
            + "Model states: the paper's formulas, exact bytes. Padding: the runtime pads each unit to whole 1024-element blocks\n"
            + "and deals the blocks to the ranks (shown for the last rank, which owns the tail). GiB = 2^30 bytes, GB = 1e9 bytes.\n"
            + "Comm/step: 16-bit volume sent per rank, 2 Psi (stages 0-2) or 3 Psi (stage 3).\n"
    }

    func paperTable() -> String {
        var rows = [["stage", "ZeRO", "formula", "exact (GB)", "Table 1 (GB)", "Figure 1 (GB)", budgetLabel(.gib)]]
        for s in shownStages {
            let gb = stages[s].modelStateBytes / 1e9
            rows.append([String(s), Self.stageNames[s], Self.stageFormulas[s], String(format: "%.4f", gb),
                         PaperRounding.table(gb), PaperRounding.figure(gb), fitText(s)])
        }
        return table(rows, leftColumns: 3) + "The paper's real-valued formulas (no padding), GB = 1e9 bytes, printed with the paper's rounding:\n"
            + "Table 1 truncates from 100 GB up and rounds half up to 1 decimal (10-100) or 2 (below 10); Figure 1 keeps 1 decimal.\n"
    }

    func runtimeTable() -> String {
        let unit = ByteUnit.binary(for: Double(shownStages.map { stages[$0].totalBytes }.max() ?? 0))
        var rows = [["\(unit.name) per rank"] + shownStages.map { "stage \($0)" }]
        for category in MemoryCategory.allCases {
            rows.append([category.rawValue] + shownStages.map { unit.format(stages[$0].bytes(category)) })
        }
        rows.append(["total"] + shownStages.map { unit.format(stages[$0].totalBytes) })
        rows.append(["  of which padding"] + shownStages.map { unit.format(stages[$0].paddingBytes) })
        rows.append(["paper model states"] + shownStages.map { unit.format(stages[$0].modelStateBytes) })
        rows.append(["comm/step (sent)"] + shownStages.map { unit.format(stages[$0].communicationBytesPerStep) })
        rows.append([budgetLabel(unit)] + shownStages.map(fitText))
        var out = table(rows) + "Units: \(unit.legend). Padding is already inside the categories above.\n"
        if shownStages.count == 1, let s = shownStages.first {
            out += "\nStage \(s), term by term (bytes, of which padding):\n"
            for term in stages[s].terms {
                out += "  " + term.category.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(term.bytes).leftPadded(12) + String(term.paddingBytes).leftPadded(10) + "  " + term.name + "\n"
            }
        }
        return out
    }

    func verdict() -> String {
        guard let budget = budgetBytes else { return "" }
        let gib = ByteUnit.gib
        var out = "\nBudget: \(gib.format(budget)) GiB per rank (\(budgetSource))\(node == nil ? "" : ", and the node check above").\n"
        if let s = recommendedStage {
            let need = ByteUnit.binary(for: Double(stages[s].totalBytes))
            out += "Recommendation: stage \(s) (\(Self.stageNames[s])) fits with \(need.format(stages[s].totalBytes)) \(need.name) per rank: "
                + "the smallest stage that fits, so the least communication.\n"
        } else {
            out += "Does not fit: even stage 3 needs \(gib.format(stages[3].totalBytes)) GiB per rank."
            if let n = ranksNeededAtStage3 {
                out += " Stage 3 fits from \(n) ranks.\n"
            } else {
                out += " No rank count up to 2^24 makes stage 3 fit.\n"
            }
            let activations = stages[3].bytes(.activations)
            if activations >= budget / 2 {
                out += "Activations alone take \(gib.format(activations)) GiB and do not shrink with ranks: "
                    + "lower --micro-batch or --seq-len (raise --grad-accum to keep the batch).\n"
            }
        }
        return out
    }

    func deepSpeedText() -> String {
        let largest = largestLayerParameters ?? 0
        var out = "DeepSpeed's estimators for the same inputs (1 node, \(ranks) GPU\(ranks == 1 ? "" : "s") = ranks"
        out += largestLayerParameters == nil ? "; largest_layer_params unknown, taken as 0: pass --largest-layer-params):\n"
                                             : "; largest_layer_params \(grouped(largest))):\n"
        out += "(model states only; their \"GB\" is GiB = 2^30 bytes; no ZeRO-1 estimate)\n"
        out += DeepSpeedEstimate.printout(totalParameters: parameters, largestLayerParameters: largest, gpusPerNode: ranks)
        let z2 = DeepSpeedEstimate.zero2(totalParameters: parameters, gpusPerNode: ranks, cpuOffload: false)
        let z3 = DeepSpeedEstimate.zero3(totalParameters: parameters, largestLayerParameters: largest, gpusPerNode: ranks,
                                         cpuOffload: false, cpuOffloadParameters: false, zeroInit: true)
        let unit = ByteUnit.binary(for: Double(max(z2.gpu, stages[2].totalBytes)))
        var rows = [["no offload, \(unit.name) per rank", "DeepSpeed", "ours: model states", "ours: total"]]
        for (s, ds) in [(2, z2.gpu), (3, z3.gpu)] {
            let e = stages[s]
            let states = e.bytes(.weights) + e.bytes(.master) + e.bytes(.optimizerState) + e.bytes(.gradients)
            rows.append(["stage \(s)", unit.format(ds), unit.format(states), unit.format(e.totalBytes)])
        }
        return out + "\n" + table(rows) + "Units: \(unit.legend). Ours: model states = weights + master + optimizer_state + gradients.\n"
    }

    func measuredText(_ m: MeasuredMemory) -> String {
        let e = stages[m.stage]
        let unit = ByteUnit.binary(for: Double(max(e.totalBytes, m.maxPeakTotal)))
        var rows = [["stage \(m.stage), \(unit.name) per rank", "predicted", "measured (max over \(m.ranks.count) ranks)", "measured/predicted"]]
        func ratio(_ measured: Int, _ predicted: Int) -> String {
            predicted == 0 ? (measured == 0 ? "-" : "inf") : String(format: "%.3f", Double(measured) / Double(predicted))
        }
        for category in MemoryCategory.allCases {
            rows.append([category.rawValue, unit.format(e.bytes(category)), unit.format(m.maxPeak(category)),
                         ratio(m.maxPeak(category), e.bytes(category))])
        }
        rows.append(["total (ledger peak)", unit.format(e.totalBytes), unit.format(m.maxPeakTotal), ratio(m.maxPeakTotal, e.totalBytes)])
        var note = ""
        if let rss = m.maxPeakResident, let run {
            // Simulated ranks share one process: their ledgers add up in one RSS.
            let perProcess = run.backend == .simulated ? m.ranks.count : 1
            let predicted = perProcess * e.totalBytes + run.fixedOverheadBytes
            rows.append(["peak RSS (VmHWM)\(perProcess > 1 ? ", whole process" : "")", unit.format(predicted), unit.format(rss), ratio(rss, predicted)])
            note = "Predicted RSS = \(perProcess > 1 ? "\(perProcess) ranks x " : "")total + \(ByteUnit.mib.format(run.fixedOverheadBytes)) MiB fixed overhead "
                + "(code, Swift runtime, OpenBLAS and MPI buffers, allocator; measured on this machine, docs/memory.md).\n"
        }
        return "Predicted next to measured (units: \(unit.legend)):\n" + table(rows) + note
    }

    /// Left column left-aligned, the others right-aligned, two spaces apart.
    func table(_ rows: [[String]], leftColumns: Int = 1) -> String { Self.table(rows, leftColumns: leftColumns) }

    static func table(_ rows: [[String]], leftColumns: Int = 1) -> String {
        let widths = (0..<(rows.map(\.count).max() ?? 0)).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max()! }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c < leftColumns ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : cell.leftPadded(widths[c])
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
