// swift-tools-version:6.0
import PackageDescription

/// `-O` for the modules the simulation spends its time in, in debug builds too (release builds are optimized anyway).
let optimized: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "Convoy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "convoy", targets: ["convoy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The runner's child processes: process groups, sessions, async output streams.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        // Already in the graph through Hummingbird's TLS stack; we use its SHA-256.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // Hummingbird's TLS stack; named for NIOSSLCertificate and the server TLS configuration.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // The dispatcher's /metrics: swift-metrics' API, exported in Prometheus' text format.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The three C libraries, bound as system libraries found through pkg-config.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CLibSSH2", pkgConfig: "libssh2", providers: [.apt(["libssh2-1-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        .target(name: "ConvoyModel", dependencies: [.product(name: "Yams", package: "Yams")]),
        // epoll and eventfd for ConvoyIO's readiness poller (not in Swift's Glibc module).
        .target(name: "CLinuxPoll"),
        .target(name: "ConvoyIO", dependencies: ["CLinuxPoll", .product(name: "Subprocess", package: "swift-subprocess")]),
        .target(name: "ConvoyPostgres", dependencies: ["CLibPQ", "ConvoyIO"]),
        .target(name: "ConvoySSH", dependencies: ["CLibSSH2", "ConvoyIO"]),
        .target(name: "ConvoyHTTP", dependencies: ["CCurl", "ConvoyModel"]),
        .target(
            name: "ConvoyAPI",
            dependencies: [
                "ConvoyModel", "ConvoyPostgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "ConvoyAPIClient", dependencies: ["ConvoyModel", "ConvoyHTTP"]),
        .target(name: "ConvoyRunner", dependencies: [
            "ConvoyModel", "ConvoyAPIClient", "ConvoyHTTP", "ConvoyIO", .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        .target(
            name: "ConvoyCluster",
            dependencies: [
                "ConvoyModel", "ConvoyPostgres",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The leader's decisions as a pure state machine (events in, commands out), and the scheduler.
        // Optimized even in debug builds: make test runs thousands of simulated clusters through it.
        .target(name: "ConvoyDispatchCore", dependencies: ["ConvoyModel"], swiftSettings: optimized),
        // The core run against a simulated API, cloud, members and runners on a simulated clock.
        .target(name: "ConvoySimulation", dependencies: ["ConvoyDispatchCore", "ConvoyModel", "ConvoyCheck"], swiftSettings: optimized),
        .executableTarget(name: "convoy-sim", dependencies: [
            "ConvoySimulation", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Simulation", exclude: ["kept-seeds.txt"]),
        .target(
            name: "ConvoyDispatch",
            dependencies: [
                "ConvoyModel", "ConvoyDispatchCore", "ConvoyCluster", "ConvoySSH", "ConvoyAPIClient", "ConvoyHTTP", "ConvoyIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The HA checker: a run's history against the invariants (`convoy check history`).
        .target(name: "ConvoyCheck", dependencies: ["ConvoyPostgres"]),
        // The local stack `make run` and `convoy dev` start: processes, files, demo, terminal UI.
        .target(name: "ConvoyDevStack", dependencies: [
            "ConvoyModel", "ConvoyPostgres", "ConvoyHTTP", "ConvoyAPIClient", "ConvoyRunner", "ConvoyCluster", "ConvoyDispatch", "ConvoyIO",
        ]),
        .target(
            name: "ConvoyTesting",
            dependencies: [
                "ConvoyPostgres", "ConvoyAPI", "ConvoyHTTP", "ConvoyModel", "ConvoyCluster", "ConvoyDispatch", "ConvoyDevStack", "ConvoyIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // PostgresTestCase: the harness's one XCTest type, kept out of ConvoyTesting so that tools
        // built on the harness (convoy-chaos, the benchmarks) do not link XCTest.
        .target(name: "ConvoyTestCase", dependencies: ["ConvoyTesting"]),
        .executableTarget(
            name: "convoy",
            dependencies: [
                "ConvoyModel", "ConvoyPostgres", "ConvoySSH", "ConvoyHTTP", "ConvoyAPI", "ConvoyAPIClient", "ConvoyRunner",
                "ConvoyCluster", "ConvoyDispatch", "ConvoyDevStack", "ConvoyCheck",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The HA proofs `make chaos` runs (and the short versions `make test` runs).
        .target(name: "ConvoyChaos", dependencies: [
            "ConvoyModel", "ConvoyPostgres", "ConvoyAPIClient", "ConvoyCheck", "ConvoyDevStack", "ConvoyDispatch", "ConvoyIO", "ConvoyTesting",
        ]),
        .executableTarget(
            name: "ConvoyChaosTool",
            dependencies: ["ConvoyChaos", "ConvoyDevStack", "ConvoyTesting", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Chaos"
        ),
        // The wire protocol's fuzz target (make fuzz, part of make chaos) and the harness the regression tests replay.
        .target(name: "ConvoyFuzzing", dependencies: [
            "ConvoyCluster", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "Fuzz/ConvoyFuzzing"),
        .executableTarget(name: "convoy-wire-fuzz", dependencies: ["ConvoyFuzzing"], path: "Fuzz/convoy-wire-fuzz"),
        // Benchmarks run with `make bench`, never as part of `make test`.
        .executableTarget(
            name: "ConvoyBench",
            dependencies: ["ConvoyTesting", "ConvoyPostgres", "ConvoySSH", "ConvoyHTTP", "ConvoyModel", "ConvoyAPI", "ConvoyAPIClient", "ConvoyCluster", "ConvoyDispatch", "ConvoyDevStack",
                           "ConvoyDispatchCore", "ConvoySimulation",
                           .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/ConvoyBench"
        ),

        .testTarget(name: "ConvoyModelTests", dependencies: ["ConvoyModel", "ConvoyTesting"]),
        .testTarget(name: "ConvoyDispatchCoreTests", dependencies: ["ConvoyDispatchCore", "ConvoyModel"]),
        .testTarget(name: "ConvoySimulationTests", dependencies: ["ConvoySimulation", "ConvoyDispatchCore", "ConvoyCheck"]),
        .testTarget(name: "ConvoyCheckTests", dependencies: ["ConvoyCheck"]),
        .testTarget(name: "ConvoyChaosTests", dependencies: ["ConvoyChaos", "ConvoyDevStack", "ConvoyCheck", "ConvoyPostgres", "ConvoyTesting"]),
        .testTarget(name: "ConvoyIOTests", dependencies: ["ConvoyIO"]),
        .testTarget(name: "ConvoyPostgresTests", dependencies: ["ConvoyPostgres", "ConvoyTestCase", "ConvoyTesting"]),
        .testTarget(name: "ConvoySSHTests", dependencies: ["ConvoySSH", "ConvoyTesting"]),
        .testTarget(name: "ConvoyHTTPTests", dependencies: ["ConvoyHTTP", "ConvoyModel", "ConvoyTesting"]),
        .testTarget(name: "ConvoyAPIClientTests", dependencies: ["ConvoyAPIClient", "ConvoyAPI", "ConvoyModel", "ConvoyTestCase", "ConvoyTesting"]),
        .testTarget(name: "ConvoyRunnerTests", dependencies: ["ConvoyRunner", "ConvoyAPIClient", "ConvoyAPI", "ConvoyModel", "ConvoyTestCase", "ConvoyTesting"]),
        .testTarget(name: "ConvoyDispatchTests", dependencies: [
            "ConvoyDispatch", "ConvoyCluster", "ConvoyModel", "ConvoyAPI", "ConvoyAPIClient", "ConvoyHTTP", "ConvoyTestCase", "ConvoyTesting",
        ]),
        .testTarget(name: "ConvoyClusterTests", dependencies: [
            "ConvoyCluster", "ConvoyModel", "ConvoyPostgres", "ConvoyTestCase", "ConvoyTesting", "ConvoyFuzzing",
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "ConvoyCLITests", dependencies: [
            "ConvoyTestCase", "ConvoyTesting", "ConvoyHTTP", "ConvoyModel", "ConvoyAPIClient", "ConvoyPostgres", "ConvoyDevStack", "ConvoyCluster",
            "ConvoyAPI", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ConvoyAPITests", dependencies: [
            "ConvoyAPI", "ConvoyCluster", "ConvoyModel", "ConvoyHTTP", "ConvoyPostgres", "ConvoyTestCase", "ConvoyTesting", .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ]
)
