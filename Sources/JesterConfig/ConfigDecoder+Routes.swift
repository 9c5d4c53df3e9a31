// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

extension ConfigDecoder {
    /// One `[[routes]]` entry: its match conditions, rewrite, retry and timeouts, filters and where it sends the
    /// request; nil when the entry is not a table. `configuration` holds the listeners and upstreams decoded before.
    mutating func decodeRoute(_ node: ConfigNode, index: Int, configuration: Configuration) -> RouteSettings? {
        guard var table = TableReader(node, ConfigSchema.route, decoder: &self) else { return nil }
        let name = table.string("name", decoder: &self) ?? "route-\(index + 1)"
        let listeners = table.stringArray("listeners", decoder: &self) ?? []
        let hosts = table.stringArray("hosts", decoder: &self) ?? []
        let writtenPrefix = table.string("path_prefix", decoder: &self)
        var pathPrefix = writtenPrefix ?? "/"
        var match = RouteMatch()
        if let path = table.string("path", decoder: &self) {
            if writtenPrefix != nil {
                report(table.location(of: "path"), "route '\(name)' has both 'path' and 'path_prefix'; use one")
            }
            pathPrefix = path
            match.exactPath = true
        }
        if let regex = table.string("path_regex", decoder: &self) {
            checkRegex(regex, at: table.location(of: "path_regex"))
            match.pathRegex = regex
        }
        match.methods = table.stringArray("methods", decoder: &self) ?? []
        for method in match.methods where method.isEmpty || method.utf8.contains(where: { !($0 >= 0x41 && $0 <= 0x5A) }) {
            report(table.location(of: "methods"), "'\(method)' is not a method (uppercase letters, such as \"GET\")")
        }
        match.headers = fieldMatches("match_headers", &table)
        match.query = fieldMatches("match_query", &table)
        match.sources = table.stringArray("sources", decoder: &self) ?? []
        for source in match.sources where CIDR(source) == nil {
            report(table.location(of: "sources"), "'\(source)' is not an address or network (\"10.0.0.0/8\", \"::1\")")
        }
        match.priority = table.integer("priority", decoder: &self) ?? 0
        if let names = table.stringArray("sni", decoder: &self) {
            for name in names where !Self.isServerName(name) {
                report(table.location(of: "sni"), "'\(name)' is not a host name or *.wildcard")
            }
            match.serverNames = names.isEmpty ? nil : names
        }
        if let tags = table.stringArray("policy_tags", decoder: &self) {
            // The characters a policy's add-route-tag may use (jester-policy(7)).
            for tag in tags where tag.isEmpty || !tag.unicodeScalars.allSatisfy({
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)
            }) {
                report(table.location(of: "policy_tags"), "'\(tag)' is not a tag (letters, digits, '-', '_' and '.')")
            }
            match.policyTags = tags.isEmpty ? nil : tags
        }
        if let node = table.take("match_body", decoder: &self),
            var reader = TableReader(node, ConfigSchema.bodyMatch, decoder: &self)
        {
            var body = BodyMatch()
            body.maxSize = reader.size("max_size", decoder: &self) ?? body.maxSize
            if !(1...(1 << 20)).contains(body.maxSize) {
                report(reader.location(of: "max_size"), "'max_size' of match_body must be between 1 byte and 1MiB")
            }
            body.regex = reader.string("regex", decoder: &self)
            if let regex = body.regex { checkRegex(regex, at: reader.location(of: "regex")) }
            for entry in reader.tables("json", decoder: &self) {
                guard var field = TableReader(entry, ConfigSchema.jsonField, decoder: &self) else { continue }
                let path = field.string("path", decoder: &self) ?? ""
                let value = field.string("value", decoder: &self) ?? ""
                if path.isEmpty || path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
                    report(field.location(of: "path"), "'\(path)' is not a dotted path (\"user.tier\")")
                }
                field.finish(decoder: &self)
                body.json.append(JSONFieldMatch(path: path, value: value))
            }
            reader.finish(decoder: &self)
            if body.regex == nil, body.json.isEmpty {
                report(node.location, "'match_body' needs 'regex' or 'json'")
            }
            match.body = body
        }
        if let node = table.take("client_subject", decoder: &self),
            var reader = TableReader(node, ConfigSchema.clientSubject, decoder: &self)
        {
            let value = reader.string("value", decoder: &self)
            let regex = reader.string("regex", decoder: &self)
            let present = reader.boolean("present", decoder: &self)
            reader.finish(decoder: &self)
            if [value != nil, regex != nil, present != nil].filter({ $0 }).count != 1 {
                report(node.location, "'client_subject' needs exactly one of 'value', 'regex' or 'present'")
            } else {
                if let regex { checkRegex(regex, at: reader.location(of: "regex")) }
                match.clientSubject = FieldMatch(name: "", value: value, regex: regex, present: present)
            }
        }
        let maxBodySize = table.size("max_body_size", decoder: &self)
        let upstream = table.string("upstream", decoder: &self)
        let splitNodes = table.has("split") ? table.tables("split", decoder: &self) : nil
        let splitKey = table.string("split_key", decoder: &self)
        let rewrite = decodeRewrite(&table, pathPrefix: writtenPrefix ?? "/")
        var timeouts = RouteTimeouts()
        timeouts.connect = table.duration("connect_timeout", decoder: &self)
        timeouts.response = table.duration("response_timeout", decoder: &self)
        timeouts.total = table.duration("timeout", decoder: &self)
        timeouts.read = table.duration("read_timeout", decoder: &self)
        var retry = RetrySettings()
        retry.retries = table.integer("retries", decoder: &self) ?? retry.retries
        retry.on = table.stringArray("retry_on", decoder: &self) ?? retry.on
        retry.nonIdempotent = table.boolean("retry_non_idempotent", decoder: &self) ?? false
        for item in retry.on where item != "reset" && !(Int(item).map { (500...599).contains($0) } ?? false) {
            report(table.location(of: "retry_on"), "'\(item)' in retry_on is neither \"reset\" nor a 5xx status")
        }
        let respondNode = table.take("respond", decoder: &self)
        let redirectNode = table.take("redirect", decoder: &self)
        let filterEntries = table.locatedStrings("filters", decoder: &self) ?? []
        let compression = table.take("compression", decoder: &self).flatMap { decodeRouteCompression($0) }
        let errorPages = table.take("error_pages", decoder: &self).flatMap { decodeErrorPages($0) }
        let cacheNode = table.take("cache", decoder: &self)
        let policies = table.take("policies", decoder: &self).map { decodePolicyAttachments($0, owner: "route '\(name)'") }
        let policyReroute = table.boolean("policy_reroute", decoder: &self) ?? false
        let cache = cacheNode.flatMap { decodeRouteCache($0) }
        table.finish(decoder: &self)

        if !pathPrefix.hasPrefix("/") {
            report(table.location(of: "path_prefix"), "path_prefix must start with '/'")
        }
        for listener in listeners where !configuration.listeners.contains(where: { $0.name == listener }) {
            let known = configuration.listeners.map(\.name)
            report(table.location(of: "listeners"),
                "route '\(name)' names listener '\(listener)', which is not defined" + hint(listener, known))
        }
        for host in hosts where !isValidHostPattern(host) {
            report(table.location(of: "hosts"),
                "'\(host)' is not a host name (expected \"example.com\" or \"*.example.com\")")
        }
        let actions = [upstream != nil, splitNodes != nil, respondNode != nil, redirectNode != nil].filter { $0 }.count
        guard actions == 1 else {
            report(node.location,
                "route '\(name)' needs exactly one of 'upstream', 'split', 'respond' or 'redirect' (it has \(actions))")
            return nil
        }
        if upstream == nil, splitNodes == nil, rewrite != RouteRewrite() {
            report(node.location, "route '\(name)' rewrites what it forwards, but it does not proxy")
        }
        if splitKey != nil, splitNodes == nil {
            report(table.location(of: "split_key"), "'split_key' needs 'split'")
        }
        let action: RouteAction
        if let upstream {
            if configuration.upstream(named: upstream) == nil {
                report(table.location(of: "upstream"),
                    "route '\(name)' names upstream '\(upstream)', which is not defined"
                        + hint(upstream, configuration.upstreams.map(\.name)))
            }
            action = .proxy(upstream: upstream)
        } else if let splitNodes {
            var targets: [SplitTarget] = []
            for splitNode in splitNodes {
                guard var reader = TableReader(splitNode, ConfigSchema.split, decoder: &self) else { continue }
                let pool = reader.string("upstream", decoder: &self) ?? ""
                let weight = reader.integer("weight", decoder: &self) ?? 0
                reader.finish(decoder: &self)
                if configuration.upstream(named: pool) == nil {
                    report(reader.location(of: "upstream"), "route '\(name)' splits to upstream '\(pool)', which is not defined"
                        + hint(pool, configuration.upstreams.map(\.name)))
                }
                targets.append(SplitTarget(upstream: pool, weight: weight))
            }
            if targets.reduce(0, { $0 + $1.weight }) == 0 {
                report(table.location(of: "split"), "route '\(name)' needs a split with a weight above 0")
            }
            // The keys of hash_key except the path (a split by path is a route of its own).
            if let splitKey, splitKey == "path" || BalancingKey(splitKey) == nil {
                report(table.location(of: "split_key"),
                    "'split_key' must be \"client_ip\", \"header:NAME\" or \"cookie:NAME\", not \"\(splitKey)\"")
            }
            action = .split(targets: targets, key: splitKey)
        } else if let respondNode {
            guard var respond = TableReader(respondNode, ConfigSchema.respond, decoder: &self) else { return nil }
            let status = respond.integer("status", decoder: &self) ?? 200
            let body = respond.string("body", decoder: &self) ?? ""
            let headers = respond.stringMap("headers", decoder: &self)
            respond.finish(decoder: &self)
            for header in headers where !isValidHeader(header) {
                report(respond.location(of: "headers"), "invalid header '\(header.name)'")
            }
            action = .respond(status: status, headers: headers, body: body)
        } else if let redirectNode {
            guard var redirect = TableReader(redirectNode, ConfigSchema.redirect, decoder: &self) else { return nil }
            let location = redirect.string("location", decoder: &self) ?? ""
            let status = redirect.integer("status", decoder: &self) ?? 302
            redirect.finish(decoder: &self)
            if ![301, 302, 303, 307, 308].contains(status) {
                report(redirect.location(of: "status"), "redirect status must be 301, 302, 303, 307 or 308")
            }
            if location.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) {
                report(redirect.location(of: "location"), "redirect location must not contain spaces or controls")
            }
            do {
                // Placeholders are checked once here, so a bad one fails the load, never a request.
                _ = try RedirectTemplate(parsing: location)
            } catch {
                report(redirect.location(of: "location"), "redirect location \"\(location)\": \(error.description)")
            }
            action = .redirect(status: status, location: location)
        } else {
            return nil
        }
        var route = RouteSettings(
            name: name, listeners: listeners, hosts: hosts, pathPrefix: pathPrefix, maxBodySize: maxBodySize,
            action: action)
        route.match = match
        route.rewrite = rewrite
        route.retry = retry
        route.timeouts = timeouts
        route.filters = filterEntries.map(\.value)
        route.compression = compression
        route.errorPages = errorPages
        route.cache = cache
        route.policies = policies ?? []
        route.policyReroute = policyReroute
        if policyReroute, !route.policies.contains(where: { $0.stage == .preUpstream }),
            !configuration.listeners.contains(where: { listener in
                (listeners.isEmpty || listeners.contains(listener.name))
                    && listener.policies.contains { $0.stage == .preUpstream }
            })
        {
            report(table.location(of: "policy_reroute"),
                "route '\(name)' sets policy_reroute, but no pre_upstream policy runs on it to choose another route")
        }
        if let cacheNode, cache != nil, upstream == nil, splitNodes == nil {
            report(cacheNode.location, "route '\(name)' caches responses, but it does not proxy")
        }
        if timeouts != RouteTimeouts(), upstream == nil, splitNodes == nil {
            report(node.location, "route '\(name)' has upstream timeouts, but it does not proxy")
        }
        filterLocations.routes.append(filterEntries)
        return route
    }

    /// strip_prefix, replace_prefix, rewrite, upstream_host, request_headers, response_headers.
    private mutating func decodeRewrite(_ table: inout TableReader, pathPrefix: String) -> RouteRewrite {
        var rewrite = RouteRewrite()
        rewrite.stripPrefix = table.boolean("strip_prefix", decoder: &self) ?? false
        rewrite.replacePrefix = table.string("replace_prefix", decoder: &self)
        if let node = table.take("rewrite", decoder: &self),
            var reader = TableReader(node, ConfigSchema.rewrite, decoder: &self)
        {
            rewrite.regex = reader.string("regex", decoder: &self)
            rewrite.replacement = reader.string("replacement", decoder: &self)
            reader.finish(decoder: &self)
            if let regex = rewrite.regex { checkRegex(regex, at: reader.location(of: "regex")) }
            if let replacement = rewrite.replacement, !replacement.hasPrefix("/") && !replacement.hasPrefix("$") {
                report(reader.location(of: "replacement"), "a rewritten path must start with '/'")
            }
        }
        let pathChanges = [rewrite.stripPrefix, rewrite.replacePrefix != nil, rewrite.regex != nil].filter { $0 }.count
        if pathChanges > 1 {
            report(table.location(of: "strip_prefix"), "use one of 'strip_prefix', 'replace_prefix' and 'rewrite'")
        }
        if let prefix = rewrite.replacePrefix, !prefix.hasPrefix("/") {
            report(table.location(of: "replace_prefix"), "replace_prefix must start with '/'")
        }
        rewrite.upstreamHost = table.string("upstream_host", decoder: &self)
        if let host = rewrite.upstreamHost, host.isEmpty || host.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            report(table.location(of: "upstream_host"), "'\(host)' is not a host")
        }
        for (key, forRequest) in [("request_headers", true), ("response_headers", false)] {
            guard let node = table.take(key, decoder: &self),
                var reader = TableReader(node, ConfigSchema.headerEdits, decoder: &self)
            else { continue }
            var edits = HeaderEditSettings()
            edits.set = reader.stringMap("set", decoder: &self)
            edits.add = reader.stringMap("add", decoder: &self)
            edits.remove = reader.stringArray("remove", decoder: &self) ?? []
            reader.finish(decoder: &self)
            // Framing and connection fields are Jester's to write, Host is upstream_host's.
            let reserved = ["content-length", "transfer-encoding", "connection", "upgrade", "keep-alive", "te"]
                + (forRequest ? ["host"] : [])
            for header in edits.set + edits.add + edits.remove.map({ HeaderPair(name: $0, value: "") })
            where !isValidHeader(header) || reserved.contains(header.name.lowercased()) {
                report(node.location, "\(key) may not change '\(header.name)'")
            }
            if forRequest { rewrite.requestHeaders = edits } else { rewrite.responseHeaders = edits }
        }
        return rewrite
    }

    /// `match_headers` / `match_query`: tables with a name and exactly one of value, regex, present.
    private mutating func fieldMatches(_ key: String, _ table: inout TableReader) -> [FieldMatch] {
        var matches: [FieldMatch] = []
        for node in table.tables(key, decoder: &self) {
            guard var reader = TableReader(node, ConfigSchema.fieldMatch, decoder: &self) else { continue }
            let name = reader.string("name", decoder: &self) ?? ""
            let value = reader.string("value", decoder: &self)
            let regex = reader.string("regex", decoder: &self)
            let present = reader.boolean("present", decoder: &self)
            reader.finish(decoder: &self)
            if [value != nil, regex != nil, present != nil].filter({ $0 }).count != 1 {
                report(node.location, "a condition in '\(key)' needs exactly one of 'value', 'regex' or 'present'")
                continue
            }
            if let regex { checkRegex(regex, at: reader.location(of: "regex")) }
            if key == "match_headers", name.isEmpty || !name.utf8.allSatisfy(ASCII.isToken) {
                report(reader.location(of: "name"), "'\(name)' is not a header field name")
            }
            matches.append(FieldMatch(name: name, value: value, regex: regex, present: present))
        }
        return matches
    }

    private mutating func checkRegex(_ source: String, at location: SourceLocation) {
        do {
            _ = try RoutePattern(source)
        } catch {
            report(location, "invalid regular expression \"\(source)\": \(error)")
        }
    }

    private func isValidHostPattern(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("*.") { name = name.dropFirst(2) }
        return !name.isEmpty && name.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
    }
}
