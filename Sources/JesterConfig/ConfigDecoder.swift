// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
/// Turns a located TOML tree into a `Configuration`, collecting every problem instead of stopping at the first.
///
/// Each table is read through a `TableReader` bound to its `ConfigSchema.Table`: reading a key the schema does not
/// declare is a programming error, and keys left unread at the end are the user's unknown keys, reported with the
/// closest known name.
struct ConfigDecoder {
    private(set) var diagnostics: [ConfigDiagnostic] = []
    /// Where each TLS listener's `tls` table is, for problems found later (a certificate OpenSSL rejects).
    private(set) var tlsLocations: [String: SourceLocation] = [:]
    /// Where each upstream's `tls` table is.
    private(set) var upstreamTLSLocations: [String: SourceLocation] = [:]
    /// Where each TLS listener's certificates are (their `cert` keys), in order.
    private(set) var tlsCertificateLocations: [String: [SourceLocation]] = [:]
    /// Where filters and the lists naming them are, for the checks of whole chains (ConfigDecoder+Filters).
    var filterLocations = FilterLocations()
    /// Problems that do not stop the configuration (`Configuration.warnings`).
    var warnings: [ConfigDiagnostic] = []

    mutating func decode(_ root: ConfigNode) -> Configuration {
        var configuration = Configuration()
        guard var top = TableReader(root, ConfigSchema.root, decoder: &self) else { return configuration }
        _ = top.stringArray("include", decoder: &self)  // handled by the loader; declared so it is not unknown

        if let node = top.take("server", decoder: &self), var table = TableReader(node, ConfigSchema.server, decoder: &self) {
            let defaults = ServerSettings()
            configuration.server = ServerSettings(
                workers: table.integer("workers", decoder: &self),
                user: table.string("user", decoder: &self),
                group: table.string("group", decoder: &self),
                pidFile: table.string("pid_file", decoder: &self) ?? defaults.pidFile,
                controlSocket: table.string("control_socket", decoder: &self) ?? defaults.controlSocket,
                controlGroup: table.string("control_group", decoder: &self),
                drainTimeout: table.duration("drain_timeout", decoder: &self) ?? defaults.drainTimeout,
                workerStartTimeout: table.duration("worker_start_timeout", decoder: &self)
                    ?? defaults.workerStartTimeout,
                maxDrainingGenerations: table.integer("max_draining_generations", decoder: &self)
                    ?? defaults.maxDrainingGenerations)
            configuration.server.ticketKeyRotation = table.duration("ticket_key_rotation", decoder: &self)
            configuration.server.maxConnections = table.integer("max_connections", decoder: &self)
            configuration.server.maxConnectionsPerClient = table.integer("max_connections_per_client", decoder: &self)
            if let rotation = configuration.server.ticketKeyRotation, rotation < .seconds(60) {
                report(table.location(of: "ticket_key_rotation"), "'ticket_key_rotation' must be at least 1m")
            }
            table.finish(decoder: &self)
        }
        if let node = top.take("log", decoder: &self), var table = TableReader(node, ConfigSchema.log, decoder: &self) {
            let defaults = LogSettings()
            configuration.log = LogSettings(
                level: table.choice("level", decoder: &self) ?? defaults.level,
                accessLog: table.boolean("access_log", decoder: &self) ?? defaults.accessLog)
            configuration.log.accessLogFile = table.string("access_log_file", decoder: &self)
            if let path = configuration.log.accessLogFile, !path.hasPrefix("/") {
                report(table.location(of: "access_log_file"),
                    "'access_log_file' must be an absolute path (the master opens it, whatever its directory)")
            }
            if let names = table.choiceArray("access_log_fields", decoder: &self) {
                let fields = names.compactMap(AccessLogField.init(rawValue:))
                // Every field in the usual order is the default, spelt out (as `config dump` writes it).
                configuration.log.accessLogFields = fields == AccessLogField.allCases ? nil : fields
            }
            table.finish(decoder: &self)
        }
        if let node = top.take("http", decoder: &self), var table = TableReader(node, ConfigSchema.http, decoder: &self) {
            let defaults = HTTPSettings()
            configuration.http = HTTPSettings(
                maxRequestHeadSize: table.size("max_request_head_size", decoder: &self).map(Int.init)
                    ?? defaults.maxRequestHeadSize,
                maxURILength: table.size("max_uri_length", decoder: &self).map(Int.init) ?? defaults.maxURILength,
                maxHeaderCount: table.integer("max_header_count", decoder: &self) ?? defaults.maxHeaderCount,
                maxBodySize: table.size("max_body_size", decoder: &self) ?? defaults.maxBodySize,
                clientHeaderTimeout: table.duration("client_header_timeout", decoder: &self)
                    ?? defaults.clientHeaderTimeout,
                keepaliveTimeout: table.duration("keepalive_timeout", decoder: &self) ?? defaults.keepaliveTimeout,
                keepaliveRequests: table.integer("keepalive_requests", decoder: &self) ?? defaults.keepaliveRequests,
                forwardedHeader: table.boolean("forwarded_header", decoder: &self) ?? defaults.forwardedHeader,
                underscoresInHeaders: table.choice("underscores_in_headers", decoder: &self)
                    ?? defaults.underscoresInHeaders,
                clientBodyTimeout: table.duration("client_body_timeout", decoder: &self) ?? defaults.clientBodyTimeout,
                sendTimeout: table.duration("send_timeout", decoder: &self) ?? defaults.sendTimeout,
                maxConnections: table.integer("max_connections", decoder: &self) ?? defaults.maxConnections,
                maxConnectionsPerClient: table.integer("max_connections_per_client", decoder: &self)
                    ?? defaults.maxConnectionsPerClient)
            configuration.http.http2MaxStreams = table.integer("http2_max_concurrent_streams", decoder: &self)
            configuration.http.connectionRequestRate = table.integer("connection_request_rate", decoder: &self)
            if let header = table.string("request_id_header", decoder: &self) {
                if header.isEmpty || !header.utf8.allSatisfy(ASCII.isToken) {
                    report(table.location(of: "request_id_header"), "'\(header)' is not a header field name")
                } else {
                    configuration.http.requestIDHeader = header
                }
            }
            table.finish(decoder: &self)
        }
        var listenerNodes: [ConfigNode] = []
        var listenerUpstreamLocations: [SourceLocation] = []
        let listenerTables = top.tables("listeners", decoder: &self)
        if listenerTables.isEmpty, top.has("listeners") {
            report(root.location, "at least one [[listeners]] is needed")
        }
        for node in listenerTables {
            guard var table = TableReader(node, ConfigSchema.listener, decoder: &self) else { continue }
            let name = table.string("name", decoder: &self)
            let address = table.address("address", decoder: &self)
            let backlog = table.integer("backlog", decoder: &self) ?? 511
            var listener = ListenerSettings(name: name ?? "", address: address ?? SocketAddressSpec(host: "0.0.0.0", port: 1),
                backlog: backlog)
            let protocolName = table.choice("protocol", decoder: &self)
            listener.protocolName = protocolName == "tcp" ? "tcp" : nil
            listener.upstream = table.string("upstream", decoder: &self)
            listener.idleTimeout = table.duration("idle_timeout", decoder: &self)
            let trusted = table.stringArray("proxy_protocol_from", decoder: &self)
            for source in trusted ?? [] where CIDR(source) == nil {
                report(table.location(of: "proxy_protocol_from"),
                    "'\(source)' is not an address or network (\"10.0.0.0/8\", \"::1\")")
            }
            listener.proxyProtocolFrom = trusted?.isEmpty == false ? trusted : nil
            if listener.isTCP, listener.upstream == nil {
                report(node.location, "a tcp listener needs 'upstream'")
            }
            if !listener.isTCP, listener.upstream != nil {
                report(table.location(of: "upstream"), "'upstream' on a listener needs protocol = \"tcp\" (HTTP listeners use routes)")
            }
            listener.http2 = table.boolean("http2", decoder: &self)
            let filterEntries = table.locatedStrings("filters", decoder: &self)
            listener.filters = filterEntries.map { $0.map(\.value) }
            if let node = table.take("tls", decoder: &self) {
                listener.tls = tls(node, listener: name ?? "")
                if !listener.servesHTTP2, listener.tls?.alpn?.contains("h2") == true {
                    report(node.location, "'alpn' offers h2, but the listener has http2 = false")
                }
                if listener.isTCP { report(node.location, "TLS is supported on http listeners only (so far)") }
                if let name, listener.tls != nil { tlsLocations[name] = node.location }
            }
            decodeHTTPSOptions(&table, into: &listener)
            table.finish(decoder: &self)
            if name != nil, address != nil {
                listenerUpstreamLocations.append(table.location(of: "upstream"))
                filterLocations.listeners.append(filterEntries ?? [])
                filterLocations.listenerKeys.append(table.location(of: "filters"))
                configuration.listeners.append(listener)
                listenerNodes.append(node)
            }
        }
        var upstreamNodes: [String: ConfigNode] = [:]
        for (name, node) in top.map("upstreams", decoder: &self).sorted(by: { $0.key < $1.key }) {
            guard var table = TableReader(node, ConfigSchema.upstream, decoder: &self) else { continue }
            let defaults = UpstreamSettings(name: name, targets: [])
            let targets = table.targetArray("targets", decoder: &self) ?? []
            if targets.isEmpty, table.has("targets") {
                report(node.location, "upstream '\(name)' needs at least one target")
            }
            configuration.upstreams.append(
                UpstreamSettings(
                    name: name, targets: targets,
                    connectTimeout: table.duration("connect_timeout", decoder: &self) ?? defaults.connectTimeout,
                    responseTimeout: table.duration("response_timeout", decoder: &self) ?? defaults.responseTimeout,
                    maxIdleConnections: table.integer("max_idle_connections", decoder: &self)
                        ?? defaults.maxIdleConnections,
                    idleTimeout: table.duration("idle_timeout", decoder: &self) ?? defaults.idleTimeout,
                    balance: table.choice("balance", decoder: &self) ?? defaults.balance,
                    hashKey: hashKey(&table) ?? defaults.hashKey,
                    maxFails: table.integer("max_fails", decoder: &self) ?? defaults.maxFails,
                    failTimeout: table.duration("fail_timeout", decoder: &self) ?? defaults.failTimeout,
                    slowStart: table.duration("slow_start", decoder: &self) ?? defaults.slowStart,
                    connectAttempts: table.integer("connect_attempts", decoder: &self) ?? defaults.connectAttempts))
            configuration.upstreams[configuration.upstreams.count - 1].healthCheck = healthCheck(&table)
            configuration.upstreams[configuration.upstreams.count - 1].retryBudgetPercent =
                table.integer("retry_budget", decoder: &self) ?? 20
            configuration.upstreams[configuration.upstreams.count - 1].sendProxyProtocol =
                table.choice("send_proxy_protocol", decoder: &self)
            if let node = table.take("circuit_breaker", decoder: &self),
                var reader = TableReader(node, ConfigSchema.circuitBreaker, decoder: &self)
            {
                var breaker = CircuitBreakerSettings()
                breaker.maxRequests = reader.integer("max_requests", decoder: &self) ?? breaker.maxRequests
                breaker.failurePercent = reader.integer("failure_percent", decoder: &self) ?? breaker.failurePercent
                breaker.minimumRequests = reader.integer("minimum_requests", decoder: &self) ?? breaker.minimumRequests
                breaker.window = reader.duration("window", decoder: &self) ?? breaker.window
                breaker.openFor = reader.duration("open_for", decoder: &self) ?? breaker.openFor
                breaker.halfOpenRequests = reader.integer("half_open_requests", decoder: &self) ?? breaker.halfOpenRequests
                reader.finish(decoder: &self)
                configuration.upstreams[configuration.upstreams.count - 1].circuitBreaker = breaker
            }
            configuration.upstreams[configuration.upstreams.count - 1].maxRequestsPerTarget =
                table.integer("max_requests_per_target", decoder: &self)
            if let name = table.choice("protocol", decoder: &self), name == "h2" {
                configuration.upstreams[configuration.upstreams.count - 1].protocolName = name
                if configuration.upstreams.last?.healthCheck?.type == "http" {
                    report(table.location(of: "health_check"),
                        "HTTP health checks of an h2 upstream are not implemented yet; use type = \"tcp\"")
                }
            }
            if let interval = table.duration("resolve_interval", decoder: &self) {
                if interval < .seconds(1) { report(table.location(of: "resolve_interval"), "'resolve_interval' must be at least 1s") }
                configuration.upstreams[configuration.upstreams.count - 1].resolveInterval = interval
            }
            if let cookie = table.string("sticky_cookie", decoder: &self) {
                if cookie.isEmpty || !cookie.utf8.allSatisfy(ASCII.isToken) {
                    report(table.location(of: "sticky_cookie"), "'\(cookie)' is not a cookie name")
                }
                configuration.upstreams[configuration.upstreams.count - 1].stickyCookie = cookie
            }
            if let node = table.take("tls", decoder: &self) {
                configuration.upstreams[configuration.upstreams.count - 1].tls = upstreamTLS(node)
                upstreamTLSLocations[name] = node.location
                if configuration.upstreams.last?.healthCheck?.type == "http" {
                    report(table.location(of: "health_check"),
                        "HTTP health checks over TLS are not implemented yet; use type = \"tcp\" for a TLS upstream")
                }
            }
            upstreamNodes[name] = node
            table.finish(decoder: &self)
        }
        configuration.filters = decodeFilters(&top)
        var routeLocations: [SourceLocation] = []
        for (index, node) in top.tables("routes", decoder: &self).enumerated() {
            if let route = decodeRoute(node, index: index, configuration: configuration) {
                configuration.routes.append(route)
                routeLocations.append(node.location)
            }
        }
        warnAboutShadowedRoutes(configuration.routes, at: routeLocations)
        top.finish(decoder: &self)
        checkListeners(configuration, listenerNodes)
        checkFilterChains(configuration)
        for (listener, location) in zip(configuration.listeners, listenerUpstreamLocations) {
            if let upstream = listener.upstream, configuration.upstream(named: upstream)?.protocolName == "h2" {
                report(location, "upstream '\(upstream)' speaks HTTP/2; a tcp listener relays bytes to HTTP/1 or any TCP pool")
            }
            if let upstream = listener.upstream, configuration.upstream(named: upstream)?.tls != nil {
                report(location, "upstream '\(upstream)' uses TLS, which tcp listeners do not support yet")
            }
            if let upstream = listener.upstream, configuration.upstream(named: upstream) == nil {
                report(location, "listener '\(listener.name)' names upstream '\(upstream)', which is not defined"
                    + hint(upstream, configuration.upstreams.map(\.name)))
            }
        }
        return configuration
    }

