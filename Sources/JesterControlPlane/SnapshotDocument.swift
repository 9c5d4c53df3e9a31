// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl

/// One problem with what a client sent, at a field: the JSON pointer (RFC 6901) of the value and what was wrong
/// or expected. The REST API answers a refused change with a list of these.
public struct FieldProblem: Sendable, Equatable, Hashable {
    public var pointer: String
    public var message: String

    public init(pointer: String, message: String) {
        self.pointer = pointer
        self.message = message
    }
}

/// The configuration a control plane owns, as named resources: what one snapshot version holds.
///
/// Its JSON form is a `ConfigSnapshot` document (`{"routes": [...], "upstreams": {...}, ...}`), so the data
/// planes take it as they take any snapshot. Routes are an array in the file (their order breaks ties the router
/// leaves to it), so they are kept in order, each named by its `name`; upstreams, filters and policies are
/// tables by name. A kind the document does not set (`kinds`) stays each data plane's bootstrap file's; a kind
/// it sets, even empty, replaces the file's (`ConfigSnapshot` says how).
public struct SnapshotDocument: Sendable, Equatable {
    /// One resource and its name.
    public struct NamedResource: Sendable, Equatable {
        public var name: String
        public var value: JSONTree
    }

    /// The routes, in order.
    public private(set) var routes: [NamedResource] = []
    /// Upstreams, filters and policies by name.
    private var tables: [ResourceKind: [String: JSONTree]] = [:]
    /// The kinds the document sets.
    public private(set) var kinds: Set<ResourceKind> = []

    /// The empty document of a new control plane: it sets nothing, so every data plane serves its file.
    public init() {}

    /// Reads a document's structure: an object whose members are kinds, routes an array of objects with unique
    /// valid names, the other kinds objects by valid name. Problems are returned, not thrown, so the values'
    /// problems (`SnapshotValidator`) can be reported with them. Members that are not kinds are not kept: the
    /// caller checks the document as sent with the validator too, which refuses each and says why.
    public static func read(_ tree: JSONTree) -> (document: SnapshotDocument, problems: [FieldProblem]) {
        var document = SnapshotDocument()
        var problems: [FieldProblem] = []
        guard case .object(let members) = tree else {
            return (document, [FieldProblem(pointer: "", message: "a snapshot is a JSON object")])
        }
        for kind in ResourceKind.allCases {
            guard let member = members[kind.rawValue] else { continue }
            document.kinds.insert(kind)
            let base = "/" + kind.rawValue
            if kind == .routes {
                guard case .array(let entries) = member else {
                    problems.append(FieldProblem(pointer: base, message: "routes are an array of route objects"))
                    continue
                }
                var seen: Set<String> = []
                for (index, entry) in entries.enumerated() {
                    guard let name = entry[member: "name"]?.stringValue else {
                        problems.append(FieldProblem(pointer: "\(base)/\(index)/name",
                            message: "a route the control plane keeps needs a name (its address in the API)"))
                        continue
                    }
                    guard isValidName(name) else {
                        problems.append(FieldProblem(pointer: "\(base)/\(index)/name", message: nameRule))
                        continue
                    }
                    if !seen.insert(name).inserted {
                        problems.append(FieldProblem(pointer: "\(base)/\(index)/name",
                            message: "another route is already called '\(name)'"))
                        continue
                    }
                    document.routes.append(NamedResource(name: name, value: entry))
                }
            } else {
                guard case .object(let entries) = member else {
                    problems.append(FieldProblem(pointer: base, message: "\(kind.rawValue) are an object by name"))
                    continue
                }
                for name in entries.keys.sorted() where !isValidName(name) {
                    let pointer = base + "/" + ConfigSnapshot.pointerToken(name)
                    problems.append(FieldProblem(pointer: pointer, message: nameRule))
                }
                document.tables[kind] = entries
            }
        }
        return (document, problems)
    }

    /// The JSON form: what is stored, served and sent.
    public var tree: JSONTree {
        var members: [String: JSONTree] = [:]
        for kind in kinds {
            if kind == .routes {
                members[kind.rawValue] = .array(routes.map(\.value))
            } else {
                members[kind.rawValue] = .object(tables[kind] ?? [:])
            }
        }
        return .object(members)
    }

    /// The names of one kind's resources (routes in order, the others sorted).
    public func names(_ kind: ResourceKind) -> [String] {
        kind == .routes ? routes.map(\.name) : (tables[kind] ?? [:]).keys.sorted()
    }

    /// One resource, nil when there is none by that name.
    public func resource(_ kind: ResourceKind, _ name: String) -> JSONTree? {
        kind == .routes ? routes.first { $0.name == name }?.value : tables[kind]?[name]
    }

    /// Every resource of one kind by name (one pass, for comparing whole documents).
    public func resources(_ kind: ResourceKind) -> [String: JSONTree] {
        guard kind == .routes else { return tables[kind] ?? [:] }
        return Dictionary(routes.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// Where one resource is in the JSON form, nil when there is none by that name.
    public func pointer(_ kind: ResourceKind, _ name: String) -> String? {
        if kind == .routes {
            return routes.firstIndex { $0.name == name }.map { "/routes/\($0)" }
        }
        guard tables[kind]?[name] != nil else { return nil }
        return "/\(kind.rawValue)/\(ConfigSnapshot.pointerToken(name))"
    }

    /// Adds or replaces one resource (a new route goes last; a replaced one keeps its place). True when added.
    /// A route's `name` member is set to `name`.
    @discardableResult
    public mutating func put(_ kind: ResourceKind, _ name: String, _ value: JSONTree) -> Bool {
        kinds.insert(kind)
        if kind == .routes {
            var value = value
            if case .object(var members) = value {
                members["name"] = .string(name)
                value = .object(members)
            }
            if let index = routes.firstIndex(where: { $0.name == name }) {
                routes[index].value = value
                return false
            }
            routes.append(NamedResource(name: name, value: value))
            return true
        }
        return tables[kind, default: [:]].updateValue(value, forKey: name) == nil
    }

    /// Removes one resource; false when there was none. The kind stays set (empty), so the data planes drop
    /// theirs too rather than falling back to their files'.
    @discardableResult
    public mutating func remove(_ kind: ResourceKind, _ name: String) -> Bool {
        if kind == .routes {
            guard let index = routes.firstIndex(where: { $0.name == name }) else { return false }
            routes.remove(at: index)
            return true
        }
        return tables[kind]?.removeValue(forKey: name) != nil
    }

    /// Whether `name` can name a resource: letters, digits, `.`, `_` and `-`, at most 128 of them, and not `.` or
    /// `..` (which clients remove from paths). Names are addresses in the API's paths, so they stay plain.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 128, name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }

    /// Why a name was refused.
    public static let nameRule = "a name is 1 to 128 letters, digits, '.', '_' or '-' (not '.' or '..')"
}
