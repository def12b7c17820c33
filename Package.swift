// swift-tools-version:6.1
import PackageDescription

// Kernels want vector units and no errno around sqrt; Swift builds for baseline
// x86-64 (SSE2) unless told otherwise. haswell (AVX2 + FMA) runs on every
// x86 server of the last decade. Swift never fuses multiply-adds by itself, and
// the C kernels are built with -ffp-contract=off, so results stay bit-exact.
#if arch(x86_64)
let cpuFlags: [String] = ["-target-cpu", "haswell"]
let cCPUFlags: [String] = ["-march=haswell"]
#else
let cpuFlags: [String] = []
let cCPUFlags: [String] = []
#endif
let swiftFast: [SwiftSetting] = [.unsafeFlags(cpuFlags + ["-Xcc", "-fno-math-errno"])]

let package = Package(
    name: "zero-train",
    products: [
        .executable(name: "zero-train", targets: ["ZeroTrainCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C bindings. Raw MPI calls live only in ZeroComm; raw BLAS calls only in ZeroTensor/Blas.swift.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(
            name: "CZeroKernels",
            cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"] + cCPUFlags)]
        ),

        // oneDNN (libdnnl-dev has no pkg-config file): called only from ZeroTensor/BF16Gemm.swift.
        .target(
            name: "CZeroDNNL",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"] + cCPUFlags)],
            linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]
        ),
        .target(name: "ZeroTensor", dependencies: ["COpenBLAS", "CZeroKernels", "CZeroDNNL"], swiftSettings: swiftFast),
        .target(name: "ZeroComm", dependencies: ["CMPI", "ZeroTensor"], swiftSettings: swiftFast),
        .target(name: "ZeroModels", dependencies: ["ZeroTensor"], resources: [.copy("Corpus")], swiftSettings: swiftFast),
        .target(name: "ZeroOptim", dependencies: ["ZeroTensor", "ZeroComm", "CZeroKernels"], swiftSettings: swiftFast),
        .target(
            name: "ZeroEngine",
            dependencies: ["ZeroTensor", "ZeroComm", "ZeroModels", "ZeroOptim", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftFast
        ),
        .target(name: "ZeroMemory", dependencies: ["ZeroTensor", "ZeroModels", "ZeroOptim", "ZeroEngine"], swiftSettings: swiftFast),
        .executableTarget(
            name: "ZeroTrainCLI",
            dependencies: [
                "ZeroTensor", "ZeroComm", "ZeroModels", "ZeroOptim", "ZeroEngine", "ZeroMemory",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftFast
        ),

        .testTarget(name: "ZeroTensorTests", dependencies: ["ZeroTensor"], swiftSettings: swiftFast),
        .testTarget(name: "ZeroCommTests", dependencies: ["ZeroComm", "ZeroTensor"], swiftSettings: swiftFast),
        .testTarget(name: "ZeroModelsTests", dependencies: ["ZeroModels", "ZeroTensor"], swiftSettings: swiftFast),
        .testTarget(name: "ZeroOptimTests", dependencies: ["ZeroOptim", "ZeroComm", "ZeroTensor"], swiftSettings: swiftFast),
        .testTarget(name: "ZeroEngineTests", dependencies: ["ZeroEngine", "ZeroComm", "ZeroModels", "ZeroOptim", "ZeroMemory", "ZeroTensor"], swiftSettings: swiftFast),
        .testTarget(name: "ZeroMemoryTests", dependencies: ["ZeroMemory", "ZeroModels"], swiftSettings: swiftFast),
        .testTarget(name: "CLITests", dependencies: ["ZeroTrainCLI", "ZeroEngine", "ZeroModels", "ZeroTensor"], swiftSettings: swiftFast),
    ],
    swiftLanguageModes: [.v6]
)