    private mutating func decodeRoute(_ node: ConfigNode, index: Int, configuration: Configuration) -> RouteSettings? {
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
        if timeouts != RouteTimeouts(), upstream == nil, splitNodes == nil {
            report(node.location, "route '\(name)' has upstream timeouts, but it does not proxy")
        }
        filterLocations.routes.append(filterEntries)
        return route
    }

    /// `[listeners.tls]`, with the certificate, key and CA files read (relative paths are relative to the file
    /// the key is written in).
    private mutating func tls(_ node: ConfigNode, listener: String) -> TLSListenerSettings? {
        guard var reader = TableReader(node, ConfigSchema.tls, decoder: &self) else { return nil }
        var tls = TLSListenerSettings()
        for entry in reader.tables("certificates", decoder: &self) {
            guard var certificate = TableReader(entry, ConfigSchema.certificate, decoder: &self) else { continue }
            let cert = certificate.string("cert", decoder: &self)
            let key = certificate.string("key", decoder: &self)
            var settings = TLSCertificateSettings(
                certificateFile: cert ?? "", keyFile: key ?? "",
                names: certificate.stringArray("names", decoder: &self) ?? [])
            if let cert { settings.certificatePEM = readFile(cert, at: certificate.location(of: "cert")) ?? Data() }
            if let key { settings.keyPEM = readFile(key, at: certificate.location(of: "key")) ?? Data() }
            if let ocsp = certificate.string("ocsp_response", decoder: &self) {
                settings.ocspResponseFile = ocsp
                settings.ocspResponse = readFile(ocsp, at: certificate.location(of: "ocsp_response"))
            }
            for name in settings.names where !Self.isServerName(name) {
                report(certificate.location(of: "names"), "'\(name)' is not a host name or *.wildcard")
            }
            certificate.finish(decoder: &self)
            tls.certificates.append(settings)
            tlsCertificateLocations[listener, default: []].append(certificate.location(of: "cert"))
        }
        if tls.certificates.isEmpty, reader.has("certificates") {
            report(reader.location(of: "certificates"), "a TLS listener needs at least one certificate")
        }
        tls.minVersion = reader.choice("min_version", decoder: &self) ?? tls.minVersion
        tls.ciphers = reader.string("ciphers", decoder: &self)
        tls.cipherSuites = reader.string("cipher_suites", decoder: &self)
        if let alpn = reader.stringArray("alpn", decoder: &self) {
            for name in alpn where name != "http/1.1" && name != "h2" {
                report(reader.location(of: "alpn"), "'\(name)' is not a protocol Jester serves (\"h2\", \"http/1.1\")")
            }
            tls.alpn = alpn
        }
        tls.sessionTickets = reader.boolean("session_tickets", decoder: &self) ?? true
        tls.clientCertificates = reader.choice("client_certificates", decoder: &self) ?? "off"
        tls.clientCA = reader.string("client_ca", decoder: &self)
        if let path = tls.clientCA { tls.clientCAPEM = readFile(path, at: reader.location(of: "client_ca")) }
        if tls.clientCertificates != "off", tls.clientCA == nil {
            report(reader.location(of: "client_certificates"), "client_certificates = \"\(tls.clientCertificates)\" needs 'client_ca'")
        }
        tls.clientSubjectHeader = reader.string("client_subject_header", decoder: &self)
        if let header = tls.clientSubjectHeader, header.isEmpty || !header.utf8.allSatisfy(ASCII.isToken) {
            report(reader.location(of: "client_subject_header"), "'\(header)' is not a header name")
        }
        reader.finish(decoder: &self)
        return tls
    }

