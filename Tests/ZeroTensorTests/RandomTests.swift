import Testing
import ZeroTensor

@Suite struct RandomTests {
    /// SplitMix64 from state 0: the published reference outputs.
    @Test func splitMixReferenceValues() {
        var g = SeededGenerator(seed: 0)
        #expect(g.next() == 0xE220_A839_7B1D_CDAF)
        #expect(g.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(g.next() == 0x06C4_5D18_8009_454F)
    }

    @Test func normalMoments() {
        var g = SeededGenerator(seed: 42, key: "x")
        let n = 200_000
        var s = 0.0, s2 = 0.0, s4 = 0.0
        for _ in 0..<n { let x = g.nextNormal(); s += x; s2 += x * x; s4 += x * x * x * x }
        let mean = s / Double(n), variance = s2 / Double(n) - mean * mean
        #expect(abs(mean) < 0.01, "mean \(mean)")
        #expect(abs(variance - 1) < 0.01, "variance \(variance)")
        #expect(abs(s4 / Double(n) - 3) < 0.05, "fourth moment \(s4 / Double(n))")
    }

    @Test func keysSeparateStreams() {
        var a = SeededGenerator(seed: 1, key: "wte.weight"), b = SeededGenerator(seed: 1, key: "wpe.weight")
        var c = SeededGenerator(seed: 1, key: "wte.weight"), d = SeededGenerator(seed: 2, key: "wte.weight")
        let x = a.next()
        #expect(x != b.next() && x == c.next() && x != d.next())
    }
}
