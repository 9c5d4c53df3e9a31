// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The part of the configuration a control plane owns (issue 25): routes, upstreams, filters and policies, as one
/// JSON document with a version, laid over the bootstrap file.
///
/// The document's keys and values are the configuration file's, in JSON (`{"routes": [{"name": "api",
/// "path_prefix": "/api/", "upstream": "api"}], "upstreams": {"api": {"targets": ["10.0.0.5:8080"]}}}`), and the
/// same decoder checks them, so a snapshot is accepted or refused exactly as the same tables in a file would be;
/// its errors point at the field with a JSON pointer (`snapshot 42#/routes/0/upstream`).
///
/// Precedence: each key the snapshot sets replaces the bootstrap file's whole value for that key (its routes
/// replace the file's routes; keys it leaves out stay as the file has them). Everything else (listeners and their
/// TLS files, the master's own settings, logging, limits, the admin API) is the bootstrap file's alone: a snapshot
/// that sets it is refused, with the reason, and the configuration in use stays. So are the upstreams, filters
/// and policies the file's listeners name: they stay the file's, and a snapshot may not redefine them.
///
/// What a control plane may not reach through the keys it owns: the host's environment (`${VAR}` is not expanded
/// in a snapshot) and the host's files. The master runs as root and would read, serve or send any file a snapshot
/// named, so a file in a snapshot (an error page, a secret file, an upstream's TLS CA or client certificate) is a
/// relative name, without `..`, read from the one directory the bootstrap's `[control_plane] files` sets aside
/// (refused where it sets none); an absolute path is always refused, and so is a policy module.
public struct ConfigSnapshot: Sendable, Equatable {
    /// The top-level keys a snapshot may set.
    public static let dynamicKeys: Set<String> = ["routes", "upstreams", "filters", "policies"]

    /// The control plane's name for this version; diagnostics name the snapshot by it.
    public var version: String
    /// The JSON document (UTF-8).
    public var document: [UInt8]

    public init(version: String, document: [UInt8]) {
        self.version = version
        self.document = document
    }

    /// What diagnostics call the document: `snapshot <version>`, control characters shown as `?`.
    var name: String {
        "snapshot " + String(String.UnicodeScalarView(version.unicodeScalars.map {
            $0.properties.generalCategory == .control ? "?" : $0
        }))
    }

    /// One JSON pointer token for `key` (RFC 6901 §3: `~` as `~0`, `/` as `~1`), escaped scalar by scalar.
    public static func pointerToken(_ key: String) -> String {
        ConfigNode.escapedPointerToken(key)
    }

    /// Why a path in a snapshot is refused.
    static func noHostFiles(_ path: String) -> String {
        "a snapshot cannot name files on the host ('\(path)'): only a relative name, without '..', of a file in "
            + "the directory the bootstrap's [control_plane] files sets aside"
    }

    /// Why a snapshot's relative file name is refused where the bootstrap set no directory aside.
    static func noFilesDirectory(_ path: String) -> String {
        "a snapshot names the file '\(path)', but this bootstrap file's [control_plane] sets no 'files' directory "
            + "to read it from"
    }

    /// The upstreams, filters and policies the bootstrap file's listeners name, by snapshot key, with the
    /// listener naming each: they stay the file's.
    static func namesListenersUse(_ listeners: ConfigNode?) -> [String: [String: String]] {
        var used: [String: [String: String]] = [:]
        guard case .array(let entries)? = listeners?.value else { return used }
        for entry in entries {
            guard case .table(let listener) = entry.value else { continue }
            let listenerName: String
            if case .string(let name)? = listener["name"]?.value { listenerName = name } else { listenerName = "?" }
            if case .string(let upstream)? = listener["upstream"]?.value {
                used["upstreams", default: [:]][upstream] = listenerName
            }
            if case .array(let filters)? = listener["filters"]?.value {
                for case .string(let filter) in filters.map(\.value) { used["filters", default: [:]][filter] = listenerName }
            }
            if case .array(let policies)? = listener["policies"]?.value {
                for attachment in policies {
                    guard case .table(let fields) = attachment.value,
                        case .string(let policy)? = fields["policy"]?.value
                    else { continue }
                    used["policies", default: [:]][policy] = listenerName
                }
            }
        }
        return used
    }

    /// "upstream" for "upstreams", as messages say one of them.
    static func singular(_ key: String) -> String {
        switch key {
        case "policies": return "policy"
        default: return String(key.dropLast())
        }
    }
}

