// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

/// `[policies.NAME]`: a Wasm policy (jester-policy(7)) as a reusable unit: its module, its JSON configuration and
/// the bounds it runs within. Listeners and routes attach it by name, each attachment naming the stage
/// (`PolicyAttachment`), so one module serves several routes and stages with one configuration.
///
/// The loader reads the module's bytes into the configuration (`moduleBytes`): workers never read the file, so a
/// generation runs the module the master validated, and a module replaced on disk takes effect on the next reload
/// only (a respawned worker of the draining generation still gets the old bytes).
public struct PolicySettings: Sendable, Codable, Equatable {
    /// The policy's id: its name in the configuration, its metadata namespace and the tag of its log lines.
    public var name: String
    /// The module's path (absolute; a relative one is resolved against the file that names it).
    public var module: String
    /// The module's bytes, read by the loader (empty in a configuration shown to operators).
    public var moduleBytes: Data
    /// The module's SHA-256, hex: which build a generation runs (`jesterctl status`, the admin API).
    public var moduleDigest: String
    /// The policy's manifest (`manifest`, as `jester policy new` writes one), whose `config_schema` the loader
    /// checks `config` against; nil: none.
    public var manifest: String?
    /// The JSON the policy's `init` gets (`config`, a TOML value rendered as JSON; `{}` when absent).
    public var config: String
    /// A version the operator gives the policy, for status and logs only.
    public var version: String?
    /// The status a `deny` answers with (`deny_status`).
    public var denyStatus: Int
    /// The status a failed call answers with: a trap, fuel or memory exhausted, a malformed result
    /// (`error_status`; fail closed).
    public var errorStatus: Int
    /// Whether the policy reads bodies (`read_body`): its request body at pre-upstream and response body at
    /// post-response are buffered, up to `bodyLimit`.
    public var readsBody: Bool
    /// The most body handed to the policy, and the most it may answer with (`body_limit`).
    public var bodyLimit: Int64
    /// Fuel per call (`fuel`: about one unit per Wasm instruction).
    public var fuel: Int64
    /// The most linear memory an instance may have (`memory`).
    public var memoryLimit: Int64
    /// The wall-clock bound of one call (`timeout`).
    public var timeout: Duration
    /// Failed calls in a row after which the policy is reported failed (`failure_threshold`); it still answers
    /// every request (fail closed), and recovers at its next successful call.
    public var failureThreshold: Int

    public init(name: String, module: String) {
        self.name = name
        self.module = module
        moduleBytes = Data()
        moduleDigest = ""
        config = "{}"
        denyStatus = 403
        errorStatus = 500
        readsBody = false
        bodyLimit = 1 << 20
        fuel = 10_000_000
        memoryLimit = 16 << 20
        timeout = .milliseconds(50)
        failureThreshold = 10
    }
}

/// Where in a request's life an attached policy runs (the stages of jester-policy(7)).
public enum PolicyStageName: String, Sendable, Codable, Equatable, CaseIterable {
    /// Before routing (listeners only: no route is chosen yet).
    case preRoute = "pre_route"
    /// After the route is chosen, after the route's filters, before the upstream.
    case preUpstream = "pre_upstream"
    /// The upstream's response, before the response filters (compression).
    case postResponse = "post_response"
}

/// One entry of a listener's or route's `policies`: which policy runs at which stage. Entries run in the order
/// written, a listener's before its routes'.
public struct PolicyAttachment: Sendable, Codable, Equatable {
    public var policy: String
    public var stage: PolicyStageName

    public init(policy: String, stage: PolicyStageName) {
        self.policy = policy
        self.stage = stage
    }
}

/// What the loader's policy check found wrong with a policy (its module or its configuration), or the stages its
/// module exports.
public enum PolicyCheckResult: Sendable, Equatable {
    /// The module loads and its `init` accepts the configuration; it implements `stages`; `digest` is its SHA-256.
    case valid(stages: Set<PolicyStageName>, digest: String)
    case invalid(String)
}

extension Configuration {
    /// The policy called `name`.
    public func policy(named name: String) -> PolicySettings? {
        policies.first { $0.name == name }
    }

    /// The policies a request on `route` of `listener` runs at `stage`, in order: the listener's, then the route's.
    public func policyChain(for route: RouteSettings?, listener: String, stage: PolicyStageName) -> [PolicySettings] {
        let listenerEntries = listeners.first { $0.name == listener }?.policies ?? []
        return (listenerEntries + (route?.policies ?? [])).filter { $0.stage == stage }.compactMap { policy(named: $0.policy) }
    }
}

