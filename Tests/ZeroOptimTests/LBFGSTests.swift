import Foundation
import Testing
import ZeroComm
import ZeroOptim

/// torch.optim.LBFGS parity (Tests/Fixtures/make_lbfgs_fixtures.py) and rank-count independence.
@Suite struct LBFGSTests {
    struct Fixture: Decodable { let lam: Double; let tensors: [String: [Float]] }

    /// L2-regularized logistic regression, loss and gradient in fp64 from fp32 weights.
    static func logistic(_ f: Fixture) -> LBFGS.Closure {
        let X = f.tensors["X"]!, y = f.tensors["y"]!, n = y.count, d = X.count / y.count, lam = f.lam
        return { w in
            var loss = 0.0, g = [Double](repeating: 0, count: d)
            for i in 0..<n {
                var z = 0.0
                for k in 0..<d { z += Double(X[i * d + k]) * Double(w[k]) }
                let m = -Double(y[i]) * z  // softplus(m) = log(1 + e^m)
                loss += max(m, 0) + log1p(exp(-abs(m)))
                let s = 1 / (1 + exp(-m)) * -Double(y[i]) / Double(n)
                for k in 0..<d { g[k] += s * Double(X[i * d + k]) }
            }
            var reg = 0.0
            for k in 0..<d { reg += Double(w[k]) * Double(w[k]); g[k] += lam * Double(w[k]) }
            // fp32 loss, as torch's float32 model returns it (the tolerance_change test sees it).
            return (Double(Float(loss / Double(n) + 0.5 * lam * reg)), g.map { Float($0) })
        }
    }

    /// Three calls of 4 iterations (history 3), each with torch's number of evaluations; iterates
    /// within 2e-6 relative L2 of torch's and losses within 1e-6 relative. Torch sums its dot
    /// products in fp32 where we sum in fp64: measured 2-3e-7 on the iterates. (Run to full
    /// convergence the two stop at different iterations: the stopping tests then compare fp32
    /// noise; so the fixture stops while the loss still falls, 0.715 -> 0.110 -> 0.058.)
    @Test(arguments: ["none", "strong_wolfe"])
    func matchesTorch(_ search: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/optim/lbfgs.json")
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        var options = LBFGS.Options()
        options.maxIterations = 4
        options.history = 3
        options.lineSearch = LBFGS.LineSearch(rawValue: search)!
        var w = f.tensors["w0"]!
        let opt = LBFGS(options: options, space: ShardSpace(count: w.count))
        let closure = Self.logistic(f)
        let losses = f.tensors["\(search).loss"]!
        for k in 1...3 {
            let loss = try opt.step(&w, closure: closure)

            #expect(abs(loss - Double(losses[k - 1])) <= 1e-6 * Double(losses[k - 1]), "\(search) call \(k): loss \(loss) vs \(losses[k - 1])")
            #expect(Float(opt.evaluations) == f.tensors["\(search).func_evals\(k)"]![0], "\(search) call \(k): evaluations")
            #expect(Float(opt.iterations) == f.tensors["\(search).n_iter\(k)"]![0], "\(search) call \(k): iterations")
            let ref = f.tensors["\(search).w\(k)"]!
            var num = 0.0, den = 0.0
            for i in w.indices { num += pow(Double(w[i] - ref[i]), 2); den += pow(Double(ref[i]), 2) }
            #expect((num / den).squareRoot() <= 2e-6, "\(search) call \(k): iterate off by \((num / den).squareRoot()) relative")
        }
    }

    /// A separable problem over 4196 elements sharded at block boundaries over 1, 2 and 4 ranks:
    /// the final weights are the same bits.
    @Test func rankCountIndependent() throws {
        let n = 4 * ShardSpace.blockSize + 100
        func run(_ ranks: Int, _ search: LBFGS.LineSearch) throws -> [Float] {
            let blocks = (n + ShardSpace.blockSize - 1) / ShardSpace.blockSize
            let parts = try SimulatedCluster.run(ranks: ranks) { comm in
                let per = blocks / ranks
                let lo = comm.rank * per * ShardSpace.blockSize
                let hi = comm.rank == ranks - 1 ? n : (comm.rank + 1) * per * ShardSpace.blockSize
                let space = ShardSpace(count: hi - lo, communicator: comm)
                var options = LBFGS.Options()
                options.history = 4
                options.lineSearch = search
                let opt = LBFGS(options: options, space: space)
                var w = (lo..<hi).map { Float(sin(Double($0))) }
                // f = sum_i c_i softplus(w_i - t_i) + 0.05 w_i^2, c_i and t_i fixed per element.
                let closure: LBFGS.Closure = { w in
                    var g = [Float](repeating: 0, count: w.count), terms = [Float](repeating: 0, count: w.count)
                    for j in w.indices {
                        let i = lo + j, c = 1 + Double(i % 7) / 3, t = cos(Double(i) * 0.37), x = Double(w[j]) - t
                        terms[j] = Float(c * (max(x, 0) + log1p(exp(-abs(x)))) + 0.05 * Double(w[j]) * Double(w[j]))
                        g[j] = Float(c / (1 + exp(-x)) + 0.1 * Double(w[j]))
                    }
                    return (try space.dot(terms, [Float](repeating: 1, count: w.count)), g)
                }
                for _ in 0..<2 { try opt.step(&w, closure: closure) }
                return w
            }
            return parts.flatMap { $0 }
        }
        for search in LBFGS.LineSearch.allCases {
            let one = try run(1, search)
            #expect(one != (0..<n).map { Float(sin(Double($0))) }, "\(search): the weights never moved")
            for ranks in [2, 4] {
                let many = try run(ranks, search)
                #expect(zip(one, many).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(search): \(ranks) ranks differ from 1")
            }
        }
    }

    /// Two segments (trainer units) of 8192 and 4096 elements: the dot product of the whole
    /// vectors held by one rank equals, bit for bit, the one of shards on 2 and 4 ranks (rank r
    /// holds shard r of each segment), and differs from a plain sequential sum (the order shows).
    static func value(_ s: Int, _ i: Int, _ v: Int) -> Float { Float(sin(Double(i * (v + 2) + s * 7919))) * Float(1 << (i % 23)) }

    @Test func segmentsReduceInGlobalBlockOrder() throws {
        let sizes = [8 * ShardSpace.blockSize, 4 * ShardSpace.blockSize]
        let whole = try ShardSpace(segments: sizes).dot(
            sizes.indices.flatMap { s in (0..<sizes[s]).map { Self.value(s, $0, 0) } },
            sizes.indices.flatMap { s in (0..<sizes[s]).map { Self.value(s, $0, 1) } })
        for ranks in [2, 4] {
            let dots = try SimulatedCluster.run(ranks: ranks) { comm in
                let shards = sizes.map { $0 / ranks }
                let a = sizes.indices.flatMap { s in (comm.rank * shards[s] ..< (comm.rank + 1) * shards[s]).map { Self.value(s, $0, 0) } }
                let b = sizes.indices.flatMap { s in (comm.rank * shards[s] ..< (comm.rank + 1) * shards[s]).map { Self.value(s, $0, 1) } }
                return try ShardSpace(segments: shards, communicator: comm).dot(a, b)
            }
            #expect(dots.allSatisfy { $0.bitPattern == whole.bitPattern }, "\(ranks) ranks: \(dots) vs \(whole)")
        }
        var sequential = 0.0
        for s in sizes.indices { for i in 0..<sizes[s] { sequential += Double(Self.value(s, i, 0)) * Double(Self.value(s, i, 1)) } }
        #expect(sequential.bitPattern != whole.bitPattern)
    }
}