extension ConfigNode {
    /// Lays `snapshot` over this (the bootstrap file's, already interpolated) tree: each dynamic key it sets
    /// replaces the file's. Problems with the document itself (not JSON, not an object, a key it may not set) are
    /// added to `diagnostics`; the values are checked later, by the decoder, as the file's are.
    mutating func overlay(_ snapshot: ConfigSnapshot, diagnostics: inout [ConfigDiagnostic]) {
        let documentLocation = SourceLocation(file: snapshot.name, line: 0, column: 0, pointer: "")
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(snapshot.document)
        } catch {
            diagnostics.append(ConfigDiagnostic(documentLocation, "invalid JSON: \(error)"))
            return
        }
        var ordinal = 0
        let node = ConfigNode(
            json: tree, pointer: "", file: snapshot.name, ordinal: &ordinal, diagnostics: &diagnostics)
        guard case .table(let members) = node.value else {
            diagnostics.append(ConfigDiagnostic(documentLocation,
                "a snapshot is a JSON object of routes, upstreams, filters and policies, not \(node.typeName)"))
            return
        }
        guard case .table(var mine) = value else { return }
        let hostOwned = ConfigSnapshot.namesListenersUse(mine["listeners"])
        for key in members.keys.sorted() {
            var member = members[key]!
            if Self.isDynamic(key) {
                if let owned = hostOwned[key], case .table(var entries) = member.value {
                    let filesEntries: [String: ConfigNode]
                    if case .table(let table)? = mine[key]?.value { filesEntries = table } else { filesEntries = [:] }
                    for (name, listener) in owned.sorted(by: { $0.key < $1.key }) {
                        if let redefined = entries[name] {
                            diagnostics.append(ConfigDiagnostic(redefined.location,
                                "\(ConfigSnapshot.singular(key)) '\(name)' is the bootstrap file's (its listener "
                                    + "'\(listener)' uses it); a snapshot cannot redefine it"))
                        }
                        entries[name] = filesEntries[name]
                    }
                    member.value = .table(entries)
                }
                mine[key] = member
            } else if ConfigSchema.root.fields.contains(where: { $0.name == key }) {
                diagnostics.append(ConfigDiagnostic(member.location,
                    "'\(key)' is the bootstrap file's to set, not a snapshot's (a snapshot sets "
                        + "\(ConfigSnapshot.dynamicKeys.sorted().joined(separator: ", ")))"))
            } else {
                var message = "unknown key '\(key)'"
                if let close = Suggestion.closest(to: key, among: Array(ConfigSnapshot.dynamicKeys)) {
                    message += " (did you mean '\(close)'?)"
                }
                diagnostics.append(ConfigDiagnostic(member.location, message))
            }
        }
        value = .table(mine)
    }

    private static func isDynamic(_ key: String) -> Bool { ConfigSnapshot.dynamicKeys.contains(key) }

    /// A JSON value as a located node: its location is its JSON pointer, and `ordinal` (its place in a walk of
    /// the document, members by sorted name) stands in for the line, so diagnostics come in a fixed order.
    /// null and numbers no key could hold are refused here, where they are seen: a policy's free-form `config`
    /// would otherwise take them as strings.
    init(json: JSONTree, pointer: String, file: String, ordinal: inout Int, diagnostics: inout [ConfigDiagnostic]) {
        ordinal += 1
        let location = SourceLocation(file: file, line: ordinal, column: 0, pointer: pointer)
        switch json {
        case .null:
            diagnostics.append(ConfigDiagnostic(location, "null is not a configuration value (leave the key out)"))
            self.init(value: .other("null"), location: location)
        case .bool(let flag):
            self.init(value: .boolean(flag), location: location)
        case .number(let text):
            if let integer = Int(text) {
                self.init(value: .integer(integer), location: location)
            } else if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let number = Double(text) {
                self.init(value: .float(number), location: location)
            } else {
                diagnostics.append(ConfigDiagnostic(location, "\(text) is out of range"))
                self.init(value: .other("a number out of range"), location: location)
            }
        case .string(let text):
            self.init(value: .string(text), location: location)
        case .array(let elements):
            var nodes: [ConfigNode] = []
            nodes.reserveCapacity(elements.count)
            for (index, element) in elements.enumerated() {
                nodes.append(ConfigNode(
                    json: element, pointer: pointer + "/\(index)", file: file, ordinal: &ordinal,
                    diagnostics: &diagnostics))
            }
            self.init(value: .array(nodes), location: location)
        case .object(let members):
            var children: [String: ConfigNode] = [:]
            // Sorted, so the ordinals (and the order diagnostics come in) do not depend on hashing.
            for key in members.keys.sorted() {
                children[key] = ConfigNode(
                    json: members[key]!, pointer: pointer + "/" + Self.escapedPointerToken(key), file: file,
                    ordinal: &ordinal, diagnostics: &diagnostics)
            }
            self.init(value: .table(children), location: location)
        }
    }

    /// RFC 6901 §3: `~` is written `~0` and `/` is written `~1` inside a reference token.
    static func escapedPointerToken(_ key: String) -> String {
        var token = String.UnicodeScalarView()
        for scalar in key.unicodeScalars {
            switch scalar {
            case "~": token.append(contentsOf: "~0".unicodeScalars)
            case "/": token.append(contentsOf: "~1".unicodeScalars)
            default: token.append(scalar)
            }
        }
        return String(token)
    }
}
