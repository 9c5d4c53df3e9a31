// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Reads a configuration file with its includes, interpolates the environment, and validates the result.
///
/// Everything that can be wrong is reported in one `ConfigError`, sorted by file and line, so a reload fails with
/// the whole list and the operator fixes it in one pass.
public struct ConfigLoader: Sendable {
    /// The variables `${VAR}` is resolved against.
    public var environment: [String: String]
    /// Checks a TLS listener's certificates and keys with the TLS library (nil: fine; else the problem and what
    /// it is about). Given by the `jester` executable, so this module and the master stay free of TLS code while a
    /// reload still fails on a certificate OpenSSL would reject.
    public var tlsCheck: (@Sendable (TLSListenerSettings) -> TLSProblem?)?
    /// The same for an upstream's TLS (CA file, client certificate).
    public var upstreamTLSCheck: (@Sendable (UpstreamTLSSettings) -> TLSProblem?)?
    /// Checks a policy (its module, read into `moduleBytes`, and its `config`) with the Wasm engine: the stages
    /// the module exports, or what is wrong. Given by the `jester` executable, like `tlsCheck`.
    public var policyCheck: (@Sendable (PolicySettings) -> PolicyCheckResult)?
    /// What becomes of the files a snapshot names.
    public var snapshotFiles = SnapshotFileCheck.read

    /// How the files a snapshot names are checked.
    public enum SnapshotFileCheck: Sendable {
        /// Read from the bootstrap's `[control_plane] files` (a name where it sets none is refused): a data plane.
        case read
        /// Names checked in form only (relative, no `..`), nothing read: the control plane's check over its
        /// standalone bootstrap, since the files are on the data planes (one that lacks a file refuses the
        /// version, a NACK).
        case formOnly
        /// The same, over a data plane's real bootstrap: names are refused where it sets no `files`.
        case formOnlyWhereTheBootstrapSetsADirectory
    }