    /// Reads a file the configuration names, resolving a relative path against the configuration file's directory.
    mutating func readFile(_ path: String, at location: SourceLocation) -> Data? {
        let base = (location.file as NSString).deletingLastPathComponent
        let absolute = path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
        do {
            return try Data(contentsOf: URL(fileURLWithPath: absolute))
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? "cannot be read"
            report(location, "cannot read \(absolute): \(reason)")
            return nil
        }
    }

    /// `[upstreams.NAME.tls]`, with the CA and client certificate files read.
    private mutating func upstreamTLS(_ node: ConfigNode) -> UpstreamTLSSettings? {
        guard var reader = TableReader(node, ConfigSchema.upstreamTLS, decoder: &self) else { return nil }
        var tls = UpstreamTLSSettings()
        tls.verify = reader.boolean("verify", decoder: &self) ?? true
        tls.ca = reader.string("ca", decoder: &self)
        if let ca = tls.ca { tls.caPEM = readFile(ca, at: reader.location(of: "ca")) }
        tls.serverName = reader.string("server_name", decoder: &self)
        if let name = tls.serverName, !Self.isServerName(name) || name.hasPrefix("*.") {
            report(reader.location(of: "server_name"), "'\(name)' is not a host name")
        }
        let cert = reader.string("cert", decoder: &self)
        let key = reader.string("key", decoder: &self)
        if let cert, let key {
            tls.certificate = TLSCertificateSettings(
                certificateFile: cert, keyFile: key,
                certificatePEM: readFile(cert, at: reader.location(of: "cert")) ?? Data(),
                keyPEM: readFile(key, at: reader.location(of: "key")) ?? Data())
        } else if cert != nil || key != nil {
            report(reader.location(of: cert == nil ? "key" : "cert"), "a client certificate needs both 'cert' and 'key'")
        }
        tls.sessionReuse = reader.boolean("session_reuse", decoder: &self) ?? true
        reader.finish(decoder: &self)
        return tls
    }

