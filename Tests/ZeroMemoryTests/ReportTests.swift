import Foundation
import Testing
import ZeroMemory
import ZeroModels
import ZeroTensor

@Suite struct ReportTests {
    @Test func deepSpeedByHand() {
        // ZeRO-2 no offload: 2 Psi + int(18 Psi / 4) = 2e9 + 4.5e9; host 1e9 x 4 x 4 x 1.5.
        let z2 = DeepSpeedEstimate.zero2(totalParameters: 1_000_000_000, gpusPerNode: 4, cpuOffload: false)
        #expect(z2.gpu == 6_500_000_000 && z2.cpu == 24_000_000_000)
        let z2o = DeepSpeedEstimate.zero2(totalParameters: 1_000_000_000, gpusPerNode: 4, cpuOffload: true)
        #expect(z2o.gpu == 2_000_000_000 && z2o.cpu == 24_000_000_000)
        // ZeRO-3 no offload: 4 x 1e8 + int(18e9 / 4); host (zero_init) 1e8 x 4 x 4 x 1.5.
        let z3 = DeepSpeedEstimate.zero3(totalParameters: 1_000_000_000, largestLayerParameters: 100_000_000, gpusPerNode: 4,
                                         cpuOffload: false, cpuOffloadParameters: false, zeroInit: true)
        #expect(z3.gpu == 4_900_000_000 && z3.cpu == 2_400_000_000 && z3.largestLayer == 400_000_000)
        let z3o = DeepSpeedEstimate.zero3(totalParameters: 1_000_000_000, largestLayerParameters: 100_000_000, gpusPerNode: 4,
                                          cpuOffload: true, cpuOffloadParameters: true, zeroInit: true)
        #expect(z3o.gpu == 400_000_000 && z3o.cpu == 27_000_000_000)
        // int() truncation: 18 x 7 / 4 = 31.5.
        #expect(DeepSpeedEstimate.zero2(totalParameters: 7, gpusPerNode: 4, cpuOffload: false).gpu == 14 + 31)
        // Printed as GiB labelled GB: 24e9 / 2^30 = 22.35, 6.5e9 / 2^30 = 6.05.
        let row = DeepSpeedEstimate.zero2Rows(totalParameters: 1_000_000_000, gpusPerNode: 4)[1]
        #expect(DeepSpeedEstimate.format(row) == "   22.35GB |   6.05GB | cpu_offload=0")
        #expect(DeepSpeedEstimate.zero3Rows(totalParameters: 1_000_000_000, largestLayerParameters: 1, gpusPerNode: 4).count == 6)
        #expect(DeepSpeedEstimate.largestLayerParameters(.small) == 4 * 256 * 256 + 4 * 256)
        #expect(DeepSpeedEstimate.largestLayerParameters(.gpt2) == 50257 * 768)
    }

    @Test func recommendation() throws {
        let gib = 1 << 30
        let r16 = try MemoryReport.scale(parameters: 7_500_000_000, ranks: 64, budgetBytes: 16 * gib)
        #expect(r16.recommendedStage == 2)
        #expect(r16.fits(1) == false && r16.fits(3) == true)
        #expect(try MemoryReport.scale(parameters: 7_500_000_000, ranks: 64, budgetBytes: 8 * gib).recommendedStage == 3)
        let tight = try MemoryReport.scale(parameters: 7_500_000_000, ranks: 64, budgetBytes: gib)
        #expect(tight.recommendedStage == nil)
        #expect(tight.ranksNeededAtStage3 == 128)
        #expect(tight.text().contains("Stage 3 fits from 128 ranks"))
        #expect(try MemoryReport.scale(parameters: 100, ranks: 1).recommendedStage == nil)   // no budget, no verdict
    }

    @Test func instantAtScale() throws {
        let start = ContinuousClock.now
        let report = try MemoryReport.scale(parameters: 1_000_000_000_000, ranks: 1024, budgetBytes: 1)
        #expect(report.stages[3].modelStateBytes == 16e12 / 1024)
        _ = report.text(paper: true, deepSpeed: true)
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test func jsonShape() throws {
        let run = RunConfiguration(model: .small, ranks: 4, stage: 3, microBatch: 8, sequenceLength: 128)
        let report = try MemoryReport.runtime(run, stages: [2, 3], budgetBytes: 16 << 30, budgetSource: "test")
        let text = report.json(deepSpeed: true).rendered
        let object = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["params"] as? Int == GPTConfig.small.parameterCount)
        #expect(object["ranks"] as? Int == 4)
        #expect(object["recommended_stage"] as? Int == 0)
        let stages = try #require(object["stages"] as? [[String: Any]])
        #expect(stages.map { $0["stage"] as? Int } == [2, 3])
        let categories = try #require(stages[1]["categories"] as? [String: Int])
        #expect(Set(categories.keys) == Set(MemoryCategory.allCases.map(\.rawValue) + ["padding"]))
        let total = try #require(stages[1]["total_bytes"] as? Int)
        #expect(total == categories.filter { $0.key != "padding" }.values.reduce(0, +))
        #expect(stages[1]["model_states_bytes"] as? Int == 16 * GPTConfig.small.parameterCount / 4)
        #expect((object["deepspeed"] as? [String: Any])?["zero3_device_bytes"] is Int)

        let scale = try MemoryReport.scale(parameters: 7_500_000_000, ranks: 64).json().rendered
        let scaleObject = try #require(JSONSerialization.jsonObject(with: Data(scale.utf8)) as? [String: Any])
        #expect(scaleObject["view"] as? String == "model_states")
        #expect((scaleObject["stages"] as? [[String: Any]])?.count == 4)
        #expect(scaleObject["budget_bytes"] is NSNull)
    }

