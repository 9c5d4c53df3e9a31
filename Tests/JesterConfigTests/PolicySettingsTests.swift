// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[policies.NAME]` and the `policies` attachments of listeners and routes: decoding, the module read into the
/// configuration, the loader's policy check (errors at the module line or at the attachment), and the dump.
@Suite struct PolicySettingsTests {
    /// A directory with a stand-in module (the engine's check is the test's closure here; the real one is the
    /// `jester` executable's, tested live).
    static let directory: String = {
        let path = NSTemporaryDirectory() + "jester-policy-settings-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path + "/p.wasm", contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0]))
        return path
    }()
    static var file: String { directory + "/jester.toml" }

    static func text(_ listenerPolicies: String = "", route: String = "", definitions: String = "") -> String {
        """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        \(listenerPolicies)

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [[routes]]
        name = "app"
        upstream = "app"
        \(route)

        \(definitions)
        """
    }

    static func load(
        _ text: String, check: (@Sendable (PolicySettings) -> PolicyCheckResult)? = nil
    ) throws -> Configuration {
        try ConfigLoader(environment: [:], policyCheck: check).load(text: text, file: file)
    }

    static func messages(_ text: String, check: (@Sendable (PolicySettings) -> PolicyCheckResult)? = nil) -> [String] {
        do {
            _ = try load(text, check: check)
            return []
        } catch let error as ConfigError {
            return error.diagnostics.map { "\($0.location.line): \($0.message)" }
        } catch {
            return ["\(error)"]
        }
    }

    @Test func decodesDefinitionsAndAttachmentsInOrder() throws {
        let configuration = try Self.load(Self.text(
            #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            route: #"policies = [{ policy = "p", stage = "post_response" }, { policy = "q", stage = "pre_upstream" }]"#,
            definitions: """
                [policies.p]
                module = "p.wasm"
                config = { fields = ["a", "b"], depth = 2, nested = { on = true } }
                read_body = true
                body_limit = "64KiB"
                timeout = "20ms"
                deny_status = 401

                [policies.q]
                module = "\(Self.directory)/p.wasm"
                config = '[1, 2]'
                """))
        let p = try #require(configuration.policy(named: "p"))
        // Relative to the file, read into the configuration.
        #expect(p.module == Self.directory + "/p.wasm")
        #expect(p.moduleBytes.count == 8)
        #expect(p.config == #"{"depth":2,"fields":["a","b"],"nested":{"on":true}}"#)
        #expect(p.readsBody && p.bodyLimit == 64 << 10 && p.timeout == .milliseconds(20) && p.denyStatus == 401)
        #expect(configuration.policy(named: "q")?.config == "[1, 2]")
        #expect(configuration.listeners[0].policies == [PolicyAttachment(policy: "p", stage: .preRoute)])
        let route = configuration.routes[0]
        #expect(configuration.policyChain(for: route, listener: "web", stage: .postResponse).map(\.name) == ["p"])
        #expect(configuration.policyChain(for: route, listener: "web", stage: .preUpstream).map(\.name) == ["q"])
        #expect(configuration.policyChain(for: nil, listener: "web", stage: .preRoute).map(\.name) == ["p"])
    }

