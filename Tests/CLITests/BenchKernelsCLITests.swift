import Foundation
import Testing

/// `zero-train bench kernels --json`: one line per kernel with the documented keys, the C and
/// Swift kernels giving the same bits, under the forced AVX2 path and the default one.
@Suite struct BenchKernelsCLITests {
    static let kernels = [
        "gelu_forward", "gelu_backward", "layernorm_forward", "layernorm_backward", "softmax_forward", "softmax_backward",
        "crossentropy_forward", "crossentropy_backward", "residual_forward", "residual_backward", "bias_backward",
        "bf16_round", "bf16_widen", "bf16_quantize",
    ]

    @Test(arguments: ["avx2", "best"])
    func json(isa: String) throws {
        let r = try runProcess(zeroTrainBinary(), ["bench", "kernels", "--models", "gpt-tiny", "--repeats", "1", "--isa", isa, "--json"],
                               timeout: .seconds(300))
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(lines.map { $0["kernel"] as? String ?? "" } == Self.kernels)
        for line in lines {
            #expect(line["bench"] as? String == "kernels")
            #expect(line["model"] as? String == "gpt-tiny")
            if isa == "avx2" { #expect(line["isa"] as? String == "avx2") }
            #expect(line["identical"] as? Bool == true, "\(line["kernel"] ?? "?") differs from the Swift kernel")
            for key in ["seconds", "gb_per_s", "copy_gb_per_s", "swift_seconds", "speedup", "bytes"] {
                #expect((line[key] as? Double ?? 0) > 0, "\(key) in \(line)")
            }
        }
    }

    @Test func badISA() throws {
        let r = try runProcess(zeroTrainBinary(), ["bench", "kernels", "--isa", "sse9"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("--isa"))
    }
}
