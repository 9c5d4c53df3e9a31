// SPDX-License-Identifier: Apache-2.0

/// `jesterctl -c FILE`: the control socket a master started with `jester -c FILE` binds, read from the file and
/// its includes as the master reads them (`include` globs relative to the file, each file once, `${VAR}` and
/// `${VAR:-default}` from the environment, `$$` for a dollar sign), but only that key.
///
/// Pure: the file system comes in as two functions, so every rule is tested without files.
public struct ControlSocketLookup {
    /// The text of the file at a path, or a reason it cannot be read (thrown as its description).
    public var read: (String) throws -> String
    /// The paths a glob pattern matches, sorted.
    public var glob: (String) -> [String]
    /// The variables `${VAR}` is resolved against.
    public var environment: [String: String]

    public init(
        read: @escaping (String) throws -> String, glob: @escaping (String) -> [String], environment: [String: String]
    ) {
        self.read = read
        self.glob = glob
        self.environment = environment
    }

    /// Why no socket path could be read from the file.
    public struct Problem: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }

        public init(message: String) {
            self.message = message
        }
    }

    /// The `[server] control_socket` of `file`, or the master's default when the files do not set it.
    public func controlSocket(file: String) throws(Problem) -> String {
        var found: (value: String, file: String, line: Int)?
        var includes: [(pattern: String, line: Int)] = []
        try scan(file, includes: &includes, found: &found)
        var loaded: Set<String> = [file]
        let directory = file.split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/")
        for (pattern, line) in includes {
            let absolute = pattern.hasPrefix("/") ? pattern : (directory.isEmpty && !file.hasPrefix("/")
                ? pattern : directory + "/" + pattern)
            let matches = glob(absolute)
            if matches.isEmpty, !pattern.contains(where: { "*?[".contains($0) }) {
                throw Problem(message: "\(file):\(line): included file \(absolute) does not exist")
            }
            for match in matches where loaded.insert(match).inserted {
                var nested: [(pattern: String, line: Int)] = []
                try scan(match, includes: &nested, found: &found)
            }
        }
        guard let found else { return ControlSocketChoice.defaultPath }
        switch Self.interpolating(found.value, environment) {
        case .success(let path): return path
        case .failure(let message): throw Problem(message: "\(found.file):\(found.line): \(message)")
        }
    }

    /// Reads one file's `control_socket` (and, for the main file, its `include`).
    private func scan(
        _ file: String, includes: inout [(pattern: String, line: Int)],
        found: inout (value: String, file: String, line: Int)?
    ) throws(Problem) {
        let text: String
        do {
            text = try read(file)
        } catch {
            throw Problem(message: "cannot read \(file): \(error)")
        }
        let pairs: [(path: [String], value: TOMLScanner.Value, line: Int)]
        do {
            pairs = try TOMLScanner.pairs(in: text)
        } catch {
            throw Problem(message: "\(file):\(error.line):\(error.column): invalid TOML: \(error.message)")
        }
        for pair in pairs {
            for (path, value) in Self.flattened(pair.path, pair.value) {
                switch path {
                case ["server", "control_socket"]:
                    guard case .string(let socket) = value else {
                        throw Problem(message: "\(file):\(pair.line): control_socket must be a string")
                    }
                    if let found {
                        throw Problem(message: "\(file):\(pair.line): control_socket is already set at "
                            + "\(found.file):\(found.line)")
                    }
                    found = (socket, file, pair.line)
                case ["include"]:
                    guard case .array(let elements) = value else {
                        throw Problem(message: "\(file):\(pair.line): 'include' must be an array of strings")
                    }
                    for element in elements {
                        guard case .string(let pattern) = element else {
                            throw Problem(message: "\(file):\(pair.line): 'include' elements must be strings")
                        }
                        includes.append((pattern, pair.line))
                    }
                default:
                    break
                }
            }
        }
    }

    /// An inline table's members under their full paths (`server = { control_socket = "…" }`).
    private static func flattened(_ path: [String], _ value: TOMLScanner.Value) -> [([String], TOMLScanner.Value)] {
        guard case .table(let members) = value else { return [(path, value)] }
        return members.flatMap { flattened(path + $0.key, $0.value) }
    }

    enum Interpolation: Equatable {
        case success(String)
        case failure(String)
    }

    /// `${VAR}`, `${VAR:-default}` and `$$`, exactly as the configuration loader resolves them.
    static func interpolating(_ text: String, _ environment: [String: String]) -> Interpolation {
        var result = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest.index(after: dollar)
            if afterDollar < rest.endIndex, rest[afterDollar] == "$" {
                result += "$"
                rest = rest[rest.index(after: afterDollar)...]
                continue
            }
            guard afterDollar < rest.endIndex, rest[afterDollar] == "{",
                let close = rest[afterDollar...].firstIndex(of: "}")
            else {
                result += "$"
                rest = rest[afterDollar...]
                continue
            }
            let expression = rest[rest.index(after: afterDollar)..<close]
            var name = expression
            var fallback: Substring?
            if let separator = Self.firstRange(of: ":-", in: expression) {
                name = expression[..<separator.lowerBound]
                fallback = expression[separator.upperBound...]
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                return .failure("invalid variable reference '${\(expression)}'")
            }
            if let found = environment[String(name)], !(found.isEmpty && fallback != nil) {
                result += found
            } else if let fallback {
                result += fallback
            } else {
                return .failure(
                    "environment variable '\(name)' is not set (write ${\(name):-default} to give a default)")
            }
            rest = rest[rest.index(after: close)...]
        }
        result += rest
        return .success(result)
    }

    /// Where `needle` first occurs in `text` (the standard library's `range(of:)` is Foundation's).
    private static func firstRange(of needle: String, in text: Substring) -> Range<Substring.Index>? {
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix(needle) {
                return index..<text.index(index, offsetBy: needle.count)
            }
            index = text.index(after: index)
        }
        return nil
    }
}
