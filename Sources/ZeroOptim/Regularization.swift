/// Coupled L1: g = fma(f32(l1), sign(p), g), the gradient of `l1 * sum |p|` added to the
/// gradient (sign(0) = 0, as torch's `sign`/`abs` backward). The product is exact (sign is
/// -1, 0 or 1), so this is g + l1 sign(p) rounded once, as autograd accumulates it.
public final class AddL1: GradientTransform {
    public let strength: Double
    public init(strength: Double) { self.strength = strength }
    public func update(_ u: inout ShardUpdate, range: Range<Int>) throws {
        guard strength != 0 else { return }
        let l1 = Float(strength)
        for i in range {
            let p = u.params[i]
            let s: Float = p > 0 ? 1 : (p < 0 ? -1 : 0)
            u.values[i] = u.values[i].addingProduct(l1, s)
        }
    }
}

/// Penalties added to the gradient before any optimizer sees it (`--l1`, `--l2`): coupled
/// regularization, as `torch.optim.Adam(weight_decay=)` adds L2, as opposed to the decoupled
/// decay AdamW applies to the weights. Per element, on the decay segments only:
///
///     g = fma(f32(l1), sign(p), g)     L1 (the gradient of l1 * sum |p|)
///     g = fma(p, f32(l2), g)           L2 (the gradient of l2/2 * sum p^2), torch's `g.add(p, alpha=wd)`
///
/// The engine applies it once to the averaged, clipped gradient shard of a unit, so it holds for
/// every optimizer (the fused kernels then see the regularized gradient, as torch's would), and
/// the result is a chain: `transforms(segments:)` prepended to `Recipes.chain` (tested bit-equal).
public struct CoupledRegularization: Sendable, Equatable {
    public var l1: Double
    public var l2: Double
    public init(l1: Double = 0, l2: Double = 0) {
        self.l1 = l1
        self.l2 = l2
    }

    public var isActive: Bool { l1 != 0 || l2 != 0 }

    /// The penalties as transforms (L1, then L2), each masked to `segments`.
    public func transforms(segments: [Range<Int>]) -> [any GradientTransform] {
        [Masked(AddL1(strength: l1), segments: segments), Masked(AddWeightDecay(weightDecay: l2), segments: segments)]
    }

    /// Adds the penalties to `gradient` in place (the shard of `params`), on `segments` only.
    public func apply(to gradient: UnsafeMutableBufferPointer<Float>, params: UnsafeMutableBufferPointer<Float>,
                      segments: [Range<Int>]) throws {
        precondition(gradient.count == params.count, "gradient and params differ in size")
        guard isActive else { return }
        var u = ShardUpdate(params: params, values: gradient, step: 1, learningRate: 0)
        try Chain(transforms(segments: segments)).update(&u, range: 0..<params.count)
    }
}
