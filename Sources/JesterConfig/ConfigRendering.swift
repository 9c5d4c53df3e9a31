// SPDX-License-Identifier: Apache-2.0
import Foundation

extension Configuration {
    /// The effective configuration as TOML: includes merged, environment resolved, every default written out.
    /// Nothing in the format is secret yet; keys that will hold secrets (key passphrases, tokens) are redacted
    /// here when they arrive.
    public func renderTOML() -> String {
        var lines: [String] = ["# Effective configuration of \(files.first ?? "-") (hash \(hash))"]
        if files.count > 1 { lines.append("# Included: " + files.dropFirst().joined(separator: ", ")) }
        lines.append("")
        lines.append("[server]")
        lines.append(server.workers.map { "workers = \($0)" } ?? unset(ConfigSchema.server, "workers"))
        lines.append(server.user.map { "user = \(quoted($0))" } ?? unset(ConfigSchema.server, "user"))
        lines.append(server.group.map { "group = \(quoted($0))" } ?? unset(ConfigSchema.server, "group"))
        lines.append("pid_file = \(quoted(server.pidFile))")
        lines.append("control_socket = \(quoted(server.controlSocket))")
        lines.append(server.controlGroup.map { "control_group = \(quoted($0))" } ?? "# control_group: none")
        lines.append("drain_timeout = \(quoted(Units.format(server.drainTimeout)))")
        lines.append("worker_start_timeout = \(quoted(Units.format(server.workerStartTimeout)))")
        lines.append("max_draining_generations = \(server.maxDrainingGenerations)")
        // Optional keys an older binary's settings may lack: unset, they are written as their default, commented.
        lines.append(server.maxConnections.map { "max_connections = \($0)" } ?? unset(ConfigSchema.server, "max_connections"))
        lines.append(server.maxConnectionsPerClient.map { "max_connections_per_client = \($0)" }
            ?? unset(ConfigSchema.server, "max_connections_per_client"))
        lines.append(server.ticketKeyRotation.map { "ticket_key_rotation = \(quoted(Units.format($0)))" }
            ?? unset(ConfigSchema.server, "ticket_key_rotation"))
        lines += ["", "[log]", "level = \(quoted(log.level))", "access_log = \(log.accessLog)"]
        lines.append(log.accessLogFile.map { "access_log_file = \(quoted($0))" } ?? unset(ConfigSchema.log, "access_log_file"))
        lines.append("access_log_fields = " + list((log.accessLogFields ?? AccessLogField.allCases).map(\.rawValue)))
        lines += [
            "", "[http]", "max_request_head_size = \(Units.formatSize(Int64(http.maxRequestHeadSize)))",
            "max_uri_length = \(Units.formatSize(Int64(http.maxURILength)))",
            "max_header_count = \(http.maxHeaderCount)", "max_body_size = \(Units.formatSize(http.maxBodySize))",
            "client_header_timeout = \(quoted(Units.format(http.clientHeaderTimeout)))",
            "keepalive_timeout = \(quoted(Units.format(http.keepaliveTimeout)))",
            "keepalive_requests = \(http.keepaliveRequests)", "forwarded_header = \(http.forwardedHeader)",
            "underscores_in_headers = \(quoted(http.underscoresInHeaders))",
            "client_body_timeout = \(quoted(Units.format(http.clientBodyTimeout)))",
            "send_timeout = \(quoted(Units.format(http.sendTimeout)))",
            "max_connections = \(http.maxConnections)", "max_connections_per_client = \(http.maxConnectionsPerClient)",
        ]
        lines.append(http.http2MaxStreams.map { "http2_max_concurrent_streams = \($0)" }
            ?? unset(ConfigSchema.http, "http2_max_concurrent_streams"))
        lines.append(http.connectionRequestRate.map { "connection_request_rate = \($0)" }
            ?? unset(ConfigSchema.http, "connection_request_rate"))
        lines.append("request_id_header = \(quoted(http.requestIDHeader))")
        if let admin {
            // Only when present: the table's presence is what turns the API on.
            lines += ["", "[admin]"]
            switch admin.endpoint {
            case .tcp(let address): lines.append("address = \(quoted(address.description))")
            case .unix(let path): lines.append("socket = \(quoted(path))")
            }
            lines.append(admin.tokensFile.map { "tokens_file = \(quoted($0))" } ?? "# tokens_file: none")
        } else {
            lines += ["", "# [admin]: off"]
        }
        lines += ["", "[metrics]", "enabled = \(metrics.enabled)"]
        if let cache {
            lines += [
                "", "[cache]", "path = \(quoted(cache.path))", "max_size = \(Units.formatSize(cache.maxSize))",
                "entries = \(cache.entries)", "lock_timeout = \(quoted(Units.format(cache.lockTimeout)))",
                "uncacheable_hold = \(quoted(Units.format(cache.uncacheableHold)))",
            ]
        } else {
            lines += ["", "# [cache]: the defaults (path = \"/var/cache/jester\", max_size = 1GiB)"]
        }
        if let tracing {
            lines += [
                "", "[tracing]", "endpoint = \(quoted(tracing.endpoint))", "sample_ratio = \(tracing.sampleRatio)",
                "parent_based = \(tracing.parentBased)", "max_queue_size = \(tracing.maxQueueSize)",
                "max_batch_size = \(tracing.maxBatchSize)",
                "schedule_delay = \(quoted(Units.format(tracing.scheduleDelay)))",
                "export_timeout = \(quoted(Units.format(tracing.exportTimeout)))",
                "max_retry_time = \(quoted(Units.format(tracing.maxRetryTime)))",
            ]
        } else {
            lines += ["", "# [tracing]: off"]
        }
        if let controlPlane {
            let address = controlPlane.addresses.count == 1
                ? quoted(controlPlane.address.description)
                : "[" + controlPlane.addresses.map { quoted($0.description) }.joined(separator: ", ") + "]"
            lines += ["", "[control_plane]", "address = \(address)"]
            lines.append(controlPlane.node.map { "node = \(quoted($0))" } ?? "# node: the host name")
            lines.append("state_file = \(quoted(controlPlane.stateFile))")
            lines.append(controlPlane.files.map { "files = \(quoted($0))" } ?? "# files: none, a snapshot names no file")
            if let tls = controlPlane.tls {
                lines += ["ca = \(quoted(tls.ca))", "cert = \(quoted(tls.cert))", "key = \(quoted(tls.key))"]
            }
        } else {
            lines += ["", "# [control_plane]: off"]
        }
        for listener in listeners {
            lines += [
                "", "[[listeners]]", "name = \(quoted(listener.name))", "address = \(quoted(listener.address.description))",
                "backlog = \(listener.backlog)",
            ]
            let table = ConfigSchema.listener
            lines.append(listener.isTCP ? "protocol = \"tcp\"" : "protocol = \"http\"")
            if let upstream = listener.upstream { lines.append("upstream = \(quoted(upstream))") }
            lines.append(listener.idleTimeout.map { "idle_timeout = \(quoted(Units.format($0)))" } ?? unset(table, "idle_timeout"))
            lines.append(listener.http2.map { "http2 = \($0)" } ?? unset(table, "http2"))
            lines.append(listener.http2Only.map { "http2_only = \($0)" } ?? unset(table, "http2_only"))
            lines.append(listener.http3.map { "http3 = \($0)" } ?? unset(table, "http3"))
            lines.append(listener.http3Retry.map { "http3_retry = \(quoted($0))" } ?? unset(table, "http3_retry"))
            lines.append(listener.http3EarlyData.map { "http3_early_data = \($0)" } ?? unset(table, "http3_early_data"))
            lines.append("proxy_protocol_from = " + list(listener.proxyProtocolFrom ?? []))
            lines.append(listener.filters.map { "filters = " + list($0) } ?? unset(table, "filters"))
            lines.append("policies = " + render(listener.policies))
            lines.append(listener.redirectToHTTPS.map { "redirect_to_https = \($0)" } ?? unset(table, "redirect_to_https"))
            if listener.hsts == nil { lines.append(unset(table, "hsts")) }
            lines.append(listener.compression.map(\.renderedTOML) ?? unset(table, "compression"))
            lines.append(listener.errorPages.map(\.renderedTOML) ?? unset(table, "error_pages"))
            if listener.tls == nil { lines.append(unset(table, "tls")) }
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
            let table = ConfigSchema.upstream
            lines.append(upstream.stickyCookie.map { "sticky_cookie = \(quoted($0))" } ?? unset(table, "sticky_cookie"))
            lines.append(upstream.maxRequestsPerTarget.map { "max_requests_per_target = \($0)" }
                ?? unset(table, "max_requests_per_target"))
            lines.append("protocol = \(quoted(upstream.protocolName ?? "http1"))")
            lines.append(upstream.resolveInterval.map { "resolve_interval = \(quoted(Units.format($0)))" }
                ?? unset(table, "resolve_interval"))
            lines.append(upstream.sendProxyProtocol.map { "send_proxy_protocol = \(quoted($0))" }
                ?? unset(table, "send_proxy_protocol"))
            if upstream.circuitBreaker == nil { lines.append(unset(table, "circuit_breaker")) }
            if upstream.healthCheck == nil { lines.append(unset(table, "health_check")) }
            if upstream.tls == nil { lines.append(unset(table, "tls")) }
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
        for policy in policies { lines += [""] + render(policy) }
        for route in routes {
            lines += ["", "[[routes]]", "name = \(quoted(route.name))"]
            let table = ConfigSchema.route
            lines.append(route.listeners.isEmpty ? unset(table, "listeners") : "listeners = " + list(route.listeners))
            lines.append(route.hosts.isEmpty ? unset(table, "hosts") : "hosts = " + list(route.hosts))
            lines.append((route.match.exactPath ? "path = " : "path_prefix = ") + quoted(route.pathPrefix))
            let match = route.match
            if let regex = match.pathRegex { lines.append("path_regex = \(quoted(regex))") }
            lines.append(match.methods.isEmpty ? unset(table, "methods") : "methods = " + list(match.methods))
            lines.append("match_headers = [" + match.headers.map(renderField).joined(separator: ", ") + "]")
            lines.append("match_query = [" + match.query.map(renderField).joined(separator: ", ") + "]")
            lines.append(match.sources.isEmpty ? unset(table, "sources") : "sources = " + list(match.sources))
            lines.append(match.serverNames.map { "sni = " + list($0) } ?? unset(table, "sni"))
            lines.append(match.policyTags.map { "policy_tags = " + list($0) } ?? unset(table, "policy_tags"))
            if let body = match.body {
                var parts = ["max_size = \(Units.formatSize(body.maxSize))"]
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
            if match.body == nil { lines.append(unset(table, "match_body")) }
            if match.clientSubject == nil { lines.append(unset(table, "client_subject")) }
            lines.append("priority = \(match.priority)")
            let rewrite = route.rewrite
            lines.append("strip_prefix = \(rewrite.stripPrefix)")
            if let prefix = rewrite.replacePrefix { lines.append("replace_prefix = \(quoted(prefix))") }
            if let regex = rewrite.regex {
                lines.append("rewrite = { regex = \(quoted(regex)), replacement = \(quoted(rewrite.replacement ?? "")) }")
            }
            lines.append(rewrite.upstreamHost.map { "upstream_host = \(quoted($0))" } ?? unset(table, "upstream_host"))
            let timeouts = route.timeouts
            for (key, value) in [("connect_timeout", timeouts.connect), ("response_timeout", timeouts.response),
                ("timeout", timeouts.total), ("read_timeout", timeouts.read)]
            {
                lines.append(value.map { "\(key) = \(quoted(Units.format($0)))" } ?? unset(table, key))
            }
            lines.append("retries = \(route.retry.retries)")
            lines.append("retry_on = " + list(route.retry.on))
            lines.append("retry_non_idempotent = \(route.retry.nonIdempotent)")
            for (key, edits) in [("request_headers", rewrite.requestHeaders), ("response_headers", rewrite.responseHeaders)]
            where !edits.isEmpty {
                func table(_ pairs: [HeaderPair]) -> String {
                    "{ " + pairs.map { "\(quotedKey($0.name)) = \(quoted($0.value))" }.joined(separator: ", ") + " }"
                }
                lines.append("\(key) = { set = \(table(edits.set)), add = \(table(edits.add)), remove = ["
                    + edits.remove.map(quoted).joined(separator: ", ") + "] }")
            }
            lines.append(route.maxBodySize.map { "max_body_size = \(Units.formatSize($0))" } ?? unset(table, "max_body_size"))
            lines.append("filters = " + list(route.filters))
            lines.append("policies = " + render(route.policies))
            lines.append("policy_reroute = \(route.policyReroute)")
            lines.append(route.compression.map(\.renderedTOML) ?? unset(table, "compression"))
            lines.append(route.errorPages.map(\.renderedTOML) ?? unset(table, "error_pages"))
            lines.append(route.cache.map(\.renderedTOML) ?? unset(table, "cache"))
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
        QuotedString.basic(text)
    }

    /// One `[policies.NAME]` table; its configuration as the JSON text it is handed as (a TOML string).
    private func render(_ policy: PolicySettings) -> [String] {
        var lines = ["[policies.\(quotedKey(policy.name))]", "module = \(quoted(policy.module))"]
        if !policy.moduleDigest.isEmpty { lines.append("# module sha256: \(policy.moduleDigest)") }
        lines.append("config = \(quoted(policy.config))")
        if let manifest = policy.manifest { lines.append("manifest = \(quoted(manifest))") }
        if let version = policy.version { lines.append("version = \(quoted(version))") }
        lines += [
            "deny_status = \(policy.denyStatus)", "error_status = \(policy.errorStatus)",
            "read_body = \(policy.readsBody)", "body_limit = \(Units.formatSize(policy.bodyLimit))",
            "fuel = \(policy.fuel)", "memory = \(Units.formatSize(policy.memoryLimit))",
            "timeout = \(quoted(Units.format(policy.timeout)))", "failure_threshold = \(policy.failureThreshold)",
        ]
        return lines
    }

    private func render(_ attachments: [PolicyAttachment]) -> String {
        "[" + attachments.map { "{ policy = \(quoted($0.policy)), stage = \(quoted($0.stage.rawValue)) }" }
            .joined(separator: ", ") + "]"
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
            if limit.redis == nil { lines.append(unset(ConfigSchema.rateLimitFilter, "redis")) }
            if let redis = limit.redis {
                lines.append("redis = { address = \(quoted(redis.address.description)), "
                    + "timeout = \(quoted(Units.format(redis.timeout))), pool_size = \(redis.poolSize), "
                    + "on_failure = \(quoted(redis.onFailure.rawValue)), key_prefix = \(quoted(redis.keyPrefix)), "
                    + "database = \(redis.database)"
                    + (redis.username.map { ", username = \(quoted($0))" } ?? "")
                    + (redis.passwordFile.map { ", password_file = \(quoted($0))" } ?? "") + " }")
            }
        case .basicAuth(let auth):
            lines += ["realm = \(quoted(auth.realm))", "htpasswd = \(quoted(auth.htpasswdFile))"]
        case .jwt(let jwt):
            lines.append("algorithms = " + list(jwt.algorithms.map(\.rawValue)))
            let table = ConfigSchema.jwtFilter
            lines.append(jwt.issuers.isEmpty ? unset(table, "issuers") : "issuers = " + list(jwt.issuers))
            lines.append(jwt.audiences.isEmpty ? unset(table, "audiences") : "audiences = " + list(jwt.audiences))
            lines.append("leeway = \(quoted(Units.format(jwt.leeway)))")
            if let file = jwt.jwksFile { lines.append("jwks_file = \(quoted(file))") }
            if let url = jwt.jwksURL {
                lines += ["jwks_url = \(quoted(url))", "jwks_refresh = \(quoted(Units.format(jwt.jwksRefresh)))"]
            } else {
                lines.append(unset(table, "jwks_refresh"))  // only used with jwks_url
            }
            if let file = jwt.secretFile { lines.append("secret_file = \(quoted(file))") }
            lines += ["header = \(quoted(jwt.header))", "max_token_size = \(Units.formatSize(Int64(jwt.maxTokenSize)))"]
            lines.append(jwt.forwardClaims.isEmpty ? unset(table, "forward_claims") : "forward_claims = { " + jwt.forwardClaims.map { "\(quotedKey($0.claim)) = \(quoted($0.header))" }
                    .joined(separator: ", ") + " }")
            lines.append(jwt.requireClaims.isEmpty ? unset(table, "require_claims") : "require_claims = { " + jwt.requireClaims.map { "\(quotedKey($0.claim)) = \(quoted($0.value))" }
                    .joined(separator: ", ") + " }")
        case .ipRules(let rules):
            lines += ["allow = " + list(rules.allow), "deny = " + list(rules.deny)]
        case .hmacSignature(let hmac):
            lines += [
                "header = \(quoted(hmac.header))", "algorithm = \(quoted(hmac.algorithm.rawValue))",
                "encoding = \(quoted(hmac.encoding.rawValue))", "prefix = \(quoted(hmac.prefix))",
                "secret_file = \(quoted(hmac.secretFile))", "max_body = \(Units.formatSize(Int64(hmac.maxBody)))",
            ]
        case .cors(let cors):
            func corsList(_ value: CORSList) -> String {
                if case .listed(let items) = value { return list(items) }
                return quoted("*")
            }
            lines += [
                "allow_origins = " + corsList(cors.allowOrigins), "allow_methods = " + corsList(cors.allowMethods),
                "allow_headers = " + corsList(cors.allowHeaders), "expose_headers = " + corsList(cors.exposeHeaders),
                "allow_credentials = \(cors.allowCredentials)",
                cors.maxAge.map { "max_age = \(quoted(Units.format($0)))" }
                    ?? unset(ConfigSchema.corsFilter, "max_age"),
                "allow_private_network = \(cors.allowPrivateNetwork)",
            ]
        }
        return lines
    }

    /// A key left unset, as a comment giving its default from the schema (`# user = "jester", or ...`), so the
    /// dump names every key without changing what an optional one means when the dump is loaded back.
    private func unset(_ table: ConfigSchema.Table, _ key: String) -> String {
        "# \(key) = " + (table.field(key)?.defaultValue ?? "none")
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
        render(admin, title: "[admin]")
        render(metrics, title: "[metrics]")
        render(cacheStore, title: "[cache]")
        render(tracing, title: "[tracing]")
        render(controlPlane, title: "[control_plane]")
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
        render(compression, title: "[[routes]] compression = { ... }")
        render(compressionLevels, title: "[[routes]] compression.level = { ... }")
        render(errorPages, title: "[[routes]] error_pages = { ... }")
        render(routeCache, title: "[[routes]] cache = { ... }")
        render(upstream, title: "[upstreams.NAME]")
        render(target, title: "[upstreams.NAME] targets = [{ ... }]")
        render(healthCheck, title: "[upstreams.NAME.health_check]")
        render(circuitBreaker, title: "[upstreams.NAME.circuit_breaker]")
        render(upstreamTLS, title: "[upstreams.NAME.tls]")
        for table in filterKinds { render(table, title: table.title) }
        render(redis, title: "[filters.NAME] redis = { ... }")
        render(policy, title: "[policies.NAME]")
        render(policyAttachment, title: "[[listeners]], [[routes]] policies = [{ ... }]")
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

/// A string quoted as a TOML basic string, which is also a JSON string: quotes, backslashes and control
/// characters escaped. (The dump writes configuration text with it; a policy's `config` table is rendered to JSON
/// with it.)
enum QuotedString {
    static func basic(_ text: String) -> String {
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
}
