// SPDX-License-Identifier: Apache-2.0
import Foundation

extension ConfigGraph {
    /// The forms `jester diag` prints.
    public enum Format: String, Sendable, CaseIterable {
        /// The effective configuration, then the graph as an indented tree: for a person at a terminal.
        case text
        /// One JSON object of a documented, versioned shape (jester(8), DIAG): for scripts and other tools.
        case json
        /// A Graphviz digraph (`dot -Tsvg`): for a picture.
        case dot
    }

    /// The graph in `format`, ending in a newline.
    public func render(_ format: Format) -> String {
        switch format {
        case .text: return text()
        case .json: return json()
        case .dot: return dot()
        }
    }

    // MARK: Text

    /// The effective configuration, then the tree: listeners, their routes numbered in match order, each
    /// route's filter chain and action, pools with their targets; then the filters' settings and the warnings.
    public func text() -> String {
        var lines = ["# jester diag: the effective configuration, then the graph it makes", ""]
        lines.append(effectiveConfiguration.hasSuffix("\n") ? String(effectiveConfiguration.dropLast())
            : effectiveConfiguration)
        lines += ["", "# Graph of \(files.first ?? "-") (hash \(hash)): listeners -> routes in match order -> "
            + "filters in run order -> pools -> targets"]
        for listener in listeners {
            var kind = listener.protocolName.rawValue + (listener.tls ? ", TLS" : "")
            if listener.http2 { kind += ", HTTP/2" }
            lines.append("listener \(listener.name) \(listener.address) (\(kind))")
            if let port = listener.redirectToHTTPS {
                lines.append("  -> redirect every request to HTTPS, port \(port)")
            }
            if let upstream = listener.upstream {
                lines += pool(upstream, prefix: "-> ", indent: 2)
            }
            if listener.protocolName == .http, listener.redirectToHTTPS == nil, listener.routes.isEmpty {
                lines.append("  (no routes: every request gets 404)")
            }
            for (number, route) in listener.routes.enumerated() {
                let head = "  \(number + 1). route '\(route.name)'"
                lines.append(head + " " + matchPhrases(route).joined(separator: ", "))
                let indent = String(repeating: " ", count: head.count - "route '\(route.name)'".count)
                if let shadowing = route.shadowedBy {
                    lines.append(indent + "!! never matches: route '\(shadowing)' takes every request it could "
                        + "(same listeners, hosts and path, no other condition, and tried first)")
                }
                if !route.filters.isEmpty {
                    lines.append(indent + "filters: " + route.filters.map { step in
                        "\(step.name) (\(step.kind.rawValue)" + (step.from == .listener ? ", listener)" : ")")
                    }.joined(separator: " -> "))
                }
                switch route.action {
                case .proxy(let upstream):
                    lines += pool(upstream, prefix: "-> ", indent: indent.count)
                case .split(let shares, let key):
                    lines.append(indent + "-> split" + (key.map { " by \($0)" } ?? " at random"))
                    for share in shares {
                        lines += pool(share.upstream, prefix: "\(percent(share.percent)) (weight \(share.weight)) ",
                            indent: indent.count + 5)
                    }
                case .respond(let status):
                    lines.append(indent + "-> respond \(status)")
                case .redirect(let status, let location):
                    lines.append(indent + "-> redirect \(status) \(location)")
                }
            }
        }
        if !filters.isEmpty {
            lines += ["", "# Filters"]
            for filter in filters {
                lines.append("\(filter.name) (\(filter.kind.rawValue)): "
                    + filter.settings.map { "\($0.key) \($0.value)" }.joined(separator: "; "))
            }
        }
        if !warnings.isEmpty {
            lines += ["", "# Warnings"] + warnings
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Priority, hosts, path and further conditions of a route, one short phrase each.
    private func matchPhrases(_ route: Route) -> [String] {
        var phrases: [String] = []
        if route.priority != 0 { phrases.append("priority \(route.priority)") }
        if !route.hosts.isEmpty { phrases.append("host " + route.hosts.joined(separator: "|")) }
        phrases.append((route.exactPath ? "path = " : "path_prefix ") + route.path)
        return phrases + route.conditions
    }

    /// A pool line and its targets, indented.
    private func pool(_ name: String, prefix: String, indent: Int) -> [String] {
        let pad = String(repeating: " ", count: indent)
        guard let pool = upstream(named: name) else { return [pad + prefix + "upstream \(name)"] }
        var traits = [pool.balance]
        if let key = pool.hashKey { traits[0] += " \(key)" }
        if pool.protocolName != "http1" { traits.append(pool.protocolName) }
        if pool.tls { traits.append("TLS") }
        if let check = pool.healthCheck { traits.append("health \(check)") }
        var lines = [pad + prefix + "upstream \(name) (\(traits.joined(separator: ", ")))"]
        let targetPad = pad + String(repeating: " ", count: prefix.count + 2)
        for target in pool.targets {
            lines.append(targetPad + target.address + " weight \(target.weight)" + (target.backup ? ", backup" : "")
                + (target.maxRequests.map { ", max_requests \($0)" } ?? ""))
        }
        return lines
    }

    private func percent(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))%" : "\(value)%"
    }

