// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import Foundation
import JesterConfig
import JesterProxy
import JesterWasm

/// `jester policy`: tools for policy authors (jester-policy(7)): a scaffold, and an offline run of a module
/// against a recorded request.
struct Policy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scaffold a Wasm policy, or run one offline against a recorded request.",
        subcommands: [New.self, Test.self])

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create NAME/ with a policy in C, its manifest, a build script, a recorded request and a test.")

        @Argument(help: "The policy's name: lowercase letters, digits, '-' and '_'.")
        var name: String

        @Option(help: "Where to create it (default: ./NAME).")
        var directory: String?

        @Option(help: "The SDK directory (with c/jester_policy.h); default: $JESTER_SDK, /usr/share/jester/sdk, or the SDK of the source tree this jester was built in.")
        var sdk: String?

        func validate() throws {
            guard !name.isEmpty, name.count <= 64,
                name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
            else { throw ValidationError("the name must be 1-64 lowercase letters, digits, '-' or '_'") }
        }

        func run() throws {
            let target = directory ?? name
            let files = FileManager.default
            guard !files.fileExists(atPath: target) else {
                throw ValidationError("\(target) exists already; choose another --directory")
            }
            guard let sdk = PolicyScaffold.findSDK(sdk) else {
                throw ValidationError(
                    "no SDK found (c/jester_policy.h): give --sdk DIR or set JESTER_SDK (the source tree's SDK/)")
            }
            try files.createDirectory(atPath: target + "/sdk", withIntermediateDirectories: true)
            for file in ["jester_policy.h", "jester_policy.c"] {
                try files.copyItem(atPath: "\(sdk)/c/\(file)", toPath: "\(target)/sdk/\(file)")
            }
            for (file, text) in PolicyScaffold.files(name: name) {
                try text.write(toFile: "\(target)/\(file)", atomically: true, encoding: .utf8)
            }
            for script in ["build.sh", "test.sh"] {
                try files.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(target)/\(script)")
            }
            print("created \(target)/: policy.c, policy.json, build.sh, request.json, test.sh, sdk/")
            print("next: cd \(target) && ./build.sh && ./test.sh")
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run MODULE's stages on a recorded request (and response) and print what each did.",
            discussion: """
                The request file is JSON: {"method": "GET", "path": "/", "query": "", "scheme": "http", \
                "authority": "example.com", "client_address": "192.0.2.1", "headers": [["name", "value"]], \
                "body": "text", "route": "app", "response": {"status": 200, "headers": [...], "body": "..."}}; \
                every key is optional. The stages the module implements run in order (pre_route, pre_upstream, \
                post_response) with one metadata bag, as a request would meet them. Exit status 1 when a call \
                failed (the request would be refused with the policy's error_status).
                """)

        @Argument(help: "The policy's Wasm module.")
        var module: String

        @Option(help: "The recorded request (JSON).")
        var request: String

        @Option(help: "The policy's configuration (JSON text) handed to its init.")
        var config: String = "{}"

        @Option(help: "Run only this stage: pre_route, pre_upstream or post_response.")
        var stage: String?

        @Flag(help: "Print JSON lines instead of text.")
        var json = false

        func run() throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: request))
            guard let recorded = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ValidationError("\(request) must hold a JSON object")
            }
            var settings = PolicySettings(name: "test", module: module)
            settings.readsBody = true
            settings.config = config
            let loaded: PolicyInstance
            do {
                let policyModule = try PolicyModule.load(path: module, limits: PolicyLimits(settings))
                loaded = try PolicyInstance(module: policyModule, policyID: "test", config: config)
            } catch {
                FileHandle.standardError.write(Data("jester policy test: \(error.message)\n".utf8))
                throw ExitCode(1)
            }
            var stages = PolicyStage.allCases.filter { loaded.module.stages.contains($0) }
            if let stage {
                guard let only = PolicyStage.allCases.first(where: { "\($0)" == stage }) else {
                    throw ValidationError("--stage must be pre_route, pre_upstream or post_response")
                }
                stages = [only]
            }
            var metadata = PolicyMetadata()
            var failed = false
            for stage in stages {
                let context = PolicyScaffold.context(recorded, stage: stage)
                let outcome = loaded.run(stage, context: context, metadata: &metadata)
                if case .failed = outcome { failed = true }
                print(PolicyReport.describe(stage: stage, outcome: outcome, logs: loaded.lastLogs, json: json))
                if case .respond = outcome { break }
                if case .deny = outcome { break }
                if case .failed = outcome { break }
            }
            if !metadata.entries.isEmpty {
                print(json ? PolicyReport.jsonLine(["metadata": metadata.entries])
                    : "metadata: " + metadata.entries.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                        .joined(separator: " "))
            }
            if failed { throw ExitCode(1) }
        }
    }
}
