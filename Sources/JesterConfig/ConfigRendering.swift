// SPDX-License-Identifier: Apache-2.0
import Foundation

extension ConfigSchema {
    /// The configuration format as JSON Schema (draft 2020-12), for editors and CI linters.
    public static func jsonSchema() -> String {
        var document = jsonSchema(for: .table(root))
        document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        document["title"] = "Jester configuration (jester.toml)"
        let data = try! JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func jsonSchema(for type: ValueType) -> [String: Any] {
        switch type {
        case .string: return ["type": "string"]
        case .integer(let range):
            return ["anyOf": [["type": "integer", "minimum": range.lowerBound, "maximum": range.upperBound],
                ["type": "string", "pattern": "^[0-9]+$|\\$\\{"]]]
        case .boolean: return ["type": "boolean"]
        case .duration:
            return ["anyOf": [["type": "integer", "minimum": 0], ["type": "string", "pattern": "^[0-9]+(ms|s|m|h)?$"]]]
        case .size:
            return ["anyOf": [["type": "integer", "minimum": 0],
                ["type": "string", "pattern": "^[0-9]+ ?(B|K|KiB|M|MiB|G|GiB|kB|KB|MB|GB)?$"]]]
        case .choice(let options): return ["enum": options]
        case .address: return ["type": "string", "pattern": "^(\\[[0-9a-fA-F:.]+\\]|[^:]+):[0-9]{1,5}$"]
        case .target(let table): return ["anyOf": [jsonSchema(for: .address), jsonSchema(for: .table(table))]]
        case .array(let element): return ["type": "array", "items": jsonSchema(for: element)]
        case .map(let value): return ["type": "object", "additionalProperties": jsonSchema(for: value)]
        case .kinds(let tables): return ["oneOf": tables.map { jsonSchema(for: .table($0)) }]
        case .either(let types): return ["anyOf": types.map { jsonSchema(for: $0) }]
        case .table(let table):
            var properties: [String: Any] = [:]
            for field in table.fields {
                var property = jsonSchema(for: field.type)
                var description = field.summary
                if let defaultValue = field.defaultValue { description += " Default: \(defaultValue)." }
                property["description"] = description
                properties[field.name] = property
            }
            return [
                "type": "object", "properties": properties, "additionalProperties": false,
                "required": table.fields.filter(\.isRequired).map(\.name),
            ]
        }
    }
}

extension Configuration {
    /// The effective configuration as TOML: includes merged, environment resolved, every default written out.
    /// Nothing in the format is secret yet; keys that will hold secrets (key passphrases, tokens) are redacted
    /// here when they arrive.
    public func renderTOML() -> String {
        var lines: [String] = ["# Effective configuration of \(files.first ?? "-") (hash \(hash))"]
        if files.count > 1 { lines.append("# Included: " + files.dropFirst().joined(separator: ", ")) }
        lines.append("")
        lines.append("[server]")
        if let workers = server.workers { lines.append("workers = \(workers)") } else { lines.append("# workers = one per CPU") }
        lines.append(server.user.map { "user = \(quoted($0))" } ?? "# user = \"jester\" (or \"nobody\")")
        if let group = server.group { lines.append("group = \(quoted(group))") }
        lines.append("pid_file = \(quoted(server.pidFile))")
        lines.append("control_socket = \(quoted(server.controlSocket))")
        if let group = server.controlGroup { lines.append("control_group = \(quoted(group))") }
        lines.append("drain_timeout = \(quoted(Units.format(server.drainTimeout)))")
        lines.append("worker_start_timeout = \(quoted(Units.format(server.workerStartTimeout)))")
        lines.append("max_draining_generations = \(server.maxDrainingGenerations)")
        lines.append(server.maxConnections.map { "max_connections = \($0)" } ?? "# max_connections = 0 (no limit)")
        lines.append(server.maxConnectionsPerClient.map { "max_connections_per_client = \($0)" }
            ?? "# max_connections_per_client = 0 (no limit)")
        if let rotation = server.ticketKeyRotation {
            lines.append("ticket_key_rotation = \(quoted(Units.format(rotation)))")
        } else {
            lines.append("# ticket_key_rotation = \"1h\"")
        }
        lines += ["", "[log]", "level = \(quoted(log.level))", "access_log = \(log.accessLog)"]
        lines.append(log.accessLogFile.map { "access_log_file = \(quoted($0))" } ?? "# access_log_file: standard output")
        lines.append("access_log_fields = " + list((log.accessLogFields ?? AccessLogField.allCases).map(\.rawValue)))
        lines += [
            "", "[http]", "max_request_head_size = \(http.maxRequestHeadSize)", "max_uri_length = \(http.maxURILength)",
            "max_header_count = \(http.maxHeaderCount)", "max_body_size = \(http.maxBodySize)",
            "client_header_timeout = \(quoted(Units.format(http.clientHeaderTimeout)))",
            "keepalive_timeout = \(quoted(Units.format(http.keepaliveTimeout)))",
            "keepalive_requests = \(http.keepaliveRequests)", "forwarded_header = \(http.forwardedHeader)",
            "underscores_in_headers = \(quoted(http.underscoresInHeaders))",
            "client_body_timeout = \(quoted(Units.format(http.clientBodyTimeout)))",
            "send_timeout = \(quoted(Units.format(http.sendTimeout)))",
            "max_connections = \(http.maxConnections)", "max_connections_per_client = \(http.maxConnectionsPerClient)",
        ]
        if let streams = http.http2MaxStreams { lines.append("http2_max_concurrent_streams = \(streams)") }
        if let rate = http.connectionRequestRate { lines.append("connection_request_rate = \(rate)") }
        lines.append("request_id_header = \(quoted(http.requestIDHeader))")
        for listener in listeners {
            lines += [
                "", "[[listeners]]", "name = \(quoted(listener.name))", "address = \(quoted(listener.address.description))",
                "backlog = \(listener.backlog)",
            ]
            if listener.isTCP { lines.append("protocol = \"tcp\"") }
            if let upstream = listener.upstream { lines.append("upstream = \(quoted(upstream))") }
            if let timeout = listener.idleTimeout { lines.append("idle_timeout = \(quoted(Units.format(timeout)))") }
            if let http2 = listener.http2 { lines.append("http2 = \(http2)") }
            if let trusted = listener.proxyProtocolFrom {
                lines.append("proxy_protocol_from = [" + trusted.map(quoted).joined(separator: ", ") + "]")
            }
            if let filters = listener.filters { lines.append("filters = " + list(filters)) }
            if let port = listener.redirectToHTTPS { lines.append("redirect_to_https = \(port)") }
            if let hsts = listener.hsts {
                lines.append("hsts = { max_age = \(quoted(Units.format(.seconds(hsts.maxAgeSeconds)))), "
                    + "include_subdomains = \(hsts.includeSubdomains), preload = \(hsts.preload) }")
            }
            if let tls = listener.tls {
                lines += ["[listeners.tls]", "min_version = \(quoted(tls.minVersion))"]
                if let ciphers = tls.ciphers { lines.append("ciphers = \(quoted(ciphers))") }
                if let suites = tls.cipherSuites { lines.append("cipher_suites = \(quoted(suites))") }
                if let alpn = tls.alpn { lines.append("alpn = [" + alpn.map(quoted).joined(separator: ", ") + "]") }
                lines.append("session_tickets = \(tls.sessionTickets)")
                lines.append("client_certificates = \(quoted(tls.clientCertificates))")
                if let ca = tls.clientCA { lines.append("client_ca = \(quoted(ca))") }
                if let header = tls.clientSubjectHeader { lines.append("client_subject_header = \(quoted(header))") }
                for certificate in tls.certificates {
                    lines += ["[[listeners.tls.certificates]]", "cert = \(quoted(certificate.certificateFile))",
                        "key = \(quoted(certificate.keyFile))"]
                    if !certificate.names.isEmpty {
                        lines.append("names = [" + certificate.names.map(quoted).joined(separator: ", ") + "]")
                    }
                    if let ocsp = certificate.ocspResponseFile { lines.append("ocsp_response = \(quoted(ocsp))") }
                }
            }
        }
        for upstream in upstreams {
            lines += [
                "", "[upstreams.\(quotedKey(upstream.name))]",
                "targets = [" + upstream.targets.map(renderTarget).joined(separator: ", ") + "]",
                "balance = \(quoted(upstream.balance))",
                "hash_key = \(quoted(upstream.hashKey))",
                "max_fails = \(upstream.maxFails)",
                "fail_timeout = \(quoted(Units.format(upstream.failTimeout)))",
                "slow_start = \(quoted(Units.format(upstream.slowStart)))",
                "connect_attempts = \(upstream.connectAttempts)",
                "retry_budget = \(upstream.retryBudgetPercent)",
            ]
            if let cookie = upstream.stickyCookie { lines.append("sticky_cookie = \(quoted(cookie))") }
            if let limit = upstream.maxRequestsPerTarget { lines.append("max_requests_per_target = \(limit)") }
            if let name = upstream.protocolName { lines.append("protocol = \(quoted(name))") }
            if let interval = upstream.resolveInterval { lines.append("resolve_interval = \(quoted(Units.format(interval)))") }
            if let version = upstream.sendProxyProtocol { lines.append("send_proxy_protocol = \(quoted(version))") }
            if let breaker = upstream.circuitBreaker {
                lines.append("circuit_breaker = { max_requests = \(breaker.maxRequests), failure_percent = \(breaker.failurePercent), "
                    + "minimum_requests = \(breaker.minimumRequests), window = \(quoted(Units.format(breaker.window))), "
                    + "open_for = \(quoted(Units.format(breaker.openFor))), half_open_requests = \(breaker.halfOpenRequests) }")
            }
            if let check = upstream.healthCheck {
                let status = check.expectStatus.lowerBound == check.expectStatus.upperBound
                    ? "\(check.expectStatus.lowerBound)" : "\(check.expectStatus.lowerBound)-\(check.expectStatus.upperBound)"
                lines.append("health_check = { type = \(quoted(check.type)), path = \(quoted(check.path)), "
                    + "interval = \(quoted(Units.format(check.interval))), timeout = \(quoted(Units.format(check.timeout))), "
                    + "rise = \(check.rise), fall = \(check.fall), expect_status = \(quoted(status)) }")
            }
            lines += [
                "connect_timeout = \(quoted(Units.format(upstream.connectTimeout)))",
                "response_timeout = \(quoted(Units.format(upstream.responseTimeout)))",
                "max_idle_connections = \(upstream.maxIdleConnections)",
                "idle_timeout = \(quoted(Units.format(upstream.idleTimeout)))",
            ]
            if let tls = upstream.tls {
                // A sub-table of this upstream: its keys must come after every plain key above.
                lines += ["[upstreams.\(quotedKey(upstream.name)).tls]", "verify = \(tls.verify)",
                    "session_reuse = \(tls.sessionReuse)"]
                if let ca = tls.ca { lines.append("ca = \(quoted(ca))") }
                if let name = tls.serverName { lines.append("server_name = \(quoted(name))") }
                if let certificate = tls.certificate {
                    lines += ["cert = \(quoted(certificate.certificateFile))", "key = \(quoted(certificate.keyFile))"]
                }
            }
        }
        for filter in filters { lines += [""] + render(filter) }
        for route in routes {
            lines += ["", "[[routes]]", "name = \(quoted(route.name))"]
            if !route.listeners.isEmpty { lines.append("listeners = [" + route.listeners.map(quoted).joined(separator: ", ") + "]") }
            if !route.hosts.isEmpty { lines.append("hosts = [" + route.hosts.map(quoted).joined(separator: ", ") + "]") }
            lines.append((route.match.exactPath ? "path = " : "path_prefix = ") + quoted(route.pathPrefix))
            let match = route.match
            if let regex = match.pathRegex { lines.append("path_regex = \(quoted(regex))") }
            if !match.methods.isEmpty { lines.append("methods = [" + match.methods.map(quoted).joined(separator: ", ") + "]") }
            if !match.headers.isEmpty { lines.append("match_headers = [" + match.headers.map(renderField).joined(separator: ", ") + "]") }
            if !match.query.isEmpty { lines.append("match_query = [" + match.query.map(renderField).joined(separator: ", ") + "]") }
            if !match.sources.isEmpty { lines.append("sources = [" + match.sources.map(quoted).joined(separator: ", ") + "]") }
            if let names = match.serverNames { lines.append("sni = [" + names.map(quoted).joined(separator: ", ") + "]") }
            if let body = match.body {
                var parts = ["max_size = \(body.maxSize)"]
                if let regex = body.regex { parts.append("regex = \(quoted(regex))") }
                if !body.json.isEmpty {
                    parts.append("json = [" + body.json.map { "{ path = \(quoted($0.path)), value = \(quoted($0.value)) }" }
                        .joined(separator: ", ") + "]")
                }
                lines.append("match_body = { " + parts.joined(separator: ", ") + " }")
            }
            if let subject = match.clientSubject {
                if let present = subject.present {
                    lines.append("client_subject = { present = \(present) }")
                } else if let regex = subject.regex {
                    lines.append("client_subject = { regex = \(quoted(regex)) }")
                } else if let value = subject.value {
                    lines.append("client_subject = { value = \(quoted(value)) }")
                }
            }
            if match.priority != 0 { lines.append("priority = \(match.priority)") }
            let rewrite = route.rewrite
            if rewrite.stripPrefix { lines.append("strip_prefix = true") }
            if let prefix = rewrite.replacePrefix { lines.append("replace_prefix = \(quoted(prefix))") }
            if let regex = rewrite.regex {
                lines.append("rewrite = { regex = \(quoted(regex)), replacement = \(quoted(rewrite.replacement ?? "")) }")
            }
            if let host = rewrite.upstreamHost { lines.append("upstream_host = \(quoted(host))") }
            if let timeout = route.timeouts.connect { lines.append("connect_timeout = \(quoted(Units.format(timeout)))") }
            if let timeout = route.timeouts.response { lines.append("response_timeout = \(quoted(Units.format(timeout)))") }
            if let timeout = route.timeouts.total { lines.append("timeout = \(quoted(Units.format(timeout)))") }
            if let timeout = route.timeouts.read { lines.append("read_timeout = \(quoted(Units.format(timeout)))") }
            if route.retry != RetrySettings() {
                lines.append("retries = \(route.retry.retries)")
                lines.append("retry_on = [" + route.retry.on.map(quoted).joined(separator: ", ") + "]")
                if route.retry.nonIdempotent { lines.append("retry_non_idempotent = true") }
            }
            for (key, edits) in [("request_headers", rewrite.requestHeaders), ("response_headers", rewrite.responseHeaders)]
            where !edits.isEmpty {
                func table(_ pairs: [HeaderPair]) -> String {
                    "{ " + pairs.map { "\(quotedKey($0.name)) = \(quoted($0.value))" }.joined(separator: ", ") + " }"
                }
                lines.append("\(key) = { set = \(table(edits.set)), add = \(table(edits.add)), remove = ["
                    + edits.remove.map(quoted).joined(separator: ", ") + "] }")
            }
            if let limit = route.maxBodySize { lines.append("max_body_size = \(limit)") }
            if !route.filters.isEmpty { lines.append("filters = " + list(route.filters)) }
            switch route.action {
            case .proxy(let upstream):
                lines.append("upstream = \(quoted(upstream))")
            case .split(let targets, let key):
                lines.append("split = [" + targets.map { "{ upstream = \(quoted($0.upstream)), weight = \($0.weight) }" }
                    .joined(separator: ", ") + "]")
                if let key { lines.append("split_key = \(quoted(key))") }
            case .respond(let status, let headers, let body):
                let headerText = headers.map { "\(quotedKey($0.name)) = \(quoted($0.value))" }.joined(separator: ", ")
                lines.append("respond = { status = \(status), body = \(quoted(body)), headers = { \(headerText) } }")
            case .redirect(let status, let location):
                lines.append("redirect = { status = \(status), location = \(quoted(location)) }")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func quoted(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\t": escaped += "\\t"
            case "\r": escaped += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    escaped += String(format: "\\u%04X", scalar.value)
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return escaped + "\""
    }

    /// One `[filters.NAME]` table. Files are written as the resolved paths they were read from (never their
    /// content: secrets stay in their files), so the dump loads the same files from any directory.
    private func render(_ filter: FilterSettings) -> [String] {
        var lines = ["[filters.\(quotedKey(filter.name))]", "kind = \(quoted(filter.kind.name.rawValue))"]
        switch filter.kind {
        case .rateLimit(let limit):
            lines += [
                "rate = \(limit.rate)", "per = \(quoted(Units.format(limit.per)))", "burst = \(limit.burst)",
                "key = " + list(limit.key.map(\.description)), "scope = \(quoted(limit.scope.rawValue))",
                "delay = \(limit.delay)", "status = \(limit.status)",
            ]
            if let redis = limit.redis {
                lines.append("redis = { address = \(quoted(redis.address.description)), "
                    + "timeout = \(quoted(Units.format(redis.timeout))), pool_size = \(redis.poolSize), "
                    + "on_failure = \(quoted(redis.onFailure.rawValue)), key_prefix = \(quoted(redis.keyPrefix)) }")
            }
        case .basicAuth(let auth):
            lines += ["realm = \(quoted(auth.realm))", "htpasswd = \(quoted(auth.htpasswdFile))"]
        case .jwt(let jwt):
            lines.append("algorithms = " + list(jwt.algorithms.map(\.rawValue)))
            if !jwt.issuers.isEmpty { lines.append("issuers = " + list(jwt.issuers)) }
            if !jwt.audiences.isEmpty { lines.append("audiences = " + list(jwt.audiences)) }
            lines.append("leeway = \(quoted(Units.format(jwt.leeway)))")
            if let file = jwt.jwksFile { lines.append("jwks_file = \(quoted(file))") }
            if let url = jwt.jwksURL {
                lines += ["jwks_url = \(quoted(url))", "jwks_refresh = \(quoted(Units.format(jwt.jwksRefresh)))"]
            }
            if let file = jwt.secretFile { lines.append("secret_file = \(quoted(file))") }
            lines += ["header = \(quoted(jwt.header))", "max_token_size = \(jwt.maxTokenSize)"]
            if !jwt.forwardClaims.isEmpty {
                lines.append("forward_claims = { " + jwt.forwardClaims.map { "\(quotedKey($0.claim)) = \(quoted($0.header))" }
                    .joined(separator: ", ") + " }")
            }
            if !jwt.requireClaims.isEmpty {
                lines.append("require_claims = { " + jwt.requireClaims.map { "\(quotedKey($0.claim)) = \(quoted($0.value))" }
                    .joined(separator: ", ") + " }")
            }
        case .ipRules(let rules):
            lines += ["allow = " + list(rules.allow), "deny = " + list(rules.deny)]
        }
        return lines
    }

    /// A TOML array of strings.
    private func list(_ items: [String]) -> String {
        "[" + items.map(quoted).joined(separator: ", ") + "]"
    }

    private func renderField(_ field: FieldMatch) -> String {
        var parts = ["name = \(quoted(field.name))"]
        if let value = field.value { parts.append("value = \(quoted(value))") }
        if let regex = field.regex { parts.append("regex = \(quoted(regex))") }
        if let present = field.present { parts.append("present = \(present)") }
        return "{ " + parts.joined(separator: ", ") + " }"
    }

    private func renderTarget(_ target: UpstreamTarget) -> String {
        guard target.weight != 1 || target.backup || target.maxRequests != nil else {
            return quoted(target.address.description)
        }
        return "{ address = \(quoted(target.address.description)), weight = \(target.weight)"
            + (target.backup ? ", backup = true" : "")
            + (target.maxRequests.map { ", max_requests = \($0)" } ?? "") + " }"
    }

    private func quotedKey(_ key: String) -> String {
        let bare = !key.isEmpty && key.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F
        }
        return bare ? key : quoted(key)
    }
}

extension ConfigSchema {
    /// The KEYS section of jester.toml(5), rendered from the schema so the manual lists every key with its type
    /// and default and cannot drift from the code (a test compares it with Man/jester.toml.5).
    public static func manualReference() -> String {
        var out = ".SH KEYS\n"
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "-", with: "\\-")
        }
        func render(_ table: Table, title: String) {
            out += ".SS \(escape(title))\n"
            for field in table.fields {
                if case .table = field.type { continue }
                if case .array(.table) = field.type { continue }
                if case .map(.table) = field.type { continue }
                if case .map(.kinds) = field.type { continue }
                out += ".TP\n.B \(escape(field.name))\n"
                var line = escape(field.type.summary.prefix(1).uppercased() + field.type.summary.dropFirst())
                if field.isRequired {
                    line += "; required"
                } else if let value = field.defaultValue {
                    line += "; default: " + escape(value)
                }
                out += roffLines(line + ". " + escape(field.summary))
            }
        }
        render(root, title: "the top level")
        render(server, title: "[server]")
        render(log, title: "[log]")
        render(http, title: "[http]")
        render(listener, title: "[[listeners]]")
        render(tls, title: "[listeners.tls]")
        render(certificate, title: "[[listeners.tls.certificates]]")
        render(hsts, title: "[listeners.hsts]")
        render(route, title: "[[routes]]")
        render(fieldMatch, title: "[[routes]] match_headers, match_query = [{ ... }]")
        render(clientSubject, title: "[[routes]] client_subject = { ... }")
        render(bodyMatch, title: "[[routes]] match_body = { ... }")
        render(jsonField, title: "[[routes]] match_body.json = [{ ... }]")
        render(split, title: "[[routes]] split = [{ ... }]")
        render(rewrite, title: "[[routes]] rewrite = { ... }")
        render(headerEdits, title: "[[routes]] request_headers, response_headers = { ... }")
        render(respond, title: "[[routes]] respond = { ... }")
        render(redirect, title: "[[routes]] redirect = { ... }")
        render(upstream, title: "[upstreams.NAME]")
        render(target, title: "[upstreams.NAME] targets = [{ ... }]")
        render(healthCheck, title: "[upstreams.NAME.health_check]")
        render(circuitBreaker, title: "[upstreams.NAME.circuit_breaker]")
        render(upstreamTLS, title: "[upstreams.NAME.tls]")
        for table in filterKinds { render(table, title: table.title) }
        render(redis, title: "[filters.NAME] redis = { ... }")
        return out
    }

    /// Text as roff source lines of at most 80 bytes (what `mandoc -T lint` asks), broken at spaces; a line
    /// that would start with a control character is escaped so it stays text.
    static func roffLines(_ text: String, width: Int = 80) -> String {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if !current.isEmpty, current.utf8.count + 1 + word.utf8.count > width {
                lines.append(current)
                current = String(word)
            } else {
                current += current.isEmpty ? String(word) : " " + word
            }
        }
        lines.append(current)
        return lines.enumerated().map { index, line in
            index > 0 && (line.hasPrefix(".") || line.hasPrefix("'")) ? "\\&" + line : line
        }.joined(separator: "\n") + "\n"
    }
}
