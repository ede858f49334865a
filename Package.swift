// swift-tools-version: 6.1
import PackageDescription

// Every target is compiled in the Swift 6 language mode (complete concurrency checking).
// Existential types must be spelled `any`, and imports are internal unless a public API
// needs them, so a C library never leaks past the one target that wraps it.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The launcher's path: generic types are instantiated through direct metadata calls instead
// of mangled names the runtime would demangle at first use (about 0.2 ms of every launch).
let launcherSettings: [SwiftSetting] =
    strictSettings + [
        .unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"])
    ]

let package = Package(
    name: "AeroGrid",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "aerogrid", targets: ["aerogrid"]),
        .executable(name: "aerogrid-sandbox", targets: ["aerogrid-sandbox"]),
        .library(name: "AeroGridKafka", targets: ["AeroGridKafka"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-openapi-generator", from: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
    ],
    targets: [
        // librdkafka (Debian: librdkafka-dev), including the embedded mock cluster header.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // libseccomp (Debian: libseccomp-dev): compiling profiles to BPF.
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        // zlib (Debian: zlib1g-dev): inflating bundles, whose zip structure the server reads itself.
        .systemLibrary(
            name: "CLibZ",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // The sandbox's child path between clone and exec: async-signal-safe C.
        .target(
            name: "CSandboxSys",
            cSettings: [.unsafeFlags(["-std=gnu11", "-Wall", "-Wextra", "-Werror"])],
            linkerSettings: [.linkedLibrary("seccomp")]
        ),
        .target(
            name: "AeroGridSandbox",
            dependencies: ["CSandboxSys", "CSeccomp"],
            swiftSettings: launcherSettings
        ),
        // The standalone launcher: lean (no Foundation, static stdlib) so it starts fast.
        .executableTarget(
            name: "aerogrid-sandbox",
            dependencies: ["AeroGridSandbox"],
            swiftSettings: launcherSettings,
            linkerSettings: [.unsafeFlags(["-static-executable"])]
        ),
        .target(
            name: "AeroGridIPC",
            dependencies: ["AeroGridCore"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AeroGridStore",
            dependencies: ["AeroGridCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AeroGridRuntime",
            dependencies: [
                "AeroGridCore", "AeroGridKafka", "AeroGridSandbox", "AeroGridIPC", "AeroGridStore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The one result format every benchmark writes (Benchmarks/).
        .target(
            name: "BenchReport",
            path: "Benchmarks/BenchReport",
            swiftSettings: strictSettings
        ),
        // make bench: the runtime's speed and memory next to a baseline (Benchmarks/).
        .executableTarget(
            name: "aerogrid-bench",
            dependencies: [
                "AeroGridCore", "AeroGridKafka", "AeroGridRuntime", "AeroGridSandbox", "AeroGridStore", "BenchReport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RuntimeBench",
            swiftSettings: strictSettings
        ),
        // make bench-sandbox: Sandbox.launch as the supervisor calls it, timed in process.
        .executableTarget(
            name: "aerogrid-launch-bench",
            dependencies: ["AeroGridSandbox"],
            path: "Benchmarks/LaunchBench",
            swiftSettings: strictSettings
        ),
        // make bench-fanout: the stream with many clients, next to a one-client run.
        .executableTarget(
            name: "aerogrid-fanout-bench",
            dependencies: [
                "AeroGridKafka", "BenchReport",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/FanoutBench",
            swiftSettings: strictSettings
        ),
        .target(
            name: "AeroGridCore",
            swiftSettings: strictSettings
        ),
        // More than one node: the control plane kept in Kafka (docs/cluster.md).
        .target(
            name: "AeroGridCluster",
            dependencies: ["AeroGridCore", "AeroGridKafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AeroGridKafka",
            dependencies: [
                "AeroGridCore",
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The API's shapes, generated from its OpenAPI document at build time: the server,
        // the CLI and the tests share them.
        .target(
            name: "AeroGridAPI",
            dependencies: ["AeroGridCore", .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            resources: [.copy("openapi.json")],
            swiftSettings: strictSettings,
            plugins: [.plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator")]
        ),
        // Grid changes to many clients: snapshot then conflated deltas per subscription.
        .target(
            name: "AeroGridFanout",
            dependencies: ["AeroGridCore", "AeroGridRuntime"],
            swiftSettings: strictSettings
        ),
        // The control plane: REST API, tokens, bundles, the apps of every tenant.
        .target(
            name: "AeroGridServer",
            dependencies: [
                "AeroGridAPI", "AeroGridCluster", "AeroGridCore", "AeroGridFanout", "AeroGridKafka", "AeroGridRuntime", "AeroGridSandbox",
                "AeroGridStore", "CLibZ",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "aerogrid",
            dependencies: [
                "AeroGridAPI",
                "AeroGridCluster",
                "AeroGridCore",
                "AeroGridServer",
                "AeroGridKafka",
                "AeroGridRuntime",
                "AeroGridSandbox",
                "AeroGridStore",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridCoreTests",
            dependencies: ["AeroGridCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridSandboxTests",
            dependencies: ["AeroGridSandbox"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridRuntimeTests",
            dependencies: [
                "AeroGridCore", "AeroGridIPC", "AeroGridKafka", "AeroGridRuntime", "AeroGridSandbox", "AeroGridStore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridServerTests",
            dependencies: [
                "AeroGridAPI", "AeroGridRuntime", "AeroGridServer", "AeroGridStore", "CLibZ",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridFanoutTests",
            dependencies: ["AeroGridCore", "AeroGridFanout", "AeroGridRuntime"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridClusterTests",
            dependencies: ["AeroGridCluster", "AeroGridCore", "AeroGridKafka", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridStoreTests",
            dependencies: ["AeroGridCore", "AeroGridStore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridCLITests",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AeroGridKafkaTests",
            dependencies: [
                "AeroGridCore", "AeroGridKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