    // MARK: JSON

    /// The graph as one JSON object, keys sorted, every documented key present (null when unset).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Every value is a string, number, bool, array or object of those: encoding cannot fail.
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    // MARK: DOT

    /// The graph as a Graphviz digraph: a node per listener, per route on each listener (its filters in its
    /// label), per pool and per target; listener → route edges are numbered in match order, split edges carry
    /// their share. Routes that can never match are dashed and red.
    public func dot() -> String {
        var lines = [
            "digraph jester {",
            // ordering=out: a listener's routes are drawn top to bottom in match order.
            "  graph [rankdir=LR, ordering=out, fontname=\"Helvetica\", "
                + "label=\(quoted("\(files.first ?? "-") (hash \(hash))"))];",
            "  node [shape=box, style=rounded, fontname=\"Helvetica\"];",
            "  edge [fontname=\"Helvetica\"];",
        ]
        for (listenerIndex, listener) in listeners.enumerated() {
            let id = quoted("listener \(listenerIndex)")
            var label = ["listener \(listener.name)", listener.address + " " + listener.protocolName.rawValue
                + (listener.tls ? " TLS" : "")]
            if let port = listener.redirectToHTTPS { label.append("redirect to HTTPS :\(port)") }
            lines.append("  \(id) [label=\(dotLabel(label)), shape=box, style=\"bold\"];")
            if let upstream = listener.upstream { lines.append("  \(id) -> \(quoted("upstream \(upstream)"));") }
            for (number, route) in listener.routes.enumerated() {
                let routeID = quoted("route \(listenerIndex).\(route.index)")
                var routeLabel = ["route '\(route.name)'"] + matchPhrases(route)
                if !route.filters.isEmpty {
                    routeLabel.append("filters: " + route.filters.map(\.name).joined(separator: ", "))
                }
                var style = ""
                if let shadowing = route.shadowedBy {
                    routeLabel.append("never matches: '\(shadowing)' first")
                    style = ", style=\"rounded,dashed\", color=red"
                }
                lines.append("  \(routeID) [label=\(dotLabel(routeLabel))\(style)];")
                lines.append("  \(id) -> \(routeID) [label=\"\(number + 1)\"];")
                switch route.action {
                case .proxy(let upstream):
                    lines.append("  \(routeID) -> \(quoted("upstream \(upstream)"));")
                case .split(let shares, _):
                    for share in shares {
                        lines.append("  \(routeID) -> \(quoted("upstream \(share.upstream)")) "
                            + "[label=\(quoted(percent(share.percent)))];")
                    }
                case .respond(let status):
                    lines += answer(["respond \(status)"], listener: listenerIndex, route: route.index, from: routeID)
                case .redirect(let status, let location):
                    lines += answer(["redirect \(status)", location], listener: listenerIndex, route: route.index,
                        from: routeID)
                }
            }
        }
        for pool in upstreams {
            let id = quoted("upstream \(pool.name)")
            var label = ["upstream \(pool.name)", pool.balance + (pool.hashKey.map { " \($0)" } ?? "")]
            if let check = pool.healthCheck { label.append("health \(check)") }
            lines.append("  \(id) [label=\(dotLabel(label)), shape=box3d, style=\"\"];")
            for (targetIndex, target) in pool.targets.enumerated() {
                let targetID = quoted("target \(pool.name) \(targetIndex)")
                let style = target.backup ? ", style=\"rounded,dashed\"" : ""
                let targetLabel = dotLabel([target.address,
                    "weight \(target.weight)" + (target.backup ? ", backup" : "")])
                lines.append("  \(targetID) [label=\(targetLabel)\(style)];")
                lines.append("  \(id) -> \(targetID);")
            }
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The node of a route's own answer (a fixed response or a redirect) and the edge to it.
    private func answer(_ label: [String], listener: Int, route: Int, from routeID: String) -> [String] {
        let id = quoted("answer \(listener).\(route)")
        return ["  \(id) [label=\(dotLabel(label)), shape=note];", "  \(routeID) -> \(id);"]
    }

    /// A DOT quoted string (ID or label): quotes and backslashes escaped, so no configuration text becomes a
    /// Graphviz escape (`\n`, `\l`) or ends the string early; control characters become spaces.
    func quoted(_ text: String) -> String {
        var out = "\""
        for character in text.unicodeScalars {
            switch character {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.unicodeScalars.append(character.value < 0x20 || character.value == 0x7F ? " " : character)
            }
        }
        return out + "\""
    }

    /// A multi-line DOT label: each line quoted, joined by Graphviz's centred line break.
    private func dotLabel(_ lines: [String]) -> String {
        "\"" + lines.map { String(quoted($0).dropFirst().dropLast()) }.joined(separator: "\\n") + "\""
    }
}

// MARK: JSON shape (documented in jester(8), DIAG; raise `formatVersion` when a key changes meaning or goes)

extension ConfigGraph: Encodable {
    private enum Keys: String, CodingKey {
        case formatVersion = "format_version", files, hash, config, warnings, listeners, filters, upstreams
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(Self.formatVersion, forKey: .formatVersion)
        try container.encode(files, forKey: .files)
        try container.encode(hash, forKey: .hash)
        try container.encode(effectiveConfiguration, forKey: .config)
        try container.encode(warnings, forKey: .warnings)
        try container.encode(listeners, forKey: .listeners)
        try container.encode(filters, forKey: .filters)
        try container.encode(upstreams, forKey: .upstreams)
    }
}

extension ConfigGraph.Listener: Encodable {
    private enum Keys: String, CodingKey {
        case name, address, protocolName = "protocol", tls, http2, redirectToHTTPS = "redirect_to_https", upstream
        case filters, routes
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try container.encode(address, forKey: .address)
        try container.encode(protocolName, forKey: .protocolName)
        try container.encode(tls, forKey: .tls)
        try container.encode(http2, forKey: .http2)
        try container.encode(redirectToHTTPS, forKey: .redirectToHTTPS)
        try container.encode(upstream, forKey: .upstream)
        try container.encode(filters, forKey: .filters)
        try container.encode(routes, forKey: .routes)
    }
}

extension ConfigGraph.Route: Encodable {
    private enum Keys: String, CodingKey {
        case name, index, priority, hosts, path, exactPath = "exact_path", conditions, filters, action
        case shadowedBy = "shadowed_by"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try container.encode(index, forKey: .index)
        try container.encode(priority, forKey: .priority)
        try container.encode(hosts, forKey: .hosts)
        try container.encode(path, forKey: .path)
        try container.encode(exactPath, forKey: .exactPath)
        try container.encode(conditions, forKey: .conditions)
        try container.encode(filters, forKey: .filters)
        try container.encode(action, forKey: .action)
        try container.encode(shadowedBy, forKey: .shadowedBy)
    }
}

extension ConfigGraph.Action: Encodable {
    private enum Keys: String, CodingKey {
        case type, upstream, shares, key, status, location
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .proxy(let upstream):
            try container.encode("proxy", forKey: .type)
            try container.encode(upstream, forKey: .upstream)
        case .split(let shares, let key):
            try container.encode("split", forKey: .type)
            try container.encode(shares, forKey: .shares)
            try container.encode(key, forKey: .key)
        case .respond(let status):
            try container.encode("respond", forKey: .type)
            try container.encode(status, forKey: .status)
        case .redirect(let status, let location):
            try container.encode("redirect", forKey: .type)
            try container.encode(status, forKey: .status)
            try container.encode(location, forKey: .location)
        }
    }
}

extension ConfigGraph.Filter: Encodable {
    private enum Keys: String, CodingKey {
        case name, kind, settings
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try container.encode(kind, forKey: .kind)
        try container.encode(Dictionary(settings, uniquingKeysWith: { first, _ in first }), forKey: .settings)
    }
}

extension ConfigGraph.Pool: Encodable {
    private enum Keys: String, CodingKey {
        case name, balance, hashKey = "hash_key", protocolName = "protocol", tls, healthCheck = "health_check"
        case targets
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try container.encode(balance, forKey: .balance)
        try container.encode(hashKey, forKey: .hashKey)
        try container.encode(protocolName, forKey: .protocolName)
        try container.encode(tls, forKey: .tls)
        try container.encode(healthCheck, forKey: .healthCheck)
        try container.encode(targets, forKey: .targets)
    }
}

extension ConfigGraph.Target: Encodable {
    private enum Keys: String, CodingKey {
        case address, weight, backup, maxRequests = "max_requests"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(address, forKey: .address)
        try container.encode(weight, forKey: .weight)
        try container.encode(backup, forKey: .backup)
        try container.encode(maxRequests, forKey: .maxRequests)
    }
}
