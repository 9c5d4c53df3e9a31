// swift-tools-version:6.0
// SPDX-License-Identifier: Apache-2.0
//
// Floor probes for bench/PERFORMANCE.md: what a proxy's sockets cost before it does any HTTP work, on SwiftNIO's
// channels and on a bare epoll loop. Not part of Jester; built and run by bench/probes/run. Same SwiftNIO as
// Jester's Package.resolved, same release flags.

import PackageDescription

let package = Package(
    name: "JesterProbes",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "nio-probe",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"), "CProbeLibc"]),
        .target(name: "CProbeLibc"),
        .executableTarget(name: "epoll-probe", dependencies: ["CProbeLibc"]),
    ],
    swiftLanguageModes: [.v5]
)
