// swift-tools-version:6.0
// SPDX-License-Identifier: Apache-2.0
//
// Jester: a reverse proxy, load balancer and API gateway for Linux.
//
// The module graph mirrors the architecture (see README.md, "Architecture"):
//
//   C system libraries   CJesterOpenSSL CJesterNGHTTP2 CJesterNGTCP2 CJesterNGHTTP3 CJesterPosix
//                        CJesterCrypt (libxcrypt)  CJesterZlib CJesterBrotli CJesterZstd (content codings)
//   pure (no I/O, no C)  JesterCore  JesterConfig  JesterControl  JesterMetrics  JesterTracing
//                        JesterCache (RFC 9111 decisions: keys, freshness, storing, lookups; on JesterCore)
//   I/O wrappers         JesterSystem (posix; systemd's protocols)  JesterTLS  JesterHTTP2  JesterHTTP3
//   codecs               JesterCompression (gzip, deflate, br, zstd streams over ByteBuffer; no sockets)
//   filters' checks      JesterAuth (htpasswd over libxcrypt, JWT over JesterTLS's OpenSSL; no sockets)
//   master's client      JesterFetch (one HTTP/1.1 GET over NIO, TLS through JesterTLS, JesterCore's parser)
//   span export          JesterTracingExport (OTLP/HTTP from a thread of its own, over plain sockets)
//   policies             JesterWasm (Wasm policies on WasmKit's interpreter: ABI v1, limits, fail-closed
//                        outcomes; no sockets, no NIO channel types, no JesterProxy)
//   cache store          JesterCacheStore (the shared HTTP cache's body files and index: JesterCache's decisions
//                        carried out on JesterSystem's shared memory; no sockets)
//   roles                JesterProxy (the worker's data plane)  JesterSupervisor (the master)
//   executables          jester  jesterctl  (argument parsing and dispatch only)
//
// A pure module never imports an I/O module, and the supervisor never imports TLS or HTTP code itself: it fetches key
// sets (jwt filters' `jwks_url`) through JesterFetch, which keeps the TLS and HTTP parsing behind one call, and
// checks them with JesterAuth before any worker sees them (workers never fetch: they hold no outbound rights
// the operator did not configure, and one fetch serves every worker).

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]
// Release builds add Packaging/swift-release-flags (no run-time exclusivity checks, for SwiftNIO too), which a
// manifest cannot set for dependencies; Packaging/setup.sh, Packaging/debian/rules and bench/run pass them.