    /// The largest policy module read, and the most all modules may take together: they travel to workers inside
    /// the configuration (base64 inside JSON inside a control frame of at most 16 MiB).
    public static let maxModuleSize = 4 << 20
    public static let maxModulesSize = 6 << 20

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        tlsCheck: (@Sendable (TLSListenerSettings) -> TLSProblem?)? = nil,
        upstreamTLSCheck: (@Sendable (UpstreamTLSSettings) -> TLSProblem?)? = nil,
        policyCheck: (@Sendable (PolicySettings) -> PolicyCheckResult)? = nil
    ) {
        self.environment = environment
        self.tlsCheck = tlsCheck
        self.upstreamTLSCheck = upstreamTLSCheck
        self.policyCheck = policyCheck
    }

    /// The bootstrap's `[control_plane] files`, absolute (its decoding reports what is wrong with it).
    static func snapshotFilesDirectory(_ root: ConfigNode) -> String? {
        guard case .table(let top) = root.value, case .table(let table)? = top["control_plane"]?.value,
            let node = table["files"], case .string(let path) = node.value, !path.isEmpty, node.location.pointer == nil
        else { return nil }
        return ConfigDecoder.resolve(path, at: node.location)
    }

    /// Loads `path` and everything it includes.
    public func load(file path: String) throws(ConfigError) -> Configuration {
        let text = try Self.read(path, from: nil)
        return try load(text: text, file: path)
    }

    /// Loads configuration text as if it were the file `file` (includes are resolved relative to it).
    public func load(text: String, file: String) throws(ConfigError) -> Configuration {
        try load(text: text, file: file, snapshot: nil)
    }

    /// Loads the bootstrap file `path` with a control plane's `snapshot` laid over it (`ConfigSnapshot` says
    /// which keys it may set and how they take precedence), checked as one configuration.
    public func load(file path: String, snapshot: ConfigSnapshot) throws(ConfigError) -> Configuration {
        let text = try Self.read(path, from: nil)
        return try load(text: text, file: path, snapshot: snapshot)
    }

    /// The same with the bootstrap file's text given.
    public func load(text: String, file: String, snapshot: ConfigSnapshot?) throws(ConfigError) -> Configuration {
        var root = try ConfigNode.parse(text: text, file: file)
        var diagnostics: [ConfigDiagnostic] = []
        var files = [file]
        var sources = [text]
        if case .table(let top) = root.value, let include = top["include"] {
            // Each file once, however many patterns match it (a second merge would duplicate its routes or
            // report its keys as "already set" at themselves).
            var loaded: Set<String> = [Self.canonical(file)]
            for (pattern, location) in Self.includePatterns(include, &diagnostics) {
                let base = (file as NSString).deletingLastPathComponent
                let absolute = pattern.hasPrefix("/") ? pattern : (base.isEmpty ? pattern : base + "/" + pattern)
                let matches = Self.glob(absolute)
                if matches.isEmpty, !pattern.contains(where: { "*?[".contains($0) }) {
                    // A literal name is a file the operator expects; a glob matching nothing (an empty conf.d) is fine.
                    diagnostics.append(ConfigDiagnostic(location, "included file \(absolute) does not exist"))
                }
                for match in matches where loaded.insert(Self.canonical(match)).inserted {
                    do {
                        let included = try Self.read(match, from: location)
                        var node = try ConfigNode.parse(text: included, file: match)
                        if case .table(var table) = node.value, let nested = table.removeValue(forKey: "include") {
                            diagnostics.append(ConfigDiagnostic(nested.location, "included files cannot include others"))
                            node.value = .table(table)
                        }
                        root.merge(node, diagnostics: &diagnostics)
                        files.append(match)
                        sources.append(included)
                    } catch {
                        diagnostics += error.diagnostics
                    }
                }
            }
        }
        root.interpolate(environment, diagnostics: &diagnostics)
        // After interpolation: the environment fills in the host's file, never a control plane's values.
        if let snapshot { root.overlay(snapshot, diagnostics: &diagnostics) }
        var decoder = ConfigDecoder()
        decoder.checksControlPlaneFiles = snapshotFiles == .read
        if snapshot != nil {
            let directory = Self.snapshotFilesDirectory(root)
            switch snapshotFiles {
            case .read: decoder.snapshotFiles = directory.map { .directory($0) } ?? .refused
            case .formOnly: decoder.snapshotFiles = .unchecked
            case .formOnlyWhereTheBootstrapSetsADirectory: decoder.snapshotFiles = directory == nil ? .refused : .unchecked
            }
        }
        var configuration = decoder.decode(root)
        diagnostics += decoder.diagnostics
        if diagnostics.isEmpty, let upstreamTLSCheck {
            for upstream in configuration.upstreams {
                guard let tls = upstream.tls, let problem = upstreamTLSCheck(tls) else { continue }
                let table = decoder.upstreamTLSLocations[upstream.name]
                    ?? SourceLocation(file: file, line: 1, column: 1)
                let location = Self.location(of: problem, decoder.upstreamCertificateLocations[upstream.name]) ?? table
                diagnostics.append(ConfigDiagnostic(location, "upstream '\(upstream.name)': \(problem)"))
            }
        }
        if diagnostics.isEmpty, let tlsCheck {
            for listener in configuration.listeners {
                guard let tls = listener.tls, tlsCheck(tls) != nil else { continue }
                // Each certificate alone first, to point at the one that is wrong; then the rest (CA, ciphers).
                var located = false
                for (index, certificate) in tls.certificates.enumerated() {
                    var single = tls
                    single.certificates = [certificate]
                    single.clientCertificates = "off"
                    single.ciphers = nil
                    single.cipherSuites = nil
                    guard let problem = tlsCheck(single) else { continue }
                    let entry = decoder.tlsCertificateLocations[listener.name]?[index]
                    let location = Self.location(of: problem, entry) ?? entry?.certificate
                        ?? SourceLocation(file: file, line: 1, column: 1)
                    diagnostics.append(ConfigDiagnostic(location, problem.message))
                    located = true
                }
                if !located, let problem = tlsCheck(tls) {
                    let location = decoder.tlsLocations[listener.name] ?? SourceLocation(file: file, line: 1, column: 1)
                    diagnostics.append(ConfigDiagnostic(location, "listener '\(listener.name)': \(problem)"))
                }
            }
        }
        if diagnostics.isEmpty { loadPolicies(&configuration, decoder.policyLocations, &diagnostics) }
        guard diagnostics.isEmpty else {
            throw ConfigError(diagnostics.sorted { ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column) })
        }
        configuration.files = files
        configuration.warnings = decoder.warnings.sorted {
            ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column)
        }
        configuration.hash = Self.hash(of: configuration)
        return configuration
    }

    /// Reads each policy's module into the configuration and, with `policyCheck`, checks it and the stages it is
    /// attached at; problems are reported at the policy's `module` key, or at the attachment.
    private func loadPolicies(
        _ configuration: inout Configuration, _ locations: PolicyLocations, _ diagnostics: inout [ConfigDiagnostic]
    ) {
        var total = 0
        for index in configuration.policies.indices {
            let name = configuration.policies[index].name
            let path = configuration.policies[index].module
            let location = locations.modules[name] ?? SourceLocation(file: configuration.files.first ?? "", line: 1, column: 1)
            guard let data = FileManager.default.contents(atPath: path) else {
                let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
                diagnostics.append(ConfigDiagnostic(location, "policy '\(name)': module \(path) \(reason)"))
                continue
            }
            guard data.count <= Self.maxModuleSize else {
                diagnostics.append(ConfigDiagnostic(location,
                    "policy '\(name)': module \(path) is \(data.count) bytes; the most is \(Self.maxModuleSize)"))
                continue
            }
            total += data.count
            guard total <= Self.maxModulesSize else {
                diagnostics.append(ConfigDiagnostic(location,
                    "policy '\(name)': the policy modules take more than \(Self.maxModulesSize) bytes together"))
                continue
            }
            configuration.policies[index].moduleBytes = data
            if let manifest = configuration.policies[index].manifest {
                let at = locations.configs[name] ?? location
                for problem in Self.manifestProblems(configuration.policies[index], manifest: manifest) {
                    diagnostics.append(ConfigDiagnostic(at, "policy '\(name)': \(problem)"))
                }
            }
            guard let policyCheck else { continue }
            switch policyCheck(configuration.policies[index]) {
            case .invalid(let problem):
                diagnostics.append(ConfigDiagnostic(location, "policy '\(name)': \(problem)"))
            case .valid(let stages, let digest):
                configuration.policies[index].moduleDigest = digest
                for (attachment, at, owner) in locations.attachments
                where attachment.policy == name && !stages.contains(attachment.stage) {
                    let exported = PolicyStageName.allCases.filter(stages.contains).map(\.rawValue)
                    diagnostics.append(ConfigDiagnostic(at,
                        "\(owner) attaches policy '\(name)' at \(attachment.stage.rawValue), but its module \(path) "
                            + "implements only " + exported.joined(separator: ", ")))
                }
            }
        }
    }

    /// What is wrong with a policy's `config` by its manifest's `config_schema` (or with the manifest itself).
    private static func manifestProblems(_ policy: PolicySettings, manifest: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: manifest) else {
            return ["manifest \(manifest) cannot be read"]
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return ["manifest \(manifest) is not a JSON object"]
        }
        guard let schema = object["config_schema"] else { return [] }
        guard let config = try? JSONSerialization.jsonObject(with: Data(policy.config.utf8), options: .fragmentsAllowed)
        else { return ["'config' is not JSON"] }
        return JSONSchemaCheck.problems(config, schema: schema).map { "config \($0) (config_schema of \(manifest))" }
    }

    /// Where a TLS problem about a certificate entry's file is reported: at `key` for the key, at `cert` for the
    /// certificate; nil for the rest, which the caller reports at its table.
    private static func location(
        of problem: TLSProblem, _ entry: ConfigDecoder.CertificateLocations?
    ) -> SourceLocation? {
        switch problem.subject {
        case .privateKey: return entry?.key
        case .certificate: return entry?.certificate
        case .settings: return nil
        }
    }

    private static func includePatterns(
        _ node: ConfigNode, _ diagnostics: inout [ConfigDiagnostic]
    ) -> [(String, SourceLocation)] {
        guard case .array(let elements) = node.value else {
            diagnostics.append(ConfigDiagnostic(node.location, "'include' must be an array of strings"))
            return []
        }
        return elements.compactMap { element in
            guard case .string(let pattern) = element.value else {
                diagnostics.append(ConfigDiagnostic(element.location, "'include' elements must be strings"))
                return nil
            }
            return (pattern, element.location)
        }
    }

    private static func read(_ path: String, from location: SourceLocation?) throws(ConfigError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? "cannot be read"
            let location = location ?? SourceLocation(file: path, line: 1, column: 1)
            throw ConfigError([ConfigDiagnostic(location, "cannot read \(path): \(reason)")])
        }
        let bytes = [UInt8](data)
        if let offset = firstInvalidUTF8(bytes) {
            // TOML is UTF-8; say where it stops being so instead of "the file isn't in the correct format".
            let lineStart = bytes[..<offset].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
            let line = bytes[..<offset].reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
            throw ConfigError([ConfigDiagnostic(SourceLocation(file: path, line: line, column: offset - lineStart + 1),
                "not valid UTF-8 (configuration files must be UTF-8)")])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The offset of the first byte that is not part of valid UTF-8, or nil.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// A path with symbolic links and `.`/`..` resolved, so one file named two ways is loaded once.
    static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().standardized.path
    }

    /// Files matching a glob pattern, sorted so include order is stable.
    static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
        }
        return paths.sorted()
    }

    /// FNV-1a over the canonical JSON of the effective configuration: stable across whitespace and comment edits,
    /// different for any change that matters.
    static func hash(of configuration: Configuration) -> String {
        var copy = configuration
        copy.files = []
        copy.hash = ""
        copy.warnings = []
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(copy)) ?? Data()
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16).leftPadded(to: 16)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
