import Foundation
import Testing

/// `zero-train bench step --json`: the documented keys (the original ones, `precision`,
/// `gemm_gflops` and the CPU-time figures), in both compute precisions, and a clear error for
/// a bad precision.
@Suite struct BenchStepCLITests {
    @Test(arguments: ["bf16", "fp32"])
    func json(precision: String) throws {
        let r = try runProcess(zeroTrainBinary(), ["bench", "step", "--model", "gpt-tiny", "--micro-batch", "2", "--seq-len", "64",
                                                   "--repeats", "1", "--warmup", "0", "--threads", "1", "--precision", precision, "--json"],
                               timeout: .seconds(300))
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(object["bench"] as? String == "step")
        #expect(object["precision"] as? String == precision)
        for key in ["seconds", "gflops", "sgemm_gflops", "gemm_gflops", "bf16_gemm_gflops", "fraction_of_gemm",
                    "cpu_seconds", "cpu_gflops", "cpu_sgemm_gflops", "cpu_bf16_gemm_gflops", "cpu_fraction_of_gemm"] {
            #expect((object[key] as? Double ?? 0) > 0, "\(key) in \(object)")
        }
        let share = object["elementwise_share"] as? Double ?? -1
        #expect(share >= 0 && share < 1)
    }

    @Test func badPrecision() throws {
        let r = try runProcess(zeroTrainBinary(), ["bench", "step", "--precision", "fp8"], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.stderr.contains("--precision"))
    }
}
