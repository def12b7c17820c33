import Foundation
import Testing
import ZeroTensor

/// Bit-exactness of float32 -> bf16 (round to nearest even) and bf16 -> float32 against
/// torch (Tests/Fixtures/make_model_fixtures.py, which also checks torch == ml_dtypes).
/// The fixture stores special values with expected bits and FNV-1a hashes of torch's
/// outputs over 393,216 exhaustive patterns (all 65,536 upper halves x 6 lower halves),
/// 4,194,304 LCG patterns, and all 65,536 bf16 patterns widened. NaN outputs are
/// compared as NaN (mapped to 0x7FC0 before hashing), not by payload.
@Suite struct BFloat16Tests {
    static let fixtureURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/model/bf16_conversion.json")

    func load() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtureURL)) as! [String: Any]
    }

    /// FNV-1a 64, one value per step.
    struct FNV { var h: UInt64 = 0xCBF2_9CE4_8422_2325; mutating func add(_ v: UInt64) { h = (h ^ v) &* 0x100_0000_01B3 } }

    static func canonical(_ b: UInt16) -> UInt16 { (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0 ? 0x7FC0 : b }

    /// Rounds with the bulk kernel (checked against the scalar rule lane by lane) and hashes.
    func hashRounded(_ patterns: [UInt32]) -> UInt64 {
        let floats = patterns.map { Float(bitPattern: $0) }
        var bulk = [UInt16](repeating: 0, count: floats.count)
        floats.withUnsafeBufferPointer { src in bulk.withUnsafeMutableBufferPointer { BFloat16.round(src, into: $0) } }
        var fnv = FNV(), mismatches = 0
        for i in floats.indices {
            if bulk[i] != BFloat16.round(floats[i]) { mismatches += 1 }
            fnv.add(UInt64(Self.canonical(bulk[i])))
        }
        #expect(mismatches == 0, "bulk and scalar rounding differ on \(mismatches) patterns")
        return fnv.h
    }

    @Test func specialValues() throws {
        let specials = try load()["specials"] as! [[NSNumber]]
        for pair in specials {
            let input = UInt32(pair[0].uint64Value), expected = UInt16(pair[1].uint64Value)
            let f = Float(bitPattern: input)
            let ours = BFloat16.round(f)
            #expect(Self.canonical(ours) == expected, "round(0x\(String(input, radix: 16))) = 0x\(String(ours, radix: 16)), torch 0x\(String(expected, radix: 16))")
            if f.isNaN { #expect(BFloat16(bitPattern: ours).float.isNaN && (ours & 0x8000) == UInt16(input >> 16) & 0x8000) }
        }
    }

    @Test func exhaustiveUpperHalves() throws {
        let doc = try load()["exhaustive"] as! [String: Any]
        let lows = (doc["lows"] as! [NSNumber]).map { UInt32($0.uint64Value) }
        var patterns: [UInt32] = []
        patterns.reserveCapacity(lows.count * 65536)
        for low in lows { for high in UInt32(0)..<65536 { patterns.append(high << 16 | low) } }
        #expect(String(hashRounded(patterns)) == doc["hash"] as! String)
    }

    @Test func lcgPatterns() throws {
        let doc = try load()["lcg"] as! [String: Any]
        let a = UInt64(doc["a"] as! String)!, c = UInt64(doc["c"] as! String)!
        let count = (doc["count"] as! NSNumber).intValue
        var x = (doc["x0"] as! NSNumber).uint64Value
        var patterns = [UInt32](repeating: 0, count: count)
        for i in 0..<count { x = a &* x &+ c; patterns[i] = UInt32(x >> 32) }
        #expect(String(hashRounded(patterns)) == doc["hash"] as! String)
    }

    @Test func widenAllPatterns() throws {
        let doc = try load()["widen"] as! [String: Any]
        let src = (0..<65536).map { UInt16($0) }
        var out = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { BFloat16.widen(s, into: $0) } }
        var fnv = FNV()
        for v in out { fnv.add(UInt64(v.bitPattern)) }
        #expect(String(fnv.h) == doc["hash"] as! String)
    }

    @Test func quantizeInPlaceMatchesScalar() {
        var g = SeededGenerator(seed: 9)
        var values = (0..<1003).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: g.next())) }
        let expected = values.map { BFloat16.quantize($0) }
        values.withUnsafeMutableBufferPointer { BFloat16.quantize(inPlace: $0) }
        for i in values.indices {
            #expect(values[i].bitPattern == expected[i].bitPattern || (values[i].isNaN && expected[i].isNaN))
        }
    }
}
