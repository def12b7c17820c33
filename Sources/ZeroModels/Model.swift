import ZeroTensor

/// One parameter tensor's place in its unit's flat buffer.
public struct TensorInfo: Sendable, Equatable {
    /// Our name, e.g. "h.0.attn.c_attn.weight".
    public var name: String
    public var shape: [Int]
    /// Index of the unit (flat buffer) that holds it.
    public var unit: Int
    /// Element offset inside the unit's buffer.
    public var offset: Int
    /// Whether weight decay applies (matrices yes, biases and norm weights no, by default).
    public var decay: Bool
    public var count: Int { shape.reduce(1, *) }
    public init(name: String, shape: [Int], unit: Int, offset: Int, decay: Bool) {
        self.name = name; self.shape = shape; self.unit = unit; self.offset = offset; self.decay = decay
    }
}

/// A unit: one flat, contiguous parameter buffer (embeddings, one block, the final norm...).
public struct UnitInfo: Sendable, Equatable {
    public var name: String
    /// Elements, unpadded.
    public var count: Int
    public init(name: String, count: Int) { self.name = name; self.count = count }
}

/// The layout table: units and the named tensors inside them. It does not depend
/// on the rank count; gradients, masters and moments use the same offsets.
public struct ParameterLayout: Sendable, Equatable {
    public var units: [UnitInfo]
    public var tensors: [TensorInfo]
    public init(units: [UnitInfo], tensors: [TensorInfo]) { self.units = units; self.tensors = tensors }
    public var parameterCount: Int { units.reduce(0) { $0 + $1.count } }
    public func tensor(named name: String) -> TensorInfo? { tensors.first { $0.name == name } }
}

/// A model with explicit forward and backward over flat unit buffers.
///
/// The forward pass is a fixed list of ops; `opUnits[i]` names the units op i reads
/// (the tied GPT-2 head reads the embedding unit again). Backward runs the ops in
/// reverse. Weights come in as fp32 (bf16 working weights widened by the engine);
/// backward *accumulates* (+=) into the gradient buffers of the units it touches.
public protocol TrainableModel: AnyObject {
    var layout: ParameterLayout { get }
    var vocabularySize: Int { get }
    var contextLength: Int { get }
    var opUnits: [[Int]] { get }

    /// Fill one unit's buffer with its initial values, from `seed` alone
    /// (the same values whatever the rank count).
    func initialize(unit: Int, into buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64)

    /// Sets the micro-batch: `tokens` and `targets` hold batchSize * sequenceLength ids.
    func setBatch(tokens: UnsafeBufferPointer<Int32>, targets: UnsafeBufferPointer<Int32>,
                  batchSize: Int, sequenceLength: Int)
    /// weights[u] is unit u's fp32 buffer, or nil when not resident (must not be read).
    func forward(op: Int, weights: [UnsafeBufferPointer<Float>?])
    /// Mean cross-entropy over batchSize * sequenceLength targets, after the last forward op.
    var loss: Float { get }
    func backward(op: Int, weights: [UnsafeBufferPointer<Float>?], gradients: [UnsafeMutableBufferPointer<Float>?])
}
