// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterWasm

/// What `jester policy new` writes, and how `jester policy test` reads a recorded request.
enum PolicyScaffold {
    /// The SDK to copy the header and runtime from: the one given, $JESTER_SDK, the package's, or the source
    /// tree's this binary was built in (found by walking up from the executable).
    static func findSDK(_ given: String?) -> String? {
        var candidates = [given, ProcessInfo.processInfo.environment["JESTER_SDK"], "/usr/share/jester/sdk"]
            .compactMap { $0 }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(directory.appendingPathComponent("SDK").path)
            directory = directory.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/c/jester_policy.h") }
    }

    /// The scaffold's files by name.
    static func files(name: String) -> [(String, String)] {
        [
            ("policy.c", policySource(name)),
            ("policy.json", manifest(name)),
            ("build.sh", buildScript(name)),
            ("request.json", request),
            ("test.sh", testScript(name)),
        ]
    }

    private static func policySource(_ name: String) -> String {
        """
        // SPDX-License-Identifier: Apache-2.0
        //
        // \(name): a Jester policy (jester-policy(7)). As scaffolded it refuses requests without the field its
        // configuration names (pre_route) and marks every response (post_response).
        // Configuration: {"required_header": "x-api-key", "response_header": "x-policy"}
        #include "jester_policy.h"

        static jp_str required, marker;

        // init: check the configuration here; an error refuses the configuration when Jester loads it.
        static int setup(jp_str config) {
            if (!jp_json_string(config, "required_header", &required)) required = jp_cstr("x-api-key");
            if (!jp_json_string(config, "response_header", &marker)) marker = jp_cstr("x-policy");
            if (required.len == 0 || required.len > 64) {
                jp_init_error("required_header must be 1-64 characters");
                return 1;
            }
            return 0;
        }

        static void pre_route(const jp_context *ctx) {
            for (uint32_t i = 0; i < ctx->request_headers.len; i++) {
                jp_str field = ctx->request_headers.ptr[i].name;
                if (field.len == required.len && __builtin_memcmp(field.ptr, required.ptr, field.len) == 0) return;
            }
            jp_respond(401, "credentials required\\n");
            jp_respond_header("www-authenticate", "ApiKey");
        }

        static void post_response(const jp_context *ctx) {
            (void)ctx;
            jp_set_header_str(marker, jp_cstr("\(name)"));
        }

        JESTER_POLICY_INIT(setup)
        JESTER_POLICY_PRE_ROUTE(pre_route)
        JESTER_POLICY_POST_RESPONSE(post_response)

        """
    }

    private static func manifest(_ name: String) -> String {
        """
        {
          "name": "\(name)",
          "version": "0.1.0",
          "module": "\(name).wasm",
          "abi": "jester:policy@1.0.0",
          "stages": ["pre_route", "post_response"],
          "config_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
              "required_header": {"type": "string", "minLength": 1, "maxLength": 64},
              "response_header": {"type": "string", "minLength": 1}
            },
            "additionalProperties": false
          },
          "example": {
            "policy": "[policies.\(name)]\\nmodule = \\"/etc/jester/policies/\(name).wasm\\"\\nconfig = { required_header = \\"x-api-key\\" }",
            "attach": "policies = [{ policy = \\"\(name)\\", stage = \\"pre_route\\" }]"
          }
        }

        """
    }

    private static func buildScript(_ name: String) -> String {
        """
        #!/bin/sh
        # Builds \(name).wasm with clang (--target=wasm32), or zig: ./build.sh zig
        set -eu
        cd "$(dirname "$0")"
        flags="-O2 -ffreestanding -nostdlib -mbulk-memory -Wall -Werror -I sdk -Wl,--no-entry -Wl,--strip-debug"
        if [ "${1:-clang}" = zig ]; then
            python3 -m ziglang cc --target=wasm32-freestanding $flags -o \(name).wasm policy.c sdk/jester_policy.c
        else
            clang="${CLANG:-clang}"
            [ -x /opt/swift/usr/bin/clang ] && [ -z "${CLANG:-}" ] && clang=/opt/swift/usr/bin/clang
            "$clang" --target=wasm32 $flags -o \(name).wasm policy.c sdk/jester_policy.c
        fi
        echo "built \(name).wasm"

        """
    }

    private static let request = """
        {
          "method": "GET",
          "path": "/accounts/42",
          "query": "",
          "authority": "api.example.com",
          "client_address": "192.0.2.10",
          "headers": [["accept", "application/json"]],
          "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": "{}"}
        }

        """

    private static func testScript(_ name: String) -> String {
        """
        #!/bin/sh
        # Runs \(name).wasm offline on request.json: a request without x-api-key is answered 401 at pre_route.
        set -eu
        cd "$(dirname "$0")"
        jester="${JESTER:-jester}"
        output="$("$jester" policy test \(name).wasm --request request.json)"
        echo "$output"
        echo "$output" | grep -q "pre_route: respond 401" || { echo "FAIL: expected a 401 at pre_route" >&2; exit 1; }
        echo "ok"

        """
    }