extension ConfigSchema {
    public static let policy = Table(
        "[policies.NAME]",
        [
            Field("module", .string, required: true,
                "The policy's Wasm module (jester-policy(7)); a relative path is relative to this file. Read when the configuration loads: a changed module takes effect on reload."),
            Field("config", .json, default: "{}", "The policy's configuration, handed to its init as JSON."),
            Field("manifest", .string, default: "none",
                "The policy's manifest (JSON, as jester policy new writes it): config is checked against its config_schema (JSON Schema) when the configuration loads; a relative path is relative to this file."),
            Field("version", .string, "A version for status and logs."),
            Field("deny_status", .integer(400...599), default: "403", "The status a deny answers with."),
            Field("error_status", .integer(400...599), default: "500",
                "The status of a request whose policy call failed (a trap, fuel or memory used up, a malformed result): fail closed."),
            Field("read_body", .boolean, default: "false",
                "Hand the policy the request body (pre_upstream) and the response body (post_response), buffered up to body_limit."),
            Field("body_limit", .size, default: "1MiB",
                "The most body the policy reads or answers with; a longer request body gets 413, a longer response the error_status."),
            Field("fuel", .integer(1_000...10_000_000_000), default: "10000000",
                "Fuel per call: about one unit per Wasm instruction."),
            Field("memory", .size, default: "16MiB", "The most linear memory an instance may have."),
            Field("timeout", .duration, default: "50ms", "The wall-clock bound of one call."),
            Field("failure_threshold", .integer(1...1_000_000), default: "10",
                "Failed calls in a row after which the policy is reported failed (jesterctl status); it stays fail closed."),
        ])

    public static let policyAttachment = Table(
        "a policy entry",
        [
            Field("policy", .string, required: true, "A policy ([policies.NAME])."),
            Field("stage", .choice(PolicyStageName.allCases.map(\.rawValue)), required: true,
                "Where it runs: pre_route (listeners only), pre_upstream or post_response."),
        ])
}

/// Where policy definitions and the entries naming them were written.
struct PolicyLocations {
    /// Each `[policies.NAME]` table, and its `module` key.
    var definitions: [String: SourceLocation] = [:]
    var modules: [String: SourceLocation] = [:]
    /// Each policy's `config` key (or its table), where a configuration its schema refuses is reported.
    var configs: [String: SourceLocation] = [:]
    /// Each attachment, with where it was written (listeners' and routes').
    var attachments: [(attachment: PolicyAttachment, location: SourceLocation, owner: String)] = []
}

extension ConfigDecoder {
    /// `[policies.NAME]`, sorted by name.
    mutating func decodePolicies(_ top: inout TableReader) -> [PolicySettings] {
        var policies: [PolicySettings] = []
        for (name, node) in top.map("policies", decoder: &self).sorted(by: { $0.key < $1.key }) {
            policyLocations.definitions[name] = node.location
            if let policy = decodePolicy(name, node) { policies.append(policy) }
        }
        return policies
    }

