import Testing
import ZeroMemory

/// The ZeRO paper's Table 1 and Figure 1, cell by cell, with its rounding.
@Suite struct PaperModelTests {
    @Test(arguments: Array(PaperModel.table1Ranks.enumerated()))
    func table1Row(row: Int, ranks: Int) {
        for (column, psi) in PaperModel.table1Parameters.enumerated() {
            for stage in 1...3 {
                let gb = PaperModel.modelStateBytes(stage: stage, parameters: psi, ranks: ranks) / 1e9
                #expect(PaperRounding.table(gb) == PaperModel.table1Printed[row][column][stage - 1],
                        "Nd \(ranks), Psi \(psi), stage \(stage): \(gb) GB")
            }
        }
    }

    @Test func table1PrintedCellsAreTheOnesInThePaper() {
        // Spot checks typed from the paper, so the table in the source cannot drift silently.
        #expect(PaperModel.table1Printed[3][0] == ["31.4", "16.6", "1.88"])
        #expect(PaperModel.table1Printed[4][0][2] == "0.47")
        #expect(PaperModel.table1Printed[5][0][2] == "0.12")
        #expect(PaperModel.table1Printed[5][1][0] == "513")
        #expect(PaperModel.table1Printed[3][2][0] == "4187")
        #expect(PaperModel.table1() == PaperModel.table1Printed)
    }

    @Test func figure1() {
        let gb = (0...3).map { PaperModel.modelStateBytes(stage: $0, parameters: 7.5e9, ranks: 64) / 1e9 }
        #expect(gb.map(PaperRounding.figure) == ["120", "31.4", "16.6", "1.9"])
        #expect(gb == [120, 31.40625, 16.640625, 1.875])
    }

    @Test func exactFormulas() {
        let psi = 1000.0, n = 8, k = 12
        #expect(PaperModel.modelStateBytes(stage: 0, parameters: psi, ranks: n, optimizerBytesPerParameter: k) == 16_000)
        #expect(PaperModel.modelStateBytes(stage: 1, parameters: psi, ranks: n, optimizerBytesPerParameter: k) == 4000 + 1500)
        #expect(PaperModel.modelStateBytes(stage: 2, parameters: psi, ranks: n, optimizerBytesPerParameter: k) == 2000 + 1750)
        #expect(PaperModel.modelStateBytes(stage: 3, parameters: psi, ranks: n, optimizerBytesPerParameter: k) == 2000)
        #expect(PaperModel.modelStateBytes(stage: 1, parameters: psi, ranks: n, optimizerBytesPerParameter: 8) == 5000)
        #expect(PaperModel.communicationElements(stage: 2, parameters: psi) == 2000)
        #expect(PaperModel.communicationElements(stage: 3, parameters: psi) == 3000)
        #expect(PaperModel.communicationBytes(stage: 0, parameters: psi) == 4000)
        #expect(PaperModel.communicationBytes(stage: 1, parameters: psi, accumulationSteps: 4) == 4 * 2000 + 2000)
        #expect(PaperModel.communicationBytes(stage: 3, parameters: psi, accumulationSteps: 2) == 2 * 6000)
    }

    @Test func rounding() {
        #expect(PaperRounding.table(41.25) == "41.3")        // half up, not to even
        #expect(PaperRounding.table(513.5) == "513")         // truncated at or above 100
        #expect(PaperRounding.table(2047.999_999_999_9) == "2048")
        #expect(PaperRounding.table(30.0) == "30")
        #expect(PaperRounding.table(0.05) == "0.05")
        #expect(PaperRounding.table(7.5) == "7.5")
        #expect(PaperRounding.figure(1.875) == "1.9")
        #expect(PaperRounding.figure(120) == "120")
    }
}