    // MARK: Recorded requests

    /// The context `stage` gets from a recorded request (`jester policy test`).
    static func context(_ recorded: [String: Any], stage: PolicyStage) -> PolicyContext {
        func text(_ key: String, in object: [String: Any] = recorded) -> String? { object[key] as? String }
        func fields(_ value: Any?) -> [PolicyField] {
            (value as? [[Any]] ?? []).compactMap { pair in
                guard pair.count == 2, let name = pair[0] as? String, let value = pair[1] as? String else { return nil }
                return PolicyField(name.lowercased(), value)
            }
        }
        var context = PolicyContext(
            method: text("method") ?? "GET", scheme: text("scheme") ?? "http", authority: text("authority") ?? "",
            path: text("path") ?? "/", query: text("query") ?? "", clientAddress: text("client_address") ?? "",
            requestHeaders: fields(recorded["headers"]))
        if stage != .preRoute {
            context.route = text("route") ?? "app"
            if stage == .preUpstream { context.requestBody = text("body").map { Array($0.utf8) } }
        }
        if stage == .postResponse, let response = recorded["response"] as? [String: Any] {
            context.status = response["status"] as? Int ?? 200
            context.responseHeaders = fields(response["headers"])
            context.responseBody = text("body", in: response).map { Array($0.utf8) }
        } else if stage == .postResponse {
            context.status = 200
        }
        return context
    }
}

/// How `jester policy test` prints a stage's outcome.
enum PolicyReport {
    static func describe(stage: PolicyStage, outcome: PolicyOutcome, logs: [PolicyLogLine], json: Bool) -> String {
        var object: [String: Any] = ["stage": "\(stage)"]
        var line = "\(stage): "
        switch outcome {
        case .proceed(let mutations):
            object["decision"] = "proceed"
            let changes = describe(mutations)
            object["changes"] = changes
            line += "proceed" + (changes.isEmpty ? " (no changes)" : "\n  " + changes.joined(separator: "\n  "))
        case .proceedResponse(let mutations):
            object["decision"] = "proceed"
            var changes = mutations.fields.map(describe)
            if let body = mutations.body { changes.append("set-body (\(body.count) bytes): \(preview(body))") }
            object["changes"] = changes
            line += "proceed" + (changes.isEmpty ? " (no changes)" : "\n  " + changes.joined(separator: "\n  "))
        case .respond(let response):
            object["decision"] = "respond"
            object["status"] = response.status
            object["headers"] = response.fields.map { [$0.name, $0.value] }
            object["body"] = String(decoding: response.body, as: UTF8.self)
            line += "respond \(response.status)"
            for field in response.fields { line += "\n  \(field.name): \(field.value)" }
            if !response.body.isEmpty { line += "\n  body (\(response.body.count) bytes): \(preview(response.body))" }
        case .deny(let reason):
            object["decision"] = "deny"
            object["reason"] = reason
            line += "deny" + (reason.isEmpty ? "" : ": \(reason)")
        case .failed(let failure):
            object["decision"] = "failure"
            object["kind"] = failure.kind.rawValue
            object["message"] = failure.message
            line += "FAILED (\(failure.kind.rawValue)): \(failure.message); Jester would refuse the request"
        }
        if !logs.isEmpty {
            object["logs"] = logs.map { ["level": "\($0.level)", "message": $0.message] }
            for log in logs { line += "\n  log \(log.level): \(log.message)" }
        }
        return json ? jsonLine(object) : line
    }

    private static func describe(_ mutations: RequestMutations) -> [String] {
        var changes = mutations.fields.map(describe)
        if let method = mutations.method { changes.append("set-method \(method)") }
        if let path = mutations.path { changes.append("set-path \(path)") }
        if let query = mutations.query { changes.append("set-query \(query)") }
        if let route = mutations.routeHint.route { changes.append("set-route \(route)") }
        for tag in mutations.routeHint.tags { changes.append("add-route-tag \(tag)") }
        if let upstream = mutations.routeHint.upstream { changes.append("set-upstream \(upstream)") }
        if let timeout = mutations.upstreamTimeoutMilliseconds { changes.append("set-upstream-timeout \(timeout)ms") }
        if let retries = mutations.upstreamRetries { changes.append("set-upstream-retries \(retries)") }
        if let body = mutations.body { changes.append("set-body (\(body.count) bytes): \(preview(body))") }
        return changes
    }

    private static func describe(_ edit: FieldEdit) -> String {
        switch edit {
        case .set(let field): "set-header \(field.name): \(field.value)"
        case .add(let field): "add-header \(field.name): \(field.value)"
        case .remove(let name): "remove-header \(name)"
        }
    }

    private static func preview(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(200), as: UTF8.self)
        return text.replacingOccurrences(of: "\n", with: "\\n") + (bytes.count > 200 ? "..." : "")
    }

    static func jsonLine(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
