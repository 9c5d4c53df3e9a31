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
    /// Where each TLS listener's certificates are (their `cert` and `key` keys), in order.
    private(set) var tlsCertificateLocations: [String: [CertificateLocations]] = [:]
    /// Where each upstream's client certificate is (`cert` and `key` of its `tls`).
    private(set) var upstreamCertificateLocations: [String: CertificateLocations] = [:]

    /// Where a certificate entry's two files are named: a problem with the key is reported at `key`, one with the
    /// certificate at `cert`, so the operator is sent to the line (and the file) to fix.
    struct CertificateLocations {
        var certificate: SourceLocation
        var key: SourceLocation
    }
    /// Where filters and the lists naming them are, for the checks of whole chains (ConfigDecoder+Filters).
    var filterLocations = FilterLocations()
    /// Where policies and the entries attaching them are (PolicySettings).
    var policyLocations = PolicyLocations()
    /// Where the files a snapshot names are read from (`[control_plane] files`).
    var snapshotFiles = SnapshotFiles.refused
    /// False for the control plane's check over a data plane's bootstrap (`SnapshotFileCheck`): the files
    /// `[control_plane]` names are the data planes', not on this host.
    var checksControlPlaneFiles = true

    /// What becomes of a file name in a control plane's snapshot.
    enum SnapshotFiles {
        /// The bootstrap names no directory for them: refused.
        case refused
        /// Read from this directory (a data plane whose bootstrap sets `[control_plane] files`).
        case directory(String)
        /// Checked in form but not read: the control plane's check, since the files are the data planes'.
        case unchecked
    }
    /// Problems that do not stop the configuration (`Configuration.warnings`).
    var warnings: [ConfigDiagnostic] = []
    /// Where `server.workers` is set (HTTP/3 bounds it).
    var workersLocation: SourceLocation?

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
            workersLocation = table.location(of: "workers")
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
        if let node = top.take("admin", decoder: &self) { configuration.admin = decodeAdmin(node) }
        if let node = top.take("tracing", decoder: &self) { configuration.tracing = decodeTracing(node) }
        if let node = top.take("control_plane", decoder: &self) {
            configuration.controlPlane = decodeControlPlane(node)
        }
        if let node = top.take("metrics", decoder: &self) { configuration.metrics = decodeMetrics(node) }
        if let node = top.take("cache", decoder: &self) { configuration.cache = decodeCacheStore(node) }
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
            listener.http2Only = table.boolean("http2_only", decoder: &self)
            if listener.servesOnlyHTTP2, !listener.servesHTTP2 {
                report(table.location(of: "http2_only"), "http2_only = true needs HTTP/2: the listener has http2 = false")
            }
            if listener.servesOnlyHTTP2, listener.isTCP {
                report(table.location(of: "http2_only"), "http2_only is for http listeners, not protocol = \"tcp\"")
            }
            let filterEntries = table.locatedStrings("filters", decoder: &self)
            listener.filters = filterEntries.map { $0.map(\.value) }
            if let node = table.take("policies", decoder: &self) {
                listener.policies = decodePolicyAttachments(node, owner: "listener '\(name ?? "")'")
                if listener.isTCP, !listener.policies.isEmpty {
                    report(node.location, "'policies' needs an http listener, not protocol = \"tcp\"")
                }
            }
            if let node = table.take("tls", decoder: &self) {
                listener.tls = tls(node, listener: name ?? "")
                if !listener.servesHTTP2, listener.tls?.alpn?.contains("h2") == true {
                    report(node.location, "'alpn' offers h2, but the listener has http2 = false")
                }
                if listener.servesOnlyHTTP2, let alpn = listener.tls?.alpn, alpn != ["h2"] {
                    report(node.location, "'alpn' must be [\"h2\"] (or unset) on a listener with http2_only = true")
                }
                if listener.isTCP { report(node.location, "TLS is supported on http listeners only (so far)") }
                if let name, listener.tls != nil { tlsLocations[name] = node.location }
            }
            listener.http3 = table.boolean("http3", decoder: &self)
            listener.http3Retry = table.choice("http3_retry", decoder: &self)
            if listener.http3Retry != nil, !listener.servesHTTP3 {
                report(table.location(of: "http3_retry"), "http3_retry needs http3 = true")
            }
            listener.http3EarlyData = table.boolean("http3_early_data", decoder: &self)
            if listener.acceptsHTTP3EarlyData {
                if !listener.servesHTTP3 {
                    report(table.location(of: "http3_early_data"), "http3_early_data needs http3 = true")
                } else if listener.tls?.sessionTickets == false {
                    report(table.location(of: "http3_early_data"),
                        "http3_early_data needs session tickets (0-RTT resumes a session): remove session_tickets = false")
                }
            }
            if listener.servesHTTP3 {
                // QUIC is TLS 1.3 inside: the listener's certificates serve both (and the same names).
                if listener.tls == nil {
                    report(table.location(of: "http3"),
                        "http3 = true needs a TLS listener ([listeners.tls]): QUIC is always encrypted")
                }
                if listener.servesOnlyHTTP2 {
                    report(table.location(of: "http3"), "http3 and http2_only exclude each other")
                }
            }
            decodeHTTPSOptions(&table, into: &listener)
            if let node = table.take("compression", decoder: &self) {
                listener.compression = decodeCompression(node)
                if listener.isTCP {
                    report(node.location, "'compression' needs an http listener, not protocol = \"tcp\"")
                }
            }
            if let node = table.take("error_pages", decoder: &self) {
                listener.errorPages = decodeErrorPages(node)
                if listener.isTCP { report(node.location, "'error_pages' needs an http listener, not protocol = \"tcp\"") }
            }
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
                configuration.upstreams[configuration.upstreams.count - 1].tls = upstreamTLS(node, upstream: name)
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
        configuration.policies = decodePolicies(&top)
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
        if let workers = configuration.server.workers, workers > 256,
            let http3 = configuration.listeners.first(where: \.servesHTTP3)
        {
            report(workersLocation ?? root.location,
                "listener '\(http3.name)' has http3 = true, which allows at most 256 workers (connection IDs name the worker in one byte)")
        }
        checkFilterChains(configuration)
        checkPolicyAttachments(configuration)
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
            tlsCertificateLocations[listener, default: []].append(
                CertificateLocations(
                    certificate: certificate.location(of: "cert"), key: certificate.location(of: "key")))
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
        let absolute: String
        if location.pointer != nil {
            // Written in a control plane's snapshot: only a name under the directory the host set aside for them,
            // or the master (root) would read, serve or send any file on the host.
            guard let resolved = snapshotFilePath(path, at: location) else { return nil }
            absolute = resolved
        } else {
            let base = (location.file as NSString).deletingLastPathComponent
            absolute = path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
        }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: absolute))
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? "cannot be read"
            report(location, "cannot read \(absolute): \(reason)")
            return nil
        }
    }

    /// The file `path` names, for messages and the dump: resolved against the configuration file's directory, or
    /// for a snapshot's name, against the directory set aside for them (the name as written where there is none).
    func filePath(_ path: String, at location: SourceLocation) -> String {
        guard location.pointer != nil else { return Self.resolve(path, at: location) }
        if case .directory(let directory) = snapshotFiles { return directory + "/" + path }
        return path
    }

    /// Where a snapshot's file name leads, or nil (reported, unless only the control plane is checking).
    private mutating func snapshotFilePath(_ path: String, at location: SourceLocation) -> String? {
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !components.contains("..") else {
            report(location, ConfigSnapshot.noHostFiles(path))
            return nil
        }
        switch snapshotFiles {
        case .refused:
            report(location, ConfigSnapshot.noFilesDirectory(path))
            return nil
        case .unchecked:
            return nil
        case .directory(let directory):
            return directory + "/" + path
        }
    }

    /// `[upstreams.NAME.tls]`, with the CA and client certificate files read.
    private mutating func upstreamTLS(_ node: ConfigNode, upstream: String) -> UpstreamTLSSettings? {
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
            upstreamCertificateLocations[upstream] = CertificateLocations(
                certificate: reader.location(of: "cert"), key: reader.location(of: "key"))
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