    @Test func mistakesAreReportedWhereTheyAre() {
        let definitions = "[policies.p]\nmodule = \"p.wasm\""
        #expect(Self.messages(Self.text(route: #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            definitions: definitions)).contains { $0.contains("pre_route policies run before a route is chosen") })
        #expect(Self.messages(Self.text(route: #"policies = [{ policy = "px", stage = "pre_upstream" }]"#,
            definitions: definitions)).contains { $0.contains("attaches policy 'px', which is not defined") })
        #expect(Self.messages(Self.text(route: #"policies = [{ policy = "p", stage = "later" }]"#,
            definitions: definitions)).contains { $0.contains("stage") })
        #expect(Self.messages(Self.text(definitions: "[policies.p]\nmodule = \"missing.wasm\"\n"
            + "[policies.x]\nmodule = \"p.wasm\"")).contains { $0.hasPrefix("15: ") && $0.contains("does not exist") })
        #expect(Self.messages(Self.text(definitions: "[policies.p]\nmodule = \"p.wasm\"\nconfig = '{oops'"))
            .contains { $0.contains("must be JSON text") })
        #expect(Self.messages(Self.text(definitions: "[policies.p]\nmodule = \"p.wasm\"\ntimeout = \"1m\""))
            .contains { $0.contains("'timeout' must be between 1ms and 10s") })
    }

    @Test func theEnginesVerdictIsReportedAtTheModuleOrTheAttachment() throws {
        let text = Self.text(
            route: #"policies = [{ policy = "p", stage = "post_response" }]"#,
            definitions: "[policies.p]\nmodule = \"p.wasm\"")
        let refusing = Self.messages(text) { _ in .invalid("init refused the configuration: no") }
        #expect(refusing == ["15: policy 'p': init refused the configuration: no"])
        let preRouteOnly = Self.messages(text) { _ in .valid(stages: [.preRoute], digest: "ab") }
        #expect(preRouteOnly.count == 1 && preRouteOnly[0].hasPrefix("12: "))
        #expect(preRouteOnly[0].contains("implements only pre_route"))
        let configuration = try Self.load(text) { _ in .valid(stages: [.postResponse], digest: "ab12") }
        #expect(configuration.policies[0].moduleDigest == "ab12")
    }

    @Test func anUnattachedPolicyIsAWarning() throws {
        let configuration = try Self.load(Self.text(definitions: "[policies.p]\nmodule = \"p.wasm\""))
        #expect(configuration.warnings.contains { $0.message.contains("policy 'p' is defined, but no listener") })
    }

    @Test func theDumpLoadsBackEqualAndShowsNoModuleBytes() throws {
        let configuration = try Self.load(Self.text(
            #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            definitions: "[policies.p]\nmodule = \"p.wasm\"\nconfig = { secret = \"s3\" }\nfuel = 5000"))
        let again = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: Self.file)
        #expect(again.hash == configuration.hash)
        let shown = configuration.redactingSecrets()
        #expect(shown.policies[0].moduleBytes.isEmpty && !shown.policies[0].config.contains("s3"))
    }

    @Test func aChangedModuleChangesTheConfigurationsHash() throws {
        // (Its own module file: the other tests run in parallel.)
        let path = Self.directory + "/changing.wasm"
        FileManager.default.createFile(atPath: path, contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0]))
        let text = Self.text(
            #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            definitions: "[policies.p]\nmodule = \"changing.wasm\"")
        let before = try Self.load(text).hash
        FileManager.default.createFile(atPath: path, contents: Data([0, 0x61, 0x73, 0x6D, 1, 0, 0, 0, 0]))
        #expect(try Self.load(text).hash != before)
    }
}

/// The JSON Schema subset a policy's manifest declares for its configuration.
@Suite struct JSONSchemaCheckTests {
    static func problems(_ json: String, _ schema: String) -> [String] {
        let value = try! JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        let schema = try! JSONSerialization.jsonObject(with: Data(schema.utf8))
        return JSONSchemaCheck.problems(value, schema: schema)
    }

    static let schema = """
        {"type": "object", "required": ["fields"], "additionalProperties": false,
         "properties": {"fields": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "minItems": 1},
                        "depth": {"type": "integer", "minimum": 1, "maximum": 8},
                        "mode": {"enum": ["strict", "lax"]}, "on": {"type": "boolean"}}}
        """

    @Test func aValidConfigurationPasses() {
        #expect(Self.problems(#"{"fields": ["ssn"], "depth": 2, "mode": "lax", "on": true}"#, Self.schema).isEmpty)
    }

