// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterWasm
import Testing

/// Loading refuses modules that do not speak ABI v1, with an error that names the module and what is wrong (the
/// master reports it at the configuration's file:line:column), and instantiation holds the limits.
@Suite struct PolicyModuleTests {
    private let benign = """
        (func (export "on-pre-route") (param i32) (result i32) (i32.const 1040))
        """

    private func loadError(
        _ wat: String,
        limits: PolicyLimits = PolicyLimits(),
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> PolicyLoadError? {
        let bytes = try WasmFixtures.wasm(wat)
        do {
            _ = try PolicyModule.load(bytes: bytes, name: "policies/p.wasm", limits: limits)
            Issue.record("the module loaded", sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.description.hasPrefix("policy module policies/p.wasm: "), sourceLocation: sourceLocation)
            return error
        }
    }

    @Test func aBenignModuleLoads() throws {
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(policyWAT(functions: benign)), name: "p.wasm")
        #expect(module.stages == [.preRoute] && module.abiMinor == 0)
    }

    @Test func notWasmAtAll() throws {
        for bytes in [Array("hello".utf8), [0, 0x61, 0x73, 0x6D, 1, 0, 0]] {
            do {
                _ = try PolicyModule.load(bytes: bytes, name: "p.wasm")
                Issue.record("\(bytes) loaded")
            } catch {
                #expect(error.kind == .malformedModule && error.message.hasPrefix("not a valid Wasm module"))
            }
        }
    }

    @Test func aMissingFileIsReported() {
        do {
            _ = try PolicyModule.load(path: "/nonexistent/p.wasm")
            Issue.record("a missing file loaded")
        } catch {
            #expect(error.kind == .malformedModule && error.description.hasPrefix("policy module /nonexistent/p.wasm"))
        }
    }