    @Test func measuredNextToPredicted() throws {
        let run = RunConfiguration(model: .tiny, ranks: 2, stage: 3, microBatch: 2, sequenceLength: 16)
        var report = try MemoryReport.runtime(run, stages: [3])
        let predicted = report.estimate(stage: 3)
        let ledger = MemoryLedger()
        ledger.allocated(predicted.bytes(.weights), .weights)
        report.measured = MeasuredMemory(stage: 3, ranks: [
            MeasuredRank(rank: 0, ledger: ledger, peakResidentBytes: 1 << 30),
            MeasuredRank(rank: 1, peakBytes: [.master: predicted.bytes(.master)], peakTotalBytes: 10, peakResidentBytes: nil),
        ])
        let text = report.text()
        #expect(text.contains("measured/predicted"))
        #expect(text.contains("peak RSS (VmHWM)"))
        let measured = try #require(report.measured)
        #expect(measured.maxPeak(.weights) == predicted.bytes(.weights))
        #expect(measured.maxPeak(.master) == predicted.bytes(.master))
        #expect(report.json().rendered.contains("\"measured\":{\"stage\":3"))
    }

    @Test func parsing() throws {
        #expect(try MemoryInput.parameterCount("7.5e9") == 7_500_000_000)
        #expect(try MemoryInput.parameterCount("7.5B") == 7_500_000_000)
        #expect(try MemoryInput.parameterCount("124M") == 124_000_000)
        #expect(try MemoryInput.parameterCount("1T") == 1_000_000_000_000)
        #expect(try MemoryInput.parameterCount("1.1B") == 1_100_000_000)
        #expect(try MemoryInput.parameterCount("350k") == 350_000)
        #expect(try MemoryInput.byteSize("16GiB") == 16 << 30)
        #expect(try MemoryInput.byteSize("24GB") == 24_000_000_000)
        #expect(try MemoryInput.byteSize("512 MiB") == 512 << 20)
        #expect(try MemoryInput.byteSize("4096") == 4096)
        #expect(try MemoryInput.model(named: "gpt-small") == .small)
    }

    @Test(arguments: ["-5", "0", "abc", "", "1.5", "7.5X", "1e16", "nan", "inf"])
    func badParameterCounts(_ text: String) {
        #expect(throws: MemoryModelError.self) { try MemoryInput.parameterCount(text) }
    }

    @Test func badInputs() throws {
        #expect(throws: MemoryModelError.self) { try MemoryInput.byteSize("16G") }
        #expect(throws: MemoryModelError.self) { try MemoryInput.byteSize("-1GiB") }
        #expect(throws: MemoryModelError("stage must be 0, 1, 2 or 3 (got 4)")) { try validateStage(4) }
        #expect(throws: MemoryModelError("ranks must be at least 1 (got 0)")) { try validateRanks(0) }
        #expect(throws: MemoryModelError.self) { try validateRanks(Int.max) }
        #expect(throws: MemoryModelError.self) {
            try MemoryReport.runtime(RunConfiguration(model: .tiny, ranks: 2, stage: 0, microBatch: 0, sequenceLength: 16))
        }
        #expect(throws: MemoryModelError.self) {
            try MemoryReport.runtime(RunConfiguration(model: .tiny, ranks: 2, stage: 0, microBatch: 1, sequenceLength: 16,
                                                      accumulationSteps: 0))
        }
        #expect(throws: MemoryModelError.self) { try MemoryInput.model(named: "gpt-huge") }
        #expect(throws: MemoryModelError.self) { try MemoryReport.scale(parameters: 7_500_000_000, ranks: 0) }
        #expect(throws: MemoryModelError.self) { try MemoryReport.scale(parameters: 10, ranks: 1, stages: [4]) }
        let run = RunConfiguration(model: .small, ranks: 4, stage: 0, microBatch: 8, sequenceLength: 4096)
        #expect(throws: MemoryModelError.self) { try MemoryReport.runtime(run) }
        do { _ = try MemoryInput.model(named: "gpt-huge") } catch {
            #expect("\(error)" == "unknown model 'gpt-huge' (known: gpt-tiny, gpt-small, gpt-medium, gpt2-124m)")
        }
    }
}
