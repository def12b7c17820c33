import Foundation
import ZeroModels

/// DeepSpeed's model-state estimators, transcribed from
/// deepspeed/runtime/zero/stage_1_and_2.py (`estimate_zero2_model_states_mem_needs`) and
/// stage3.py (`estimate_zero3_model_states_mem_needs`), for a compatibility view.
///
/// They count model states only (no activations, buckets or fragmentation), print GiB
/// (2^30) labelled "GB", and have no ZeRO-1 estimate. Integer/float steps follow the
/// Python (true division, then `int()` truncation) so the printed numbers match.
public enum DeepSpeedEstimate {
    /// One printed row: host ("CPU") and device ("GPU") bytes for an option set.
    public struct Row: Sendable, Equatable {
        public var cpuBytes: Int
        public var gpuBytes: Int
        public var options: String
    }

    /// ZeRO-2. No offload: device 2 Psi + int(18 Psi / gpus), host Psi 4 gpus_per_node 1.5.
    /// Optimizer offload: device 2 Psi, host Psi max(4 gpus, 16) 1.5.
    public static func zero2(totalParameters p: Int, gpusPerNode: Int, nodes: Int = 1,
                             cpuOffload: Bool, additionalBufferFactor f: Double = 1.5) -> (cpu: Int, gpu: Int)
    {
        let gpus = nodes * gpusPerNode
        if cpuOffload {
            return (Int(Double(p * max(4 * gpus, 16)) * f), 2 * p)
        }
        return (Int(Double(p * 4 * gpusPerNode) * f), 2 * p + Int(Double(18 * p) / Double(gpus)))
    }

    /// ZeRO-3: device adds 4 x largest_layer_params (gathered 16-bit param and grad of the
    /// largest layer). Returns host, device and that largest-layer term.
    public static func zero3(totalParameters p: Int, largestLayerParameters l: Int, gpusPerNode: Int, nodes: Int = 1,
                             cpuOffload: Bool, cpuOffloadParameters: Bool, zeroInit: Bool,
                             additionalBufferFactor f: Double = 1.5) -> (cpu: Int, gpu: Int, largestLayer: Int)
    {
        let gpus = nodes * gpusPerNode
        let gpusFactor = 1.0 / Double(nodes)
        let largest = 4 * l
        let cpu: Double, gpu: Int
        if cpuOffload {
            if cpuOffloadParameters {
                gpu = largest
                cpu = zeroInit ? Double(p * 18) * gpusFactor * f
                    : Double(p) * max(Double(4 * gpusPerNode), 18 * gpusFactor) * f
            } else {
                gpu = largest + Int(Double(2 * p) / Double(gpus))
                cpu = zeroInit ? Double(p * 16) * gpusFactor * f
                    : Double(p) * max(Double(4 * gpusPerNode), 16 * gpusFactor) * f
            }
        } else {
            gpu = largest + Int(Double(18 * p) / Double(gpus))
            cpu = zeroInit ? Double(l * 4 * gpusPerNode) * f : Double(p * 4 * gpusPerNode) * f
        }
        return (Int(cpu), gpu, largest)
    }

    /// The rows `estimate_zero2_model_states_mem_needs_all_cold` prints.
    public static func zero2Rows(totalParameters p: Int, gpusPerNode: Int, nodes: Int = 1) -> [Row] {
        [true, false].map { offload in
            let r = zero2(totalParameters: p, gpusPerNode: gpusPerNode, nodes: nodes, cpuOffload: offload)
            return Row(cpuBytes: r.cpu, gpuBytes: r.gpu, options: "cpu_offload=\(offload ? 1 : 0)")
        }
    }

    /// The rows `estimate_zero3_model_states_mem_needs_all_cold` prints, in its order.
    public static func zero3Rows(totalParameters p: Int, largestLayerParameters l: Int, gpusPerNode: Int, nodes: Int = 1) -> [Row] {
        var rows: [Row] = []
        for offload in [true, false] {
            for offloadParams in [true, false] where offload || !offloadParams {
                for zeroInit in [true, false] {
                    let r = zero3(totalParameters: p, largestLayerParameters: l, gpusPerNode: gpusPerNode, nodes: nodes,
                                  cpuOffload: offload, cpuOffloadParameters: offloadParams, zeroInit: zeroInit)
                    let options = "offload_param=\(offloadParams ? "cpu " : "none"), offload_optimizer=\(offload ? "cpu " : "none"), zero_init=\(zeroInit ? 1 : 0)"
                    rows.append(Row(cpuBytes: r.cpu, gpuBytes: r.gpu, options: options))
                }
            }
        }
        return rows
    }

    /// A row as DeepSpeed prints it: f" {cpu/2**30:7.2f}GB | {gpu/2**30:6.2f}GB | {options}".
    public static func format(_ row: Row) -> String {
        String(format: " %7.2fGB | %6.2fGB | ", Double(row.cpuBytes) / 1073741824, Double(row.gpuBytes) / 1073741824)
            + row.options
    }

    /// DeepSpeed's `largest_layer_params` for our GPT: the most parameters any single module
    /// owns directly. Hugging Face GPT-2's modules: wte and the tied lm_head (V C), wpe (T C),
    /// c_attn (3C C + 3C), attn c_proj (C C + C), c_fc (4C C + 4C), mlp c_proj (4C C + C), norms (2C).
    public static func largestLayerParameters(_ config: GPTConfig) -> Int {
        let c = config.channels
        return [config.vocabularySize * c, config.contextLength * c, 3 * c * c + 3 * c,
                c * c + c, 4 * c * c + 4 * c, 4 * c * c + c, 2 * c].max()!
    }

    /// The text DeepSpeed's two `*_all_cold` functions print, for `gpus` ranks on `nodes` nodes.
    public static func printout(totalParameters p: Int, largestLayerParameters l: Int, gpusPerNode: Int, nodes: Int = 1) -> String {
        let nodesText = nodes > 1 ? "nodes" : "node", gpusText = gpusPerNode > 1 ? "GPUs" : "GPU"
        let header = "Estimated memory needed for params, optim states and gradients for a:\n"
            + "HW: Setup with \(nodes) \(nodesText), \(gpusPerNode) \(gpusText) per node.\n"
        var text = "estimate_zero2_model_states_mem_needs_all_cold:\n" + header
            + "SW: Model with \(Int(Double(p) / 1e6))M total params.\n  per CPU  |  per GPU |   Options\n"
        for row in zero2Rows(totalParameters: p, gpusPerNode: gpusPerNode, nodes: nodes) {
            text += format(row) + "\n"
        }
        text += "estimate_zero3_model_states_mem_needs_all_cold:\n" + header
            + "SW: Model with \(Int(Double(p) / 1e6))M total params, \(Int(Double(l) / 1e6))M largest layer params.\n"
            + "  per CPU  |  per GPU |   Options\n"
        for row in zero3Rows(totalParameters: p, largestLayerParameters: l, gpusPerNode: gpusPerNode, nodes: nodes) {
            text += format(row) + "\n"
        }
        return text
    }
}