let package = Package(
    name: "Jester",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "jester", targets: ["jester"]),
        .executable(name: "jesterctl", targets: ["jesterctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swiftwasm/WasmKit", from: "0.4.2"),
        // The control plane's stream (issue 25): gRPC over HTTP/2 with protobuf messages, generated once and
        // committed (Proto/generate.sh).
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // MARK: System libraries, found with pkg-config. Each shim header holds only what Swift cannot import.
        .systemLibrary(
            name: "CJesterOpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CJesterNGHTTP2", pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(
            name: "CJesterNGTCP2", pkgConfig: "libngtcp2 libngtcp2_crypto_gnutls gnutls",
            providers: [.apt(["libngtcp2-dev", "libngtcp2-crypto-gnutls-dev", "libgnutls28-dev"])]),
        .systemLibrary(
            name: "CJesterNGHTTP3", pkgConfig: "libnghttp3",
            providers: [.apt(["libnghttp3-dev"])]),
        // Password hashing (bcrypt, SHA-256/512-crypt) for htpasswd files; imported by JesterAuth only.
        .systemLibrary(
            name: "CJesterCrypt", pkgConfig: "libxcrypt",
            providers: [.apt(["libcrypt-dev"])]),
        // The content codings (issue 21): zlib for gzip and deflate, brotli, zstd; imported by JesterCompression only.
        .systemLibrary(
            name: "CJesterZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CJesterBrotli", pkgConfig: "libbrotlienc libbrotlidec",
            providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(
            name: "CJesterZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // libc calls Swift cannot make directly (variadic prctl, CMSG macros).
        .target(name: "CJesterPosix"),

        // MARK: Pure modules: no sockets, no C.
        .target(name: "JesterCore", swiftSettings: swiftSettings),
        .target(
            name: "JesterConfig",
            // JesterControl for its JSON parser (snapshots from a control plane), which it keeps free of Foundation.
            dependencies: ["JesterCore", "JesterTracing", "JesterControl", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: swiftSettings),
        .target(name: "JesterControl", swiftSettings: swiftSettings),
        // Metric families, series ids and the Prometheus/OpenMetrics exposition; the shared table is JesterSystem's.
        .target(name: "JesterMetrics", dependencies: ["JesterConfig"], swiftSettings: swiftSettings),
        // W3C trace context, sampling, spans and their OTLP encoding: values in, values out (times passed in).
        .target(name: "JesterTracing", swiftSettings: swiftSettings),
        // The shared HTTP cache's decisions (RFC 9111): keys and their keyed hash, Cache-Control, freshness, what
        // to store, lookups, revalidation, Cache-Status. Values in, decisions out; the index and files are I/O's.
        .target(name: "JesterCache", dependencies: ["JesterCore"], swiftSettings: swiftSettings),

        // MARK: I/O wrappers, each the only importer of its C module.
        .target(
            name: "JesterSystem",
            dependencies: [
                // Neither JesterCore nor Foundation: jesterctl links this module, and stays small without them.
                "CJesterPosix", "JesterMetrics",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // The shared HTTP cache's files and index as one store: JesterCache's decisions carried out on JesterSystem's
        // shared index and on body files (workers look up and store; the master purges and rebuilds).
        .target(name: "JesterCacheStore", dependencies: ["JesterCache", "JesterSystem"], swiftSettings: swiftSettings),
        .target(
            name: "JesterTLS",
            dependencies: ["CJesterOpenSSL", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .target(
            name: "JesterHTTP2",
            dependencies: ["CJesterNGHTTP2", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        // QUIC (ngtcp2 + GnuTLS) and HTTP/3 (nghttp3) sessions, sans I/O: datagrams in and out, time passed in.
        .target(
            name: "JesterHTTP3",
            dependencies: ["CJesterNGTCP2", "CJesterNGHTTP3", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        // Streaming encoders and decoders for the content codings, behind one protocol each; the codings, their
        // negotiation and the rules of when to compress are JesterCore's (pure), so this module only runs libraries.
        .target(
            name: "JesterCompression",
            dependencies: [
                "CJesterZlib", "CJesterBrotli", "CJesterZstd", "JesterCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        // Credential checks for the auth filters: htpasswd (the only importer of CJesterCrypt) and JWT, whose
        // signatures JesterTLS checks. Values in, verdicts out: no sockets, no logger, time passed in.
        .target(name: "JesterAuth", dependencies: ["CJesterCrypt", "JesterTLS"], swiftSettings: swiftSettings),
        // The master's HTTP client (JWKS fetches): a GET over NIO, TLS verified against the system's CAs.
        .target(
            name: "JesterFetch",
            dependencies: [
                "JesterCore", "JesterTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),

        // The OTLP/HTTP exporter: a bounded queue the data plane appends spans to, sent in batches from a thread
        // of its own over plain sockets, so a slow or dead collector never reaches an event loop.
        .target(name: "JesterTracingExport", dependencies: ["JesterTracing"], swiftSettings: swiftSettings),

        // Wasm policies (issue 22): WasmKit's interpreter behind ABI v1 (SDK/wit/jester-policy.wit), with fuel,
        // memory, table and deadline limits; every trap or malformed answer is a fail-closed outcome, never a throw.
        .target(
            name: "JesterWasm", dependencies: [.product(name: "WasmKit", package: "WasmKit")],
            swiftSettings: swiftSettings),

        // MARK: Roles.
        .target(
            name: "JesterLogging",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "JesterProxy",
            dependencies: [
                "JesterCore", "JesterConfig", "JesterControl", "JesterSystem", "JesterLogging", "JesterTLS", "JesterHTTP2",
                "JesterAuth", "JesterMetrics", "JesterTracing", "JesterTracingExport", "JesterCompression",
                "JesterCache", "JesterCacheStore", "JesterWasm", "JesterHTTP3",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "JesterSupervisor",
            dependencies: [
                "JesterCore", "JesterConfig", "JesterControl", "JesterSystem", "JesterLogging", "JesterFetch",
                "JesterAuth", "JesterMetrics", "JesterCache", "JesterCacheStore", "JesterHTTPAPI",
                "JesterControlPlane", "JesterControlPlaneGRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),

        // The small HTTP/1.1 layer the admin API and the control plane's REST API share: whole requests read with
        // the data plane's strict head parser, whole answers. No sockets; each server owns its channels.
        .target(name: "JesterHTTPAPI", dependencies: ["JesterCore"], swiftSettings: swiftSettings),
        // The control plane (issue 25). Its decisions are pure: the snapshot document and its resources, versions,
        // diffs, the REST API's answers and the audit record, validated by JesterConfig's loader.
        .target(
            name: "JesterControlPlane",
            dependencies: ["JesterConfig", "JesterControl", "JesterHTTPAPI"],
            swiftSettings: swiftSettings),
        // The stream between the control plane and the data planes' masters over gRPC: the code generated from
        // Proto/ (committed; Proto/generate.sh), its messages to and from JesterControlPlane's values, the
        // control plane's server and the master's client. No generated or gRPC type leaves it.
        .target(
            name: "JesterControlPlaneGRPC",
            dependencies: [
                "JesterControlPlane", "JesterControl",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings),
        // Its I/O: the REST server on NIO and the file store of versions and the audit log.
        .target(
            name: "JesterControlPlaneServer",
            dependencies: [
                "JesterControlPlane", "JesterControlPlaneGRPC", "JesterHTTPAPI", "JesterConfig", "JesterControl",
                "JesterCore", "JesterLogging", "JesterSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),

        // MARK: Executables.
        .executableTarget(
            name: "jester",
            dependencies: [
                "JesterConfig", "JesterSupervisor", "JesterProxy", "JesterTLS", "JesterHTTP2", "JesterHTTP3", "JesterWasm",
                "JesterControlPlaneServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "jesterctl",
            // JesterControl only: no Foundation, no argument parser, no configuration loader (jesterctl -c reads the
            // control socket with ControlSocketLookup), so the binary stays small (bench/PERFORMANCE.md).
            dependencies: ["JesterControl"],
            swiftSettings: swiftSettings),

        // MARK: Tests: pure, embedded-channel and live tiers.
        .testTarget(name: "JesterCoreTests", dependencies: ["JesterCore"]),
        .testTarget(name: "JesterConfigTests", dependencies: ["JesterConfig"]),
        .testTarget(name: "JesterControlTests", dependencies: ["JesterControl"]),
        .testTarget(name: "JesterControlPlaneTests", dependencies: ["JesterControlPlane", "JesterControl", "JesterHTTPAPI"]),
        .testTarget(
            name: "JesterControlPlaneServerTests",
            dependencies: ["JesterControlPlaneServer", "JesterControlPlane", "JesterControl"]),
        .testTarget(name: "JesterCacheTests", dependencies: ["JesterCache", "JesterCore"]),
        .testTarget(name: "JesterCacheStoreTests", dependencies: ["JesterCacheStore", "JesterCache", "JesterSystem"]),
        .testTarget(name: "JesterLoggingTests", dependencies: ["JesterLogging"]),
        .testTarget(name: "JesterTracingTests", dependencies: ["JesterTracing", "JesterTracingExport"]),
        // Drives the exporter for the live tier (Tests/Live/test_otlp.py) until the worker exports spans itself.
        .executableTarget(
            name: "jester-otlp-probe", dependencies: ["JesterTracing", "JesterTracingExport"],
            path: "Tests/OTLPProbe", swiftSettings: swiftSettings),
        // A tiny HTTP/3 server on JesterHTTP3's sessions for the live tier (Tests/Live/test_http3_sessions.py), until
        // the worker serves HTTP/3 itself.
        .executableTarget(
            name: "jester-h3-probe", dependencies: ["JesterHTTP3", .product(name: "NIOCore", package: "swift-nio")],
            path: "Tests/H3Probe", swiftSettings: swiftSettings),
        .testTarget(name: "JesterMetricsTests", dependencies: ["JesterMetrics", "JesterConfig"], exclude: ["Golden"]),
        .testTarget(
            name: "JesterSystemTests",
            dependencies: ["JesterSystem", "JesterMetrics", "JesterCore", "JesterTLS", "JesterHTTP2", "JesterHTTP3"]),
        .testTarget(name: "JesterAuthTests", dependencies: ["JesterAuth", "JesterTLS"]),
        // Builds SDK/examples and the hostile WAT modules with clang, zig and wat2wasm at test time; WasmKit's WIT
        // library holds the host to SDK/wit/jester-policy.wit (a test-only dependency).
        .testTarget(
            name: "JesterWasmTests", dependencies: ["JesterWasm", .product(name: "WIT", package: "WasmKit")]),
        .testTarget(
            name: "JesterCompressionTests",
            dependencies: ["JesterCompression", "JesterCore", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "JesterFetchTests",
            dependencies: ["JesterFetch", "JesterTLS", .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(
            name: "JesterHTTP2Tests",
            dependencies: ["JesterHTTP2", .product(name: "NIOCore", package: "swift-nio")]),
        // A QUIC client and server connected in memory: datagrams passed by hand, no sockets.
        .testTarget(
            name: "JesterHTTP3Tests",
            dependencies: ["JesterHTTP3", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "JesterTLSTests",
            dependencies: ["JesterTLS", .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(
            name: "JesterSupervisorTests",
            dependencies: [
                "JesterSupervisor", "JesterConfig", "JesterControl", "JesterHTTPAPI",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]),
        // The embedded tier: the data plane's channel handlers driven through NIO's EmbeddedChannel, no sockets.
        .testTarget(
            name: "JesterProxyTests",
            dependencies: ["JesterProxy", "JesterConfig", .product(name: "NIOEmbedded", package: "swift-nio")]),
        // The live tier (real jester processes, upstreams and clients) is Tests/Live, run by pytest.
    ]
)
