// SPDX-License-Identifier: Apache-2.0
import Foundation

extension Configuration {
    /// Where each listener's `[[listeners]]` table was written, by listener name: the files are read again, so
    /// the configuration (which workers receive and whose hash must not change when a line moves) carries no
    /// positions. For errors found after loading, such as a listener the master cannot bind, which must point
    /// at file:line like every configuration error. A listener not found (its file changed since) is missing.
    public func listenerLocations(environment: [String: String] = ProcessInfo.processInfo.environment)
        -> [String: SourceLocation]
    {
        var locations: [String: SourceLocation] = [:]
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                var root = try? ConfigNode.parse(text: text, file: file)
            else { continue }
            var ignored: [ConfigDiagnostic] = []
            root.interpolate(environment, diagnostics: &ignored)
            guard case .table(let top) = root.value, case .array(let tables)? = top["listeners"]?.value else {
                continue
            }
            for table in tables {
                guard case .table(let keys) = table.value, case .string(let name)? = keys["name"]?.value else {
                    continue
                }
                if locations[name] == nil { locations[name] = table.location }
            }
        }
        return locations
    }
}
