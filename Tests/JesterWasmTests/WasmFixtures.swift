// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterWasm
import Testing

/// Builds test modules at test time (never committed): WAT with wabt's wat2wasm, the SDK's examples with
/// SDK/build-examples.sh (the toolchain's clang, or zig). Each is built once per test process and cached.
/// Packaging/setup.sh --test installs both tools, so a missing one fails the tests rather than skipping them.
enum WasmFixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    private static let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("jester-wasm-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
    private static let lock = NSLock()
    nonisolated(unsafe) private static var wat: [String: [UInt8]] = [:]
    nonisolated(unsafe) private static var examples: [String: URL] = [:]

    /// The binary of a WAT module; `flags` go to wat2wasm (`--enable-exceptions`).
    static func wasm(_ text: String, flags: [String] = []) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let cached = wat[text] { return cached }
        let source = directory.appendingPathComponent("m\(wat.count).wat")
        let output = source.deletingPathExtension().appendingPathExtension("wasm")
        try text.write(to: source, atomically: true, encoding: .utf8)
        let (status, log) = try run("/usr/bin/env", ["wat2wasm"] + flags + [source.path, "-o", output.path])
        guard status == 0 else {
            throw FixtureError("wat2wasm failed (Packaging/setup.sh --test installs wabt): \(log)")
        }
        let bytes = Array(try Data(contentsOf: output))
        wat[text] = bytes
        return bytes
    }

    /// The path of SDK example `name` built with `compiler` ("clang" or "zig").
    static func example(_ name: String, compiler: String = "clang") throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let built = examples[compiler] {
            return built.appendingPathComponent("\(name).wasm").path
        }
        let output = directory.appendingPathComponent("examples-\(compiler)")
        let script = repository.appendingPathComponent("SDK/build-examples.sh").path
        let (status, log) = try run("/bin/bash", [script, output.path, compiler])
        guard status == 0 else { throw FixtureError("SDK/build-examples.sh \(compiler) failed: \(log)") }
        examples[compiler] = output
        return output.appendingPathComponent("\(name).wasm").path
    }

    /// The binary of a C policy `source` built with the SDK's runtime by the toolchain's clang, as
    /// SDK/build-examples.sh builds the examples.
    static func policy(c source: String) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let cached = wat[source] { return cached }
        let file = directory.appendingPathComponent("c\(wat.count).c")
        let output = file.deletingPathExtension().appendingPathExtension("wasm")
        try source.write(to: file, atomically: true, encoding: .utf8)
        let toolchain = "/opt/swift/usr/bin/clang"
        let clang = FileManager.default.isExecutableFile(atPath: toolchain) ? toolchain : "clang"
        let sdk = repository.appendingPathComponent("SDK/c").path
        let (status, log) = try run(
            "/usr/bin/env",
            [
                clang, "--target=wasm32", "-O2", "-ffreestanding", "-nostdlib", "-mbulk-memory", "-Wall", "-Werror",
                "-I", sdk, "-Wl,--no-entry", "-o", output.path, file.path, sdk + "/jester_policy.c",
            ]
        )
        guard status == 0 else { throw FixtureError("clang failed: \(log)") }
        let bytes = Array(try Data(contentsOf: output))
        wat[source] = bytes
        return bytes
    }

    private static func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

extension PolicyLimits {
    /// The defaults with a deadline long enough for WasmKit built for debugging on a loaded machine (a 4 KiB body
    /// through the redactor takes longer than the default 50 ms there); the deadline has tests of its own, with a
    /// fake clock.
    static let forTests = PolicyLimits(deadlineNanoseconds: 60_000_000_000)
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// A WAT policy with ABI v1's plumbing (memory, a bump `cabi_realloc`, `abi-version`, an `init` that accepts
/// anything) around the functions a test writes. The action at 1040 is "proceed, no mutations"; data a test
/// needs goes from 2048 on. `$hostile` is true when the context's path is longer than "/", so one module serves a
/// hostile call and then the next, benign one.
func policyWAT(
    imports: String = "",
    functions: String,
    data: String = "",
    version: String = "0x10000",
    memory: String = "(memory (export \"memory\") 2)",
    realloc: String? = nil
) -> String {
    let allocator =
        realloc ?? """
            (global $bump (mut i32) (i32.const 65536))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (local $at i32)
              (if (i32.gt_u (i32.add (global.get $bump) (local.get 3)) (i32.const 131072))
                (then (global.set $bump (i32.const 65536))))
              (local.set $at (global.get $bump))
              (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get 3)) (i32.const 7))
                                         (i32.const -8)))
              (local.get $at))
            """
    return """
        (module
          \(imports)
          \(memory)
          \(allocator)
          (func (export "abi-version") (result i32) (i32.const \(version)))
          (func (export "init") (param i32 i32) (result i32) (i32.const 1024))
          (func $hostile (param $ctx i32) (result i32)
            (i32.gt_u (i32.load offset=40 (local.get $ctx)) (i32.const 1)))
          \(functions)
          \(data)
        )
        """
}

/// A context whose path makes `$hostile` true ("/evil") or false ("/").
func context(hostile: Bool, headers: [PolicyField] = []) -> PolicyContext {
    PolicyContext(method: "GET", authority: "example.com", path: hostile ? "/evil" : "/", requestHeaders: headers)
}