    @Test func missingCabiRealloc() throws {
        let error = try loadError(policyWAT(functions: benign, realloc: ""))
        #expect(
            error?.kind == .missingExport && error?.message.contains("cabi_realloc") == true,
            "\(String(describing: error))"
        )
    }

    @Test func missingMemory() throws {
        let error = try loadError(policyWAT(functions: benign, memory: "(memory 1)"))
        #expect(error?.kind == .missingExport && error?.message.contains("memory") == true)
    }

    @Test func noStageAtAll() throws {
        let error = try loadError(policyWAT(functions: ""))
        #expect(error?.kind == .missingExport && error?.message.contains("on-pre-route") == true)
    }

    @Test func aStageWithTheWrongSignature() throws {
        let error = try loadError(
            policyWAT(functions: #"(func (export "on-pre-upstream") (param i64) (result i32) (i32.const 0))"#)
        )
        #expect(error?.kind == .wrongSignature && error?.message.contains("on-pre-upstream") == true)
    }

    @Test func aMajorVersionThisHostDoesNotSpeak() throws {
        let error = try loadError(policyWAT(functions: benign, version: "0x20000"))
        #expect(
            error?.kind == .abiVersion && error?.message.contains("ABI 2.0") == true,
            "\(String(describing: error))"
        )
    }

    @Test func aLaterMinorVersion() throws {
        let error = try loadError(policyWAT(functions: benign, version: "0x10001"))
        #expect(error?.kind == .abiVersion && error?.message.contains("ABI 1.1") == true)
    }

    @Test func anImportV1DoesNotProvide() throws {
        let wat = policyWAT(
            imports: #"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            functions: benign
        )
        let error = try loadError(wat)
        #expect(error?.kind == .unknownImport && error?.message.contains("wasi_snapshot_preview1.fd_write") == true)
    }

    @Test func aHostImportOfTheWrongType() throws {
        let wat = policyWAT(
            imports: #"(import "jester:policy/host@1.0.0" "log" (func (param i64)))"#,
            functions: benign
        )
        #expect(try loadError(wat)?.kind == .instantiation)
    }

    @Test func initialMemoryOverTheLimit() throws {
        let error = try loadError(
            policyWAT(functions: benign, memory: #"(memory (export "memory") 300)"#),
            limits: PolicyLimits(memoryPages: 256)
        )
        #expect(
            error?.kind == .instantiation && error?.message.contains("256 memory pages") == true,
            "\(String(describing: error))"
        )
    }

    @Test func aTableOverTheLimit() throws {
        let wat = policyWAT(functions: benign + "\n(table 20000 funcref)")
        let error = try loadError(wat, limits: PolicyLimits(tableElements: 10_000))
        #expect(error?.kind == .instantiation && error?.message.contains("table elements") == true)
    }

    @Test func abiVersionThatCallsTheHost() throws {
        // The module is checked in a throwaway instance whose host must outlive the check (it did not once).
        let logs = "(call $log (i32.const 1) (i32.const 0) (i32.const 4))"
        let wat = policyWAT(
            imports: #"(import "jester:policy/host@1.0.0" "log" (func $log (param i32 i32 i32)))"#,
            functions: benign
        ).replacingOccurrences(
            of: "(result i32) (i32.const 0x10000))",
            with: "(result i32) \(logs) (i32.const 0x10000))"
        )
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "p.wasm", limits: .forTests)
        #expect(module.abiMinor == 0)
    }

    @Test func aStartFunctionThatNeverEnds() throws {
        let wat = policyWAT(functions: benign + "\n(func $start (loop $l (br $l))) (start $start)")
        let error = try loadError(wat, limits: PolicyLimits(fuelForInit: 100_000))
        #expect(
            error?.kind == .instantiation && error?.message.contains("fuel") == true,
            "\(String(describing: error))"
        )
    }

    @Test func inspectionFindsTheStaticProblemsLoadFinds() throws {
        let cases: [(String, PolicyLoadError.Kind)] = [
            (policyWAT(functions: benign, realloc: ""), .missingExport),
            (policyWAT(functions: benign, memory: "(memory 1)"), .missingExport),
            (policyWAT(functions: ""), .missingExport),
            (
                policyWAT(
                    imports: #"(import "env" "clock" (func (result i64)))"#,
                    functions: benign
                ), .unknownImport
            ),
        ]
        for (wat, kind) in cases {
            let bytes = try WasmFixtures.wasm(wat)
            do {
                _ = try PolicyModule.inspect(bytes: bytes, name: "p.wasm")
                Issue.record("inspection passed a module load refuses (\(kind))")
            } catch {
                #expect(error.kind == kind, "\(error)")
            }
        }
        do {
            _ = try PolicyModule.inspect(bytes: Array("junk".utf8), name: "p.wasm")
            Issue.record("inspection passed junk")
        } catch {
            #expect(error.kind == .malformedModule)
        }
    }

    @Test func inspectionRunsNoCode() throws {
        // A start function that never ends: loading it runs out of fuel; inspecting it does not run it at all.
        let wat = policyWAT(
            functions: benign + #"(func (export "on-post-response") (param i32) (result i32) (i32.const 1040))"#
                + "\n(func $start (loop $l (br $l))) (start $start)"
        )
        #expect(
            try PolicyModule.inspect(bytes: try WasmFixtures.wasm(wat), name: "p.wasm") == [.preRoute, .postResponse]
        )
        for compiler in ["clang", "zig"] {
            let path = try WasmFixtures.example("failure_circuit", compiler: compiler)
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(try PolicyModule.inspect(bytes: bytes, name: path) == [.preRoute, .postResponse])
        }
    }

    @Test func initRefusesTheConfiguration() throws {
        // init returns result::err("bad config") from 2048.
        let wat = policyWAT(
            functions: benign,
            data: """
                (data (i32.const 2048) "\(le(1, 2100, 10))")
                (data (i32.const 2100) "bad config")
                """
        ).replacingOccurrences(of: "(result i32) (i32.const 1024))", with: "(result i32) (i32.const 2048))")
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "p.wasm", limits: .forTests)
        #expect(
            throws: PolicyLoadError(
                module: "p.wasm",
                kind: .initFailed,
                message: "init refused the configuration: bad config"
            )
        ) {
            _ = try PolicyInstance(module: module, policyID: "p", config: "{}")
        }
    }

    @Test func initThatTraps() throws {
        let wat = policyWAT(functions: benign).replacingOccurrences(
            of: "(result i32) (i32.const 1024))",
            with: "(result i32) unreachable)"
        )
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "p.wasm", limits: .forTests)
        do {
            _ = try PolicyInstance(module: module, policyID: "p", config: "{}")
            Issue.record("init trapped, yet the instance was made")
        } catch {
            #expect(error.kind == .initFailed && error.message.contains("unreachable"), "\(error)")
        }
    }
}