    @Test func eachProblemNamesItsMember() {
        #expect(Self.problems(#"{"depth": 2}"#, Self.schema) == [#"at /: missing required member "fields""#])
        #expect(Self.problems(#"{"fields": ["SSN", 3]}"#, Self.schema) == [
            "at /fields/0: must match ^[a-z]+$", "at /fields/1: expected string, not a number",
        ])
        #expect(Self.problems(#"{"fields": ["a"], "depth": 9}"#, Self.schema) == ["at /depth: must be ≤ 8"])
        #expect(Self.problems(#"{"fields": ["a"], "depth": 1.5}"#, Self.schema)
            == ["at /depth: expected integer, not a number"])
        #expect(Self.problems(#"{"fields": ["a"], "on": 1}"#, Self.schema) == ["at /on: expected boolean, not a number"])
        #expect(Self.problems(#"{"fields": ["a"], "mode": "x"}"#, Self.schema)
            == [#"at /mode: must be one of "strict", "lax""#])
        #expect(Self.problems(#"{"fields": [], "extra": 1}"#, Self.schema).count == 2)
        #expect(Self.problems("[]", Self.schema) == ["at /: expected object, not an array"])
    }
}

extension PolicySettingsTests {
    @Test func aManifestsSchemaChecksTheConfigurationWhereItIsWritten() throws {
        let manifest = Self.directory + "/manifest.json"
        try #"{"name": "p", "config_schema": {"type": "object", "required": ["fields"]}}"#
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let refused = Self.messages(Self.text(
            #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            definitions: "[policies.p]\nmodule = \"p.wasm\"\nmanifest = \"manifest.json\"\nconfig = { depth = 1 }"))
        #expect(refused == [#"17: policy 'p': config at /: missing required member "fields" (config_schema of "#
            + manifest + ")"])
        let accepted = try Self.load(Self.text(
            #"policies = [{ policy = "p", stage = "pre_route" }]"#,
            definitions: "[policies.p]\nmodule = \"p.wasm\"\nmanifest = \"manifest.json\"\nconfig = { fields = \"a\" }"))
        #expect(accepted.policies[0].manifest == manifest)
    }
}

extension PolicySettingsTests {
    @Test func routesAskForPolicyTags() throws {
        let configuration = try Self.load(Self.text(route: #"policy_tags = ["beta", "eu-1"]"#))
        #expect(configuration.routes[0].match.policyTags == ["beta", "eu-1"])
        let again = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: Self.file)
        #expect(again.routes[0].match.policyTags == ["beta", "eu-1"])
        #expect(Self.messages(Self.text(route: #"policy_tags = ["no spaces"]"#))
            == ["12: 'no spaces' is not a tag (letters, digits, '-', '_' and '.')"])
    }
}

extension PolicySettingsTests {
    @Test func aRouteOptsIntoTheReResolvePassWhereAPreUpstreamPolicyRuns() throws {
        let definitions = "[policies.p]\nmodule = \"p.wasm\""
        let own = try Self.load(Self.text(
            route: #"policy_reroute = true"# + "\n" + #"policies = [{ policy = "p", stage = "pre_upstream" }]"#,
            definitions: definitions))
        #expect(own.routes[0].policyReroute)
        let again = try ConfigLoader(environment: [:]).load(text: own.renderTOML(), file: Self.file)
        #expect(again.routes[0].policyReroute && again.hash == own.hash)
        // The listener's pre_upstream policy runs on the route too.
        let listeners = try Self.load(Self.text(
            #"policies = [{ policy = "p", stage = "pre_upstream" }]"#, route: "policy_reroute = true",
            definitions: definitions))
        #expect(listeners.routes[0].policyReroute)
        #expect(try !Self.load(Self.text()).routes[0].policyReroute)
        // Nothing could ask for another route: a mistake, said where it is.
        #expect(Self.messages(Self.text(
            route: #"policy_reroute = true"# + "\n" + #"policies = [{ policy = "p", stage = "post_response" }]"#,
            definitions: definitions))
            == ["12: route 'app' sets policy_reroute, but no pre_upstream policy runs on it to choose another route"])
    }
}