    /// A DNS name or a one-label wildcard (`*.example.com`).
    static func isServerName(_ name: String) -> Bool {
        let host = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
        return !host.isEmpty && host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.utf8.allSatisfy { $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
        }
    }

    private mutating func healthCheck(_ table: inout TableReader) -> HealthCheckSettings? {
        guard let node = table.take("health_check", decoder: &self),
            var reader = TableReader(node, ConfigSchema.healthCheck, decoder: &self)
        else { return nil }
        let defaults = HealthCheckSettings()
        var check = HealthCheckSettings(
            type: reader.choice("type", decoder: &self) ?? defaults.type,
            path: reader.string("path", decoder: &self) ?? defaults.path,
            interval: reader.duration("interval", decoder: &self) ?? defaults.interval,
            timeout: reader.duration("timeout", decoder: &self) ?? defaults.timeout,
            rise: reader.integer("rise", decoder: &self) ?? defaults.rise,
            fall: reader.integer("fall", decoder: &self) ?? defaults.fall)
        if let text = reader.string("expect_status", decoder: &self) {
            let bounds = text.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            if (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil,
                (100...599).contains(low), (low...599).contains(high)
            {
                check.expectStatus = low...high
            } else {
                report(reader.location(of: "expect_status"), "'expect_status' must be a status or a range such as \"200-399\"")
            }
        }
        reader.finish(decoder: &self)
        if !check.path.hasPrefix("/") || check.path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            report(reader.location(of: "path"), "a health check path must start with '/' and contain no spaces")
        }
        if check.interval < .milliseconds(100) {
            report(reader.location(of: "interval"), "a health check interval must be at least 100ms")
        }
        return check
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

    private mutating func checkListeners(_ configuration: Configuration, _ nodes: [ConfigNode]) {
        var names: [String: SourceLocation] = [:]
        var addresses: [SocketAddressSpec: SourceLocation] = [:]
        for (listener, node) in zip(configuration.listeners, nodes) {
            if let previous = names[listener.name] {
                report(node.location, "listener '\(listener.name)' is already defined at \(previous)")
            }
            if let previous = addresses[listener.address] {
                report(node.location, "address \(listener.address) is already used at \(previous)")
            }
            names[listener.name] = node.location
            addresses[listener.address] = node.location
        }
    }

    func hint(_ name: String, _ candidates: [String]) -> String {
        if let suggestion = Suggestion.closest(to: name, among: candidates) { return "; did you mean '\(suggestion)'?" }
        if candidates.isEmpty { return "" }
        return " (defined: \(candidates.joined(separator: ", ")))"
    }

    private func isValidHostPattern(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("*.") { name = name.dropFirst(2) }
        return !name.isEmpty && name.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
    }

    func isValidHeader(_ header: HeaderPair) -> Bool {
        let tchars = Set("!#$%&'*+-.^_`|~".utf8)
        let nameIsToken = !header.name.isEmpty && header.name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || tchars.contains(byte)
        }
        let valueIsClean = header.value.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }
        let lowercased = header.name.lowercased()
        let managed = ["content-length", "transfer-encoding", "connection"].contains(lowercased)
        return nameIsToken && valueIsClean && !managed
    }

    mutating func report(_ location: SourceLocation, _ message: String) {
        diagnostics.append(ConfigDiagnostic(location, message))
    }
}

extension ConfigDecoder {
    /// `hash_key`: "client_ip", "path", "header:NAME" or "cookie:NAME".
    mutating func hashKey(_ table: inout TableReader) -> String? {
        guard let value = table.string("hash_key", decoder: &self) else { return nil }
        if BalancingKey(value) != nil { return value }
        report(table.location(of: "hash_key"),
            "'hash_key' must be \"client_ip\", \"path\", \"header:NAME\" or \"cookie:NAME\", not \"\(value)\"")
        return nil
    }
}

