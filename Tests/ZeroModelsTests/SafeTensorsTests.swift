import Foundation
import Testing
import ZeroModels
import ZeroTensor

func temporaryURL(_ name: String) -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-models-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name)
}

/// A raw file: 8-byte length, header text, data bytes.
func rawSafeTensors(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> Data {
    var out = Data()
    var n = (declaredLength ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    out.append(contentsOf: Array(header.utf8))
    out.append(contentsOf: data)
    return out
}

@Suite struct SafeTensorsTests {
    @Test(arguments: [SafeTensors.DType.f32, .bf16, .f16])
    func roundTrip(dtype: SafeTensors.DType) throws {
        let a: [Float] = [0, -0.0, 1, -2.5, 3.140625, 1e-3, 65504, -1e-7]
        let b: [Float] = (0..<6).map { Float($0) * 0.25 }
        let url = temporaryURL("rt-\(dtype.rawValue).safetensors")
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try SafeTensors.write([
                    .init(name: "a", shape: [2, 4], dtype: dtype, values: pa),
                    .init(name: "b \"q\"", shape: [6], dtype: dtype, values: pb),
                ], metadata: ["format": "pt", "note": "x"], to: url)
            }
        }
        let file = try SafeTensors(contentsOf: url)
        #expect(file.metadata == ["format": "pt", "note": "x"])
        #expect(file.entries.map(\.name) == ["a", "b \"q\""])
        #expect(file.entries[0].shape == [2, 4] && file.entries[0].dtype == dtype)
        let expected: (Float) -> Float = { v in
            switch dtype {
            case .f32: return v
            case .bf16: return BFloat16.quantize(v)
            case .f16: return Float(Float16(v))
            case .u8: return v  // not an argument: raw bytes have their own test
            }
        }
        #expect(try file.floats("a") == a.map(expected))
        #expect(try file.floats("b \"q\"", expectedShape: [6]) == b.map(expected))
        // the data section starts 8-byte aligned
        let raw = try Data(contentsOf: url)
        let n = raw.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(n % 8 == 0)
    }

    @Test func readsTorchWrittenFile() throws {
        let file = try fixture("gpt_bf16.safetensors")
        let e = file.entry(named: "param.wte.weight")!
        #expect(e.dtype == .bf16 && e.shape == [64, 32])
        #expect(file.metadata["mode"] == "bf16")
    }

    static let invalid: [(String, Data, String)] = [
        ("short", Data([1, 2, 3]), "shorter than the 8-byte header length"),
        ("limit", rawSafeTensors(header: "{}", data: [], declaredLength: 200_000_000), "exceeds the 100000000-byte limit"),
        ("past end", rawSafeTensors(header: "{}", data: [], declaredLength: 64), "runs past the end"),
        ("json", rawSafeTensors(header: "{\"a\": [", data: []), "not well-formed JSON"),
        ("not object", rawSafeTensors(header: "[1, 2]", data: []), "not an object"),
        ("dtype", rawSafeTensors(header: #"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), "unsupported dtype I64"),
        ("size", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), "needs 12"),
        ("gap", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)), "expected 0"),
        ("overlap", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)), "contiguous"),
        ("outside", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 8)), "cover 16 data bytes but the file holds 8"),
        ("offsets", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, data: []), "malformed data_offsets"),
        ("metadata", rawSafeTensors(header: #"{"__metadata__":{"k":1}}"#, data: []), "is not a string"),
        ("overflow", rawSafeTensors(header: #"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)), "its byte count overflows"),
    ]

    @Test(arguments: invalid.indices)
    func validation(index: Int) {
        let (label, data, message) = Self.invalid[index]
        do {
            _ = try SafeTensors(data: data, source: "bad.safetensors")
            Issue.record("\(label): accepted an invalid file")
        } catch let error as SafeTensorsError {
            #expect(error.description.contains(message), "\(label): \(error.description)")
            #expect(!error.description.contains("\n"))
        } catch {
            Issue.record("\(label): unexpected error \(error)")
        }
    }

    @Test func shapeAndMissingChecks() throws {
        let file = try fixture("mlp_fp32.safetensors")
        #expect(throws: SafeTensorsError.self) { try file.floats("param.layers.0.weight", expectedShape: [1, 2]) }
        #expect(throws: SafeTensorsError.self) { try file.floats("nope") }
    }
}

/// A Hugging Face GPT2LMHeadModel written by save_pretrained: load it by its names,
/// compute the loss torch computed on the same tokens, write it back and reload.
@Suite struct HuggingFaceGPT2Tests {
    static let config = GPTConfig(name: "hf-tiny", vocabularySize: 256, contextLength: 32, layers: 2, heads: 4, channels: 32)

    func loss(units: [[Float]], batch: SafeTensors) throws -> Float {
        let B = 2, T = 32
        let model = GPT(config: Self.config, batchSize: B, sequenceLength: T, ledger: nil)
        return runModel(model, units: units, tokens: try int32s(batch, "tokens"), targets: try int32s(batch, "targets"), B: B, T: T).loss
    }

    @Test func lossMatchesTorch() throws {
        let batch = try fixture("hf_gpt2_batch.safetensors")
        let units = try loadGPT2(safetensorsAt: fixtureDirectory.appendingPathComponent("hf_gpt2_tiny.safetensors"), config: Self.config)
        let ours = try loss(units: units, batch: batch), ref = try batch.floats("loss")[0]
        #expect(abs(ours - ref) <= 1e-5 * ref, "loss \(ours) vs torch \(ref)")

        // fp32 write-back is lossless; bf16 write-back equals rounding every weight
        for dtype in [SafeTensors.DType.f32, .bf16] {
            let url = temporaryURL("hf-\(dtype.rawValue).safetensors")
            try units.withUnsafeBufferPointers { try saveGPT2(units: $0, config: Self.config, to: url, dtype: dtype) }
            let back = try loadGPT2(safetensorsAt: url, config: Self.config)
            let expected = dtype == .f32 ? units : units.map { $0.map(BFloat16.quantize) }
            #expect(back == expected)
            let names = try SafeTensors(contentsOf: url).entries.map(\.name)
            #expect(names.allSatisfy { $0.hasPrefix("transformer.") } && names.contains("transformer.h.1.mlp.c_proj.weight"))
        }
    }

    @Test func wrongConfigIsOneLineError() throws {
        var config = Self.config
        config.channels = 64
        do {
            _ = try loadGPT2(safetensorsAt: fixtureDirectory.appendingPathComponent("hf_gpt2_tiny.safetensors"), config: config)
            Issue.record("accepted a mismatched config")
        } catch let e as SafeTensorsError {
            #expect(e.description.contains("expects") && !e.description.contains("\n"), "\(e)")
        }
        config = Self.config
        config.layers = 1
        #expect(throws: SafeTensorsError.self) {
            try loadGPT2(safetensorsAt: fixtureDirectory.appendingPathComponent("hf_gpt2_tiny.safetensors"), config: config)
        }
    }
}

extension Array where Element == [Float] {
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) throws -> R {
        var pointers: [UnsafeBufferPointer<Float>] = []
        func recurse(_ i: Int) throws -> R {
            if i == count { return try body(pointers) }
            return try self[i].withUnsafeBufferPointer { p in pointers.append(p); return try recurse(i + 1) }
        }
        return try recurse(0)
    }
}

@Suite struct SafeTensorsRawBytesTests {
    @Test func rawBytesRoundTripAsU8() throws {
        let bytes = Data((0..<37).map { UInt8($0 * 7 & 0xFF) })
        let data = SafeTensors.serialize([SafeTensors.Tensor(name: "state", rawBytes: bytes)], metadata: ["k": "v"])
        let file = try SafeTensors(data: data)
        #expect(file.entries.first?.dtype == .u8 && file.entries.first?.shape == [37])
        #expect(try file.bytes("state") == bytes)
    }
}
