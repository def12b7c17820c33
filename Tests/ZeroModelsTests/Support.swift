import Foundation
import Testing
import ZeroModels
import ZeroTensor

/// Fixture directory: Tests/Fixtures/model (found from this file's path, no SwiftPM resources).
let fixtureDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/model")

func fixture(_ name: String) throws -> SafeTensors {
    try SafeTensors(contentsOf: fixtureDirectory.appendingPathComponent(name))
}

func meta(_ file: SafeTensors, _ key: String) -> Int { Int(file.metadata[key]!)! }

/// Max absolute difference, max relative difference (elementwise, against max(|ref|, 1e-6)),
/// and relative L2 error ||ours - ref|| / ||ref||.
struct Difference: CustomStringConvertible {
    var maxAbs: Float = 0, maxRel: Float = 0, relL2: Double = 0, mismatches = 0, count = 0
    init(_ ours: [Float], _ ref: [Float]) {
        precondition(ours.count == ref.count)
        var num = 0.0, den = 0.0
        count = ours.count
        for i in ours.indices {
            let d = abs(ours[i] - ref[i])
            maxAbs = max(maxAbs, d)
            maxRel = max(maxRel, d / max(abs(ref[i]), 1e-6))
            if ours[i] != ref[i] { mismatches += 1 }
            num += Double(d) * Double(d)
            den += Double(ref[i]) * Double(ref[i])
        }
        relL2 = den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }
    var description: String {
        "max abs \(maxAbs), max rel \(maxRel), rel L2 \(relL2), \(mismatches)/\(count) differ"
    }
}

func int32s(_ file: SafeTensors, _ name: String) throws -> [Int32] {
    try file.floats(name).map { Int32($0) }
}

/// Runs forward over all ops, then backward in reverse, into fresh zeroed gradients.
/// Returns (loss, logits copy taken before backward, gradients per unit).
func runModel(_ model: TrainableModel, units: [[Float]], tokens: [Int32], targets: [Int32], B: Int, T: Int)
    -> (loss: Float, logits: [Float]?, gradients: [[Float]])
{
    var gradients = units.map { [Float](repeating: 0, count: $0.count) }
    var logits: [Float]?
    let loss: Float = units.withUnsafeBufferPointers { weights in
        tokens.withUnsafeBufferPointer { tok in
            targets.withUnsafeBufferPointer { tgt in
                model.setBatch(tokens: tok, targets: tgt, batchSize: B, sequenceLength: T)
            }
        }
        let w: [UnsafeBufferPointer<Float>?] = weights
        for op in model.opUnits.indices { model.forward(op: op, weights: w) }
        let loss = model.loss
        if let gpt = model as? GPT { logits = Array(gpt.logits) }
        if let mlp = model as? MLP { logits = Array(mlp.logits) }
        gradients.withUnsafeMutableBufferPointers { grads in
            let g: [UnsafeMutableBufferPointer<Float>?] = grads
            for op in model.opUnits.indices.reversed() { model.backward(op: op, weights: w, gradients: g) }
        }
        return loss
    }
    return (loss, logits, gradients)
}

extension Array where Element == [Float] {
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<Float>]) -> R) -> R {
        var pointers: [UnsafeBufferPointer<Float>] = []
        func recurse(_ i: Int) -> R {
            if i == count { return body(pointers) }
            return self[i].withUnsafeBufferPointer { p in pointers.append(p); return recurse(i + 1) }
        }
        return recurse(0)
    }

    mutating func withUnsafeMutableBufferPointers<R>(_ body: ([UnsafeMutableBufferPointer<Float>]) -> R) -> R {
        // Arrays own distinct storage; pointers stay valid inside the closure.
        var pointers: [UnsafeMutableBufferPointer<Float>] = []
        for i in indices {
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: self[i].count)
            _ = p.initialize(from: self[i])
            pointers.append(p)
        }
        let result = body(pointers)
        for i in indices {
            self[i] = [Float](pointers[i])
            pointers[i].deallocate()
        }
        return result
    }
}

/// Unit buffers filled from "param.<name>" entries of a fixture.
func unitsFromFixture(_ file: SafeTensors, layout: ParameterLayout) throws -> [[Float]] {
    var units = layout.units.map { [Float](repeating: 0, count: $0.count) }
    for t in layout.tensors {
        let values = try file.floats("param." + t.name, expectedShape: t.shape)
        units[t.unit].replaceSubrange(t.offset..<(t.offset + t.count), with: values)
    }
    return units
}

func tensorSlice(_ units: [[Float]], _ t: TensorInfo) -> [Float] {
    Array(units[t.unit][t.offset..<(t.offset + t.count)])
}