    private mutating func decodePolicy(_ name: String, _ node: ConfigNode) -> PolicySettings? {
        var schema = ConfigSchema.policy
        schema.title = "[policies.\(name)]"
        guard var table = TableReader(node, schema, decoder: &self) else { return nil }
        guard let path = table.string("module", decoder: &self) else {
            table.finish(decoder: &self)
            return nil
        }
        policyLocations.modules[name] = table.location(of: "module")
        if table.location(of: "module").pointer != nil {
            // A snapshot's policy would have the master load any file on the host.
            report(table.location(of: "module"), ConfigSnapshot.noHostFiles(path))
            table.finish(decoder: &self)
            return nil
        }
        // Absolute from here on: a reload does not depend on the master's working directory.
        var policy = PolicySettings(name: name, module: Self.resolve(path, at: node.location))
        if let manifest = table.string("manifest", decoder: &self) {
            policy.manifest = Self.resolve(manifest, at: node.location)
        }
        policyLocations.configs[name] = node.location
        if let config = table.take("config", decoder: &self) {
            policyLocations.configs[name] = config.location
            switch config.value {
            case .table: policy.config = config.json
            case .string(let text):
                // A string is JSON text (for an array or a number at the top, or JSON kept as it was written).
                if (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) == nil {
                    report(config.location, "'config' of [policies.\(name)] is a string, so it must be JSON text")
                }
                policy.config = text
            default: policy.config = config.json
            }
        }
        policy.version = table.string("version", decoder: &self)
        policy.denyStatus = table.integer("deny_status", decoder: &self) ?? policy.denyStatus
        policy.errorStatus = table.integer("error_status", decoder: &self) ?? policy.errorStatus
        policy.readsBody = table.boolean("read_body", decoder: &self) ?? policy.readsBody
        policy.bodyLimit = table.size("body_limit", decoder: &self) ?? policy.bodyLimit
        if policy.bodyLimit > 64 << 20 {
            report(table.location(of: "body_limit"), "'body_limit' must be at most 64MiB (bodies are held in memory)")
        }
        policy.fuel = Int64(table.integer("fuel", decoder: &self) ?? Int(policy.fuel))
        if let memory = table.size("memory", decoder: &self) {
            if memory < 64 << 10 || memory > 4 << 30 {
                report(table.location(of: "memory"), "'memory' must be between 64KiB and 4GiB")
            }
            policy.memoryLimit = memory
        }
        if let timeout = table.duration("timeout", decoder: &self) {
            if timeout < .milliseconds(1) || timeout > .seconds(10) {
                report(table.location(of: "timeout"), "'timeout' must be between 1ms and 10s")
            }
            policy.timeout = timeout
        }
        policy.failureThreshold = table.integer("failure_threshold", decoder: &self) ?? policy.failureThreshold
        table.finish(decoder: &self)
        return policy
    }

    /// A listener's or route's `policies = [{ policy = "...", stage = "..." }, ...]`.
    mutating func decodePolicyAttachments(_ node: ConfigNode, owner: String) -> [PolicyAttachment] {
        guard case .array(let elements) = node.value else {
            report(node.location, "'policies' of \(owner) must be an array of { policy, stage } tables")
            return []
        }
        var attachments: [PolicyAttachment] = []
        for element in elements {
            guard var table = TableReader(element, ConfigSchema.policyAttachment, decoder: &self) else { continue }
            let policy = table.string("policy", decoder: &self)
            let stage = table.choice("stage", decoder: &self).flatMap(PolicyStageName.init(rawValue:))
            table.finish(decoder: &self)
            guard let policy, let stage else { continue }
            let attachment = PolicyAttachment(policy: policy, stage: stage)
            if attachments.contains(attachment) {
                report(element.location, "policy '\(policy)' is already attached at \(stage.rawValue) in \(owner)")
                continue
            }
            attachments.append(attachment)
            policyLocations.attachments.append((attachment, element.location, owner))
        }
        return attachments
    }

    /// Every attachment names a defined policy, pre_route ones sit on listeners; warns of policies nothing uses.
    mutating func checkPolicyAttachments(_ configuration: Configuration) {
        let defined = configuration.policies.map(\.name)
        var used: Set<String> = []
        for (attachment, location, owner) in policyLocations.attachments {
            used.insert(attachment.policy)
            if !defined.contains(attachment.policy) {
                report(location, "\(owner) attaches policy '\(attachment.policy)', which is not defined"
                    + hint(attachment.policy, defined))
            }
            if attachment.stage == .preRoute, owner.hasPrefix("route") {
                report(location, "pre_route policies run before a route is chosen: attach '\(attachment.policy)' to "
                    + "the listener, or use pre_upstream")
            }
        }
        for policy in configuration.policies where !used.contains(policy.name) {
            let location = policyLocations.definitions[policy.name] ?? SourceLocation(file: "", line: 1, column: 1)
            warnings.append(ConfigDiagnostic(location, "policy '\(policy.name)' is defined, but no listener or route attaches it"))
        }
    }
}

extension ConfigNode {
    /// The value as JSON text (a TOML table as an object, arrays as arrays; dates and the like as strings).
    var json: String {
        switch value {
        case .string(let text): return QuotedString.basic(text)
        case .integer(let number): return String(number)
        case .float(let number): return number.isFinite ? String(number) : "null"
        case .boolean(let flag): return flag ? "true" : "false"
        case .array(let elements): return "[" + elements.map(\.json).joined(separator: ",") + "]"
        case .table(let children):
            return "{" + children.sorted { $0.key < $1.key }.map { QuotedString.basic($0.key) + ":" + $0.value.json }
                .joined(separator: ",") + "}"
        case .other(let text): return QuotedString.basic(text)
        }
    }
}
