// SPDX-License-Identifier: Apache-2.0
/// The configuration format, declared once: every key with its type, default and description.
///
/// The loader checks documents against it (unknown keys, types), `jester config schema` prints it as JSON Schema,
/// and the tests hold the man page to it, so the three cannot drift apart.
public struct ConfigSchema: Sendable {
    /// The type of a configuration value.
    public indirect enum ValueType: Sendable {
        case string
        case integer(ClosedRange<Int>)
        case boolean
        /// `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"7d"` (`Units`).
        case duration
        /// `"16KiB"`, `"10MiB"`, `"1GiB"` (or kB/MB/GB, powers of ten), or an integer number of bytes (`Units`).
        case size
        /// One of a fixed set of strings.
        case choice([String])
        /// `ip:port` or `[v6]:port`: an IP address, never looked up (listeners bind it).
        case address
        /// `host:port`, `ip:port` or `[v6]:port`: an upstream target, whose host name the master resolves.
        case hostAddress
        /// An upstream target: an address, or a table with one (`target` below) and its options.
        case target(Table)
        case array(ValueType)
        case table(Table)
        /// A table whose keys are names chosen by the user (upstream pools, header names).
        case map(ValueType)
        /// A table whose keys depend on its `kind` (filters): one table per kind, each declaring `kind` as a
        /// one-value choice, so unknown keys are reported against the kind actually chosen.
        case kinds([Table])
        /// Any one of these types (`redirect_to_https = true` or a port).
        case either([ValueType])
        /// A number (integer or decimal) within a range (`sample_ratio = 0.01`).
        case number(ClosedRange<Double>)
        /// Any value (a table, an array, a string, a number or a boolean), passed on as JSON (a policy's `config`).
        case json

        /// How the type is described in messages and documentation.
        public var summary: String {
            switch self {
            case .string: return "a string"
            case .integer(let range): return "an integer from \(range.lowerBound) to \(range.upperBound)"
            case .boolean: return "true or false"
            case .duration: return "a duration: " + Units.durationForms
            case .size: return "a size: " + Units.sizeForms
            case .choice(let options): return "one of " + options.map { "\"\($0)\"" }.joined(separator: ", ")
            case .address: return "an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\""
            case .hostAddress: return "a host or IP address and port such as \"app.internal:8080\" or \"[::1]:8080\""
            case .target: return "an address, or a table { address, weight, backup }"
            case .array(let element): return "an array of " + element.pluralSummary
            case .table: return "a table"
            case .map(let value): return "a table of " + value.pluralSummary
            case .kinds: return "a table with a kind"
            case .either(let types): return types.map(\.summary).joined(separator: ", or ")
            case .number(let range): return "a number from \(range.lowerBound) to \(range.upperBound)"
            case .json: return "any value (passed on as JSON)"
            }
        }

        var pluralSummary: String {
            switch self {
            case .string: return "strings"
            case .address, .hostAddress: return "addresses"
            case .target: return "addresses or { address, weight, backup } tables"
            case .table, .kinds: return "tables"
            default: return "values (\(summary))"
            }
        }
    }

    /// One key of a table.
    public struct Field: Sendable {
        public var name: String
        public var type: ValueType
        /// The default as written in TOML, or nil when the key is required or has no default.
        public var defaultValue: String?
        public var isRequired: Bool
        public var summary: String

        public init(_ name: String, _ type: ValueType, default defaultValue: String? = nil, required: Bool = false,
            _ summary: String)
        {
            self.name = name
            self.type = type
            self.defaultValue = defaultValue
            self.isRequired = required
            self.summary = summary
        }
    }

    /// A table's keys.
    public struct Table: Sendable {
        /// How the table is named in messages, for example `[server]` or `[[routes]]`.
        public var title: String
        public var fields: [Field]

        public init(_ title: String, _ fields: [Field]) {
            self.title = title
            self.fields = fields
        }

        public func field(_ name: String) -> Field? { fields.first { $0.name == name } }
    }

    /// The top-level table.
    public static let root = Table(
        "the top level",
        [
            Field("include", .array(.string), default: "[]",
                "Further files to read, as glob patterns relative to this file; their tables are merged and their arrays appended."),
            Field("server", .table(server), "The process model: workers, user, control socket, pid file."),
            Field("log", .table(log), "Logging."),
            Field("http", .table(http), "Limits and timeouts of the HTTP/1.1 data plane."),
            Field("tracing", .table(tracing), default: "off",
                "OpenTelemetry tracing (jester-pipeline(7)): W3C trace context, spans exported over OTLP/HTTP."),
            Field("metrics", .table(metrics), default: "on",
                "The instance's Prometheus metrics (jester-metrics(7)): counted by every worker, served by the "
                    + "admin API."),
            Field("cache", .table(cacheStore), default: "the defaults",
                "The shared HTTP cache's store (see HTTP CACHE): its directory and size; routes opt in with cache."),
            Field("admin", .table(admin), default: "off",
                "The admin API (jester-admin(7)): status, configuration, routes, upstreams, and actions over HTTP."),
            Field("control_plane", .table(controlPlane), default: "off",
                "The control plane (jester control-plane) whose versions of routes, upstreams, filters and policies "
                    + "replace this file's, applied as reloads."),
            Field("listeners", .array(.table(listener)), required: true, "Addresses to accept connections on."),
            Field("routes", .array(.table(route)), default: "[]", "How requests are matched and answered."),
            Field("upstreams", .map(.table(upstream)), default: "{}", "Pools of servers that routes proxy to."),
            Field("filters", .map(.kinds(filterKinds)), default: "{}",
                "Named request filters (rate limits, authentication, IP rules) that routes and listeners list in order."),
            Field("policies", .map(.table(policy)), default: "{}",
                "Named Wasm policies (jester-policy(7)) that listeners and routes attach, each at a stage."),
        ])

    public static let server = Table(
        "[server]",
        [
            Field("workers", .integer(1...1024), default: "one per CPU",
                "Worker processes; at most 256 with an HTTP/3 listener (QUIC connection IDs name the worker in one byte)."),
            Field("user", .string, default: "\"jester\", or \"nobody\" when it does not exist",
                "The user workers run as when the master starts as root."),
            Field("group", .string, default: "the user's primary group", "The group workers run as."),
            Field("pid_file", .string, default: "\"/run/jester/jester.pid\"", "Where the master writes its pid."),
            Field("control_socket", .string, default: "\"/run/jester/control.sock\"",
                "The Unix socket jesterctl talks to (mode 0660)."),
            Field("control_group", .string,
                "Members of this group may use the control socket, besides root and the master's user."),
            Field("drain_timeout", .duration, default: "\"30s\"",
                "How long a graceful stop or drain waits for in-flight requests."),
            Field("worker_start_timeout", .duration, default: "\"10s\"",
                "How long new workers have to report ready."),
            Field("max_draining_generations", .integer(1...64), default: "4",
                "Old generations allowed to drain side by side; a reload beyond that closes the oldest at once."),
            Field("ticket_key_rotation", .duration, default: "\"1h\"",
                "How often the master makes a new TLS session-ticket key (every worker gets it; the two before it still resume)."),
            Field("max_connections", .integer(0...10_000_000), default: "0",
                "Client connections of the whole instance, all workers and draining generations together (0: no limit); more are closed as soon as they are accepted. http.max_connections limits each worker."),
            Field("max_connections_per_client", .integer(0...10_000_000), default: "0",
                "Connections from one client address to the whole instance (0: no limit); more are closed at once. Counted by address hash: a client may be refused early when its hash collides with busy ones, never admitted over the limit."),
        ])

    public static let log = Table(
        "[log]",
        [
            Field("level", .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
                default: "\"info\"", "The lowest level written."),
            Field("access_log", .boolean, default: "true",
                "Log each request as one JSON line on standard output, with: time, type (\"access\"), request_id, "
                    + "client, protocol (\"HTTP/1.0\", \"HTTP/1.1\", \"HTTP/2.0\", \"HTTP/3\"); over TLS tls_version, tls_cipher, "
                    + "tls_server_name (the SNI, when sent), tls_client_subject (a verified client certificate) and "
                    + "tls_early_data (true for a request that came in 0-RTT data); "
                    + "method, target, host, route; upstream and upstream_target when proxied; status, bytes_in, "
                    + "bytes_out, duration_ms, and error when something failed."),
            Field("access_log_file", .string, default: "standard output",
                "An absolute path the access log is appended to instead; the master opens it (as root) and "
                    + "opens it again on SIGUSR1 or jesterctl reopen-logs, for logrotate."),
            Field("access_log_fields", .array(.choice(AccessLogField.allCases.map(\.rawValue))), default: "all",
                "The fields of each access-log line, in this order."),
        ])

    public static let tracing = Table(
        "[tracing]",
        [
            Field("endpoint", .string, required: true,
                "The OTLP/HTTP collector spans go to, as protobuf: \"http://127.0.0.1:4318/v1/traces\" (http only)."),
            Field("sample_ratio", .number(0...1), default: "0.01",
                "The share of new traces recorded, decided from the trace id (every hop with the same ratio agrees)."),
            Field("parent_based", .boolean, default: "true",
                "A request whose traceparent says sampled (or not) is recorded (or not) as its caller decided."),
            Field("max_queue_size", .integer(1...1_000_000), default: "2048",
                "Spans a worker holds for export at most; more are dropped and counted, never waited for."),
            Field("max_batch_size", .integer(1...100_000), default: "512", "Spans per export request."),
            Field("schedule_delay", .duration, default: "\"5s\"", "How long spans wait for a batch to fill."),
            Field("export_timeout", .duration, default: "\"10s\"", "One export attempt, connection to answer."),
            Field("max_retry_time", .duration, default: "\"30s\"",
                "How long an export is retried (429, 502, 503, 504, no collector) before its spans are dropped."),
        ])

    public static let controlPlane = Table(
        "[control_plane]",
        [
            Field("address", .either([.address, .array(.address)]), required: true,
                "The control plane's stream (its --grpc-listen), an IP address and port; or an array of its "
                    + "replicas' (sharing one etcd), used one at a time, the next when a stream is lost. Only the "
                    + "master connects."),
            Field("node", .string, default: "the host name", "This instance's name in the control plane's listing."),
            Field("state_file", .string, default: "\"\(ControlPlaneSettings.defaultStateFile)\"",
                "The last snapshot applied, written after each one and used at start while the control plane "
                    + "cannot be reached."),
            Field("files", .string, default: "none: a snapshot names no file",
                "A directory the files a snapshot names are read from (an upstream's TLS CA and client certificate, "
                    + "error pages, secret files): relative names without '..'. A version naming one missing here is "
                    + "refused (NACK)."),
            Field("ca", .string,
                "PEM file of the CA the control plane's certificate must chain to; with cert and key the stream runs "
                    + "over mutual TLS (needed for an address that is not loopback)."),
            Field("cert", .string, "PEM file of this instance's client certificate chain for the stream."),
            Field("key", .string, "PEM file of that certificate's private key."),
        ])

    public static let metrics = Table(
        "[metrics]",
        [
            Field("enabled", .boolean, default: "true",
                "Whether workers count requests, connections, upstreams, TLS and filters; false: nothing is counted, "
                    + "and GET /metrics (404) and jesterctl metrics refuse, saying so."),
        ])

    public static let admin = Table(
        "[admin]",
        [
            Field("address", .address, default: "\"127.0.0.1:9901\"",
                "The IP address and port of the admin API; an address that is not loopback needs tokens_file."),
            Field("socket", .string,
                "A Unix socket path to serve the admin API on instead of an address (mode 0660, the control group)."),
            Field("tokens_file", .string,
                "Bearer tokens (relative to this file), one 'read TOKEN' or 'write TOKEN' per line (a third word may "
                    + "name its holder), at least 16 characters each; the master reads it as root at start and on every "
                    + "reload, and refuses a file other users may read. Without it every client of the API may act."),
        ])

    public static let http = Table(
        "[http]",
        [
            Field("max_request_head_size", .size, default: "\"16KiB\"",
                "The largest request head accepted; larger gets 431."),
            Field("max_uri_length", .size, default: "\"8KiB\"", "The longest request target; longer gets 414."),
            Field("max_header_count", .integer(1...10_000), default: "100",
                "The most header fields in a request; more gets 431."),
            Field("max_body_size", .size, default: "\"10MiB\"",
                "The largest request body, unless the route sets its own; larger gets 413."),
            Field("client_header_timeout", .duration, default: "\"10s\"",
                "How long a client has to send a complete request head; slower gets 408."),
            Field("keepalive_timeout", .duration, default: "\"75s\"",
                "How long an idle client connection is kept open."),
            Field("client_body_timeout", .duration, default: "\"60s\"",
                "The longest pause between two reads of a request body (slow POST); slower gets 408."),
            Field("send_timeout", .duration, default: "\"60s\"",
                "The longest a client may go without accepting response bytes (slow reader); then it is closed."),
            Field("max_connections", .integer(0...1_000_000), default: "10000",
                "Client connections per worker (0: no limit); more are closed as soon as they are accepted."),
            Field("max_connections_per_client", .integer(0...1_000_000), default: "0",
                "Connections from one client address per worker (0: no limit); more are closed at once."),
            Field("connection_request_rate", .integer(0...1_000_000), default: "0",
                "Requests per second one client connection may send on average, with a burst of as many (0: no limit); over it: 429 and the connection closes (HTTP/1), or 429 on the stream (HTTP/2)."),
            Field("http2_max_concurrent_streams", .integer(1...10_000), default: "128",
                "Streams one HTTP/2 client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)."),
            Field("keepalive_requests", .integer(0...Int(Int32.max)), default: "10000",
                "Requests served on one client connection before it is closed (0: no limit)."),
            Field("forwarded_header", .boolean, default: "false",
                "Also add the RFC 7239 Forwarded header besides X-Forwarded-For/-Proto/-Host."),
            Field("underscores_in_headers", .choice(["drop", "reject", "allow"]), default: "\"drop\"",
                "Header fields with \"_\" in the name: dropped before forwarding, rejected with 400, or passed on. Some frameworks read X_Foo as X-Foo, which lets a client smuggle a header past the proxy's checks."),
            Field("request_id_header", .string, default: "\"X-Request-Id\"",
                "The header field a request id is read from (a client's own, up to 128 bytes, is kept), sent upstream in and returned to the client in."),
        ])

    public static let listener = Table(
        "[[listeners]]",
        [
            Field("name", .string, required: true, "The name routes refer to."),
            Field("address", .address, required: true, "Where to listen."),
            Field("backlog", .integer(1...65535), default: "511", "The kernel accept queue length."),
            Field("protocol", .choice(["http", "tcp"]), default: "\"http\"",
                "tcp: relay raw byte streams to upstream (balancing, health checks and admin states apply)."),
            Field("upstream", .string, "The pool a tcp listener relays to."),
            Field("idle_timeout", .duration, default: "\"1h\"", "A tcp connection idle both ways this long is closed."),
            Field("proxy_protocol_from", .array(.string), default: "[]",
                "Networks of load balancers in front of Jester that start each connection with a PROXY protocol header (v1 or v2), which then names the client."),
            Field("tls", .table(tls), default: "none", "Terminate TLS on this listener."),
            Field("http2", .boolean, default: "true",
                "Serve HTTP/2 too: offered by ALPN (h2) on TLS, accepted with prior knowledge (h2c) on plain text; Upgrade: h2c is never honoured."),
            Field("http2_only", .boolean, default: "false",
                "Serve HTTP/2 alone: every plain-text connection is h2c with prior knowledge (anything but the connection preface ends it, as RFC 9113 says), and TLS offers only h2. For gRPC and other HTTP/2-only front ends."),
            Field("http3", .boolean, default: "false",
                "Serve HTTP/3 too: QUIC on the same address and port over UDP, with this listener's certificates (TLS listeners only), advertised to clients by Alt-Svc on every response. See jester(8), HTTP/3."),
            Field("http3_retry", .choice(["auto", "always"]), default: "\"auto\"",
                "When a new QUIC client must first prove its address with a Retry (one more round trip): \"auto\" while a worker has more than 64 handshakes under way (a flood of spoofed Initials then costs no connection slot), \"always\" for every connection."),
            Field("http3_early_data", .boolean, default: "false",
                "Accept 0-RTT data from QUIC clients that resume a session soon (GnuTLS's 10-second anti-replay window; later ones resume without it): safe requests (GET, HEAD, OPTIONS, TRACE) then go upstream before the handshake completes, with Early-Data: 1 (RFC 8470), and the rest wait for it. A replayed ClientHello is refused early data instance-wide. Needs http3 = true and session_tickets. See jester(8), HTTP/3."),
            Field("filters", .array(.string), default: "[]",
                "Filters ([filters.NAME]) every route on this listener runs, in this order, before the route's own; http listeners only."),
            Field("policies", .array(.table(policyAttachment)), default: "[]",
                "Wasm policies ([policies.NAME]) of every request on this listener, in this order, before the routes' own: [{ policy = \"tenant\", stage = \"pre_route\" }]; pre_route ones run before routing."),
            Field("redirect_to_https", .either([.boolean, .integer(1...65535)]), default: "false",
                "Answer every request with 308 to https://HOSTNAME[:PORT]/TARGET: true for port 443, or the port; such a listener needs no routes and is not TLS."),
            Field("hsts", .table(hsts), default: "none",
                "Add Strict-Transport-Security to every response (TLS listeners only: browsers ignore it over plain HTTP)."),
            Field("compression", .table(compression), default: "none",
                "Compression (see [[routes]] compression) for every route on this listener that sets none of its own; http listeners only."),
            Field("error_pages", .table(errorPages), default: "none",
                "Error pages (see [[routes]] error_pages) for every route on this listener that sets none of its own, and for requests no route takes (404); http listeners only."),
        ])

    public static let hsts = Table(
        "hsts",
        [
            Field("max_age", .duration, required: true,
                "How long browsers keep to HTTPS after seeing the field, such as \"365d\"."),
            Field("include_subdomains", .boolean, default: "false", "The rule covers every subdomain too."),
            Field("preload", .boolean, default: "false",
                "Ask to be preloaded by browsers; needs max_age of a year or more and include_subdomains (hstspreload.org)."),
        ])

    public static let tls = Table(
        "tls",
        [
            Field("certificates", .array(.table(certificate)), required: true,
                "Certificate chains and keys; SNI selects one, the first is the default."),
            Field("min_version", .choice(["1.2", "1.3"]), default: "\"1.2\"", "The oldest TLS version accepted."),
            Field("ciphers", .string, default: "Mozilla intermediate",
                "TLS 1.2 ciphers, in OpenSSL syntax (the server's order is preferred)."),
            Field("cipher_suites", .string, default: "AES-GCM and ChaCha20 suites",
                "TLS 1.3 cipher suites, in OpenSSL syntax."),
            Field("alpn", .array(.string), default: "[\"h2\", \"http/1.1\"] (without h2 when http2 = false)",
                "ALPN protocols offered, in order of preference."),
            Field("session_tickets", .boolean, default: "true",
                "Resumption by session tickets, with keys shared by all workers and rotated by the master; over HTTP/3 too (GnuTLS's tickets, under a key derived from the instance's QUIC secrets, the newest TLS ticket key and the listener's client-certificate policy: they resume until the next rotation)."),
            Field("client_certificates", .choice(["off", "optional", "required"]), default: "\"off\"",
                "Ask clients for a certificate signed by client_ca: optional lets clients without one in."),
            Field("client_ca", .string, "PEM file of the CAs client certificates must chain to."),
            Field("client_subject_header", .string,
                "Request header that carries a verified client certificate's subject (RFC 2253) upstream; a client's own copy is removed."),
        ])

    public static let bodyMatch = Table(
        "match_body",
        [
            Field("max_size", .size, default: "\"8KiB\"", "How much of the body is read and looked at (at most 1MiB)."),
            Field("regex", .string, "A regular expression the first max_size bytes must match."),
            Field("json", .array(.table(jsonField)), default: "[]",
                "JSON fields the whole body (no larger than max_size) must have: [{ path = \"user.tier\", value = \"gold\" }]."),
        ])

    public static let jsonField = Table(
        "json",
        [
            Field("path", .string, required: true, "Dotted path through objects and arrays (\"items.0.sku\")."),
            Field("value", .string, required: true,
                "The value as text: a string's content, or a number, true, false or null as JSON writes it."),
        ])

    public static let clientSubject = Table(
        "client_subject",
        [
            Field("value", .string, "The subject must be exactly this."),
            Field("regex", .string, "The subject must match this regular expression."),
            Field("present", .boolean, "true: a verified client certificate is required; false: none may be presented."),
        ])

    public static let upstreamTLS = Table(
        "tls",
        [
            Field("verify", .boolean, default: "true",
                "Verify the target's certificate chain and name; a failure is a failed connection (502 after retries)."),
            Field("ca", .string, default: "the system's CA bundle", "PEM file of the CAs to trust."),
            Field("server_name", .string, default: "the target's host",
                "The name sent as SNI and required in the certificate (an IP target is checked against its IP names)."),
            Field("cert", .string, "PEM client certificate for targets that require one (with key)."),
            Field("key", .string, "PEM private key of cert."),
            Field("session_reuse", .boolean, default: "true", "Resume TLS sessions with each target."),
        ])

    public static let certificate = Table(
        "certificates",
        [
            Field("cert", .string, required: true, "PEM file: the certificate, then its intermediates."),
            Field("key", .string, required: true, "PEM file: its private key, unencrypted (it may be readable by root only)."),
            Field("names", .array(.string), default: "the certificate's names",
                "Server names (exact or *.example.com) that select this certificate."),
            Field("ocsp_response", .string, default: "none",
                "DER OCSP response for the certificate, stapled for clients that ask; refreshed by reloading (fetch it with openssl ocsp or a cron job)."),
        ])

    public static let respond = Table(
        "respond",
        [
            Field("status", .integer(200...599), default: "200", "The status code."),
            Field("body", .string, default: "\"\"", "The body."),
            Field("headers", .map(.string), default: "{}", "Header fields to send."),
        ])

    public static let redirect = Table(
        "redirect",
        [
            Field("location", .string, required: true,
                "Where to send the client, with the request's parts in braces: {scheme} (http or https), {host} (the Host field, port included), {hostname} (without the port), {port}, {path}, {query} (without ?), {target} (path and query as sent); {{ and }} are literal braces, and ${VAR} is still the environment: \"https://{hostname}{target}\"."),
            Field("status", .integer(300...308), default: "302", "The status code (301, 302, 303, 307, 308)."),
        ])

    public static let route = Table(
        "[[routes]]",
        [
            Field("name", .string, default: "\"route-N\"", "A name for logs."),
            Field("listeners", .array(.string), default: "all listeners", "The listeners this route is on."),
            Field("hosts", .array(.string), default: "any host", "Host names, exact or \"*.example.com\"."),
            Field("path_prefix", .string, default: "\"/\"", "The path prefix; the longest match wins."),
            Field("path", .string, "An exact path instead of a prefix; it wins over every prefix."),
            Field("path_regex", .string,
                "A regular expression the path must match (within the routes of its path_prefix, before plain ones)."),
            Field("methods", .array(.string), default: "any method", "The methods this route takes, such as [\"GET\", \"HEAD\"]."),
            Field("match_headers", .array(.table(fieldMatch)), default: "[]",
                "Header fields the request must have: [{ name = \"X-Env\", value = \"canary\" }]; all must hold."),
            Field("match_query", .array(.table(fieldMatch)), default: "[]",
                "Query parameters the request must have, compared undecoded; all must hold."),
            Field("sources", .array(.string), default: "any client",
                "Client networks, such as [\"10.0.0.0/8\", \"::1\"]."),
            Field("priority", .integer(-1000...1000), default: "0",
                "Routes that could both take a request are tried highest priority first, then most specific."),
            Field("sni", .array(.string), default: "any",
                "TLS server names the connection must have asked for (exact or *.example.com); never plain text."),
            Field("match_body", .table(bodyMatch), default: "none",
                "Conditions on the request body; the body is read (up to max_size) before the route is chosen, on listeners with such a route only."),
            Field("client_subject", .table(clientSubject), default: "any",
                "The verified client certificate's subject (RFC 2253, \"O=Example,CN=alice\"): { present = true }, { value = \"...\" } or { regex = \"...\" }."),
            Field("policy_tags", .array(.string), default: "[]",
                "Tags the listener's pre_route Wasm policies must have given the request (add-route-tag), all of them; such a route ranks above the same path's routes without."),
            Field("max_body_size", .size, default: "http.max_body_size", "The body limit for this route."),
            Field("upstream", .string, "Proxy to this upstream pool (exactly one of upstream, respond, redirect)."),
            Field("split", .array(.table(split)),
                "Proxy to several upstream pools by weight, for canaries: [{ upstream = \"v1\", weight = 95 }, { upstream = \"v2\", weight = 5 }]."),
            Field("split_key", .string,
                "Keep each client on one side of a split by hashing \"client_ip\", \"header:NAME\" or \"cookie:NAME\"."),
            Field("respond", .table(respond), "Answer with a fixed response."),
            Field("redirect", .table(redirect), "Answer with a redirect."),
            Field("strip_prefix", .boolean, default: "false", "Remove path_prefix from the path sent upstream."),
            Field("replace_prefix", .string, "Replace path_prefix with this in the path sent upstream."),
            Field("rewrite", .table(rewrite), "Rewrite the path sent upstream with a regular expression."),
            Field("connect_timeout", .duration, default: "the upstream's", "How long to wait for a connection; then 504."),
            Field("response_timeout", .duration, default: "the upstream's",
                "How long to wait for the response head after the request; then 504."),
            Field("read_timeout", .duration, default: "none",
                "The longest the upstream may pause between two parts of a response once it began; then the response is cut short (the client sees it incomplete)."),
            Field("timeout", .duration, default: "none",
                "The whole exchange, request head to response end; then 504 (or the connection closes if the response had begun)."),
            Field("retries", .integer(0...10), default: "1",
                "How often a request is sent again to another target after a failure in retry_on (only before any response byte reached the client, only without a body)."),
            Field("retry_on", .array(.string), default: "[\"reset\", \"502\", \"503\", \"504\"]",
                "What is retried: \"reset\" (closed before a response) and 5xx statuses."),
            Field("retry_non_idempotent", .boolean, default: "false",
                "Retry POST, PATCH and other non-idempotent methods too (bodiless ones only)."),
            Field("upstream_host", .string, default: "the client's Host",
                "The Host field sent upstream."),
            Field("request_headers", .table(headerEdits), "Header fields to set, add or remove on the request."),
            Field("response_headers", .table(headerEdits), "Header fields to set, add or remove on the response."),
            Field("filters", .array(.string), default: "[]",
                "Filters ([filters.NAME]) this route runs, in this order, after its listener's; a filter may appear once per chain."),
            Field("policies", .array(.table(policyAttachment)), default: "[]",
                "Wasm policies ([policies.NAME]) this route runs, in this order, after its listener's: [{ policy = \"auth\", stage = \"pre_upstream\" }]; pre_upstream runs after the filters."),
            Field("policy_reroute", .boolean, default: "false",
                "Let this route's pre_upstream policies send the request to another route of its listener (set-route, add-route-tag), once: routing on what only the body says. That route's filters and pre_upstream policies then run; off, such a call fails closed."),
            Field("compression", .either([.boolean, .table(compression)]), default: "the listener's",
                "Compress responses with the coding the client's Accept-Encoding prefers (br, zstd, gzip, deflate), and optionally decode coded request bodies: compression = {} for the defaults; false turns the listener's off. A route's table replaces the listener's whole."),
            Field("cache", .either([.boolean, .table(routeCache)]), default: "false",
                "Answer from and store in the instance's shared HTTP cache (RFC 9111; see HTTP CACHE): cache = true or { ... } for the settings."),
            Field("error_pages", .table(errorPages), default: "the listener's",
                "Bodies of Jester's own error answers (pages per status or class, or problem+json for API routes), and upstream error statuses to replace with them (intercept). A route's table replaces the listener's whole."),
        ])

    public static let split = Table(
        "a split",
        [
            Field("upstream", .string, required: true, "The upstream pool."),
            Field("weight", .integer(0...10_000), required: true, "Its share of the route's requests."),
        ])

    public static let rewrite = Table(
        "rewrite",
        [
            Field("regex", .string, required: true, "A regular expression on the path."),
            Field("replacement", .string, required: true, "The new path; $1, $2, ... are the expression's groups."),
        ])

    public static let headerEdits = Table(
        "a header edit",
        [
            Field("set", .map(.string), default: "{}", "Fields to set, replacing any the message has."),
            Field("add", .map(.string), default: "{}", "Fields to add, keeping any the message has."),
            Field("remove", .array(.string), default: "[]", "Fields to remove."),
        ])

    /// One element of `match_headers` or `match_query`.
    public static let fieldMatch = Table(
        "a field condition",
        [
            Field("name", .string, required: true, "The header field (any case) or query parameter (exact)."),
            Field("value", .string, "Must equal this."),
            Field("regex", .string, "Must match this regular expression."),
            Field("present", .boolean, "true: must be there (any value); false: must not be there."),
        ])

    public static let upstream = Table(
        "[upstreams.NAME]",
        [
            Field("targets", .array(.target(target)), required: true,
                "The servers: \"host:port\", or { address = \"host:port\", weight = 3, backup = true }."),
            Field("balance", .choice(UpstreamSettings.balancingAlgorithms), default: "\"round_robin\"",
                "How a target is chosen: smooth weighted round-robin, fewest requests in flight per weight, the better of two random choices, consistent hashing of hash_key (Maglev, bounded loads), or least latency (peak EWMA)."),
            Field("hash_key", .string, default: "\"client_ip\"",
                "What balance = \"hash\" hashes: \"client_ip\", \"path\", \"header:NAME\" or \"cookie:NAME\"."),
            Field("max_fails", .integer(0...1000), default: "5",
                "Consecutive failures (connect errors, resets before a response, 502/503/504) that eject a target; 0: never."),
            Field("fail_timeout", .duration, default: "\"10s\"",
                "How long a target is first ejected; doubled each time it is ejected again, up to 5 minutes."),
            Field("slow_start", .duration, default: "\"0s\"",
                "Over how long a readmitted target's weight ramps from 10 % to full."),
            Field("send_proxy_protocol", .choice(["v1", "v2"]), default: "none",
                "Start each connection to a target with a PROXY protocol header naming the client; HTTP connections then serve one client each and are not pooled."),
            Field("tls", .table(upstreamTLS), default: "none", "Connect to the targets over TLS."),
            Field("max_requests_per_target", .integer(1...1_000_000), default: "no limit",
                "Requests in flight to one target per worker, at most: a full target is skipped, and when every target is full the request gets 503 at once."),
            Field("protocol", .choice(["http1", "h2"]), default: "\"http1\"",
                "What the targets speak: HTTP/1.1, or HTTP/2 (prior knowledge on plain TCP, ALPN h2 with tls), whose connections carry many requests at once; needed for gRPC (from HTTP/2 clients: response trailers reach HTTP/1.1 clients as nothing)."),
            Field("resolve_interval", .duration, default: "\"30s\"",
                "How often the master looks up targets given as host names again; every worker follows a changed address at once (a failed lookup keeps the last one)."),
            Field("sticky_cookie", .string, default: "none",
                "Sticky sessions: a client's first response sets this cookie naming its target (an opaque token); later requests carrying it go to that target while it is available."),
            Field("circuit_breaker", .table(circuitBreaker), default: "none",
                "Answer 503 at once, instead of adding requests, while the pool fails or is at its limit (per worker)."),
            Field("retry_budget", .integer(0...100), default: "20",
                "Retries in flight per worker as a percentage of the pool's requests in flight (at least 3 are always allowed)."),
            Field("health_check", .table(healthCheck), default: "none",
                "Active health checks: the master probes every target and tells every worker; unhealthy targets get no requests (unless all are)."),
            Field("connect_attempts", .integer(1...16), default: "3",
                "Targets tried for one request when connections to them fail (nothing was sent yet)."),
            Field("connect_timeout", .duration, default: "\"5s\"", "How long to wait for a connection; then 504."),
            Field("response_timeout", .duration, default: "\"60s\"",
                "How long to wait for the response head; then 504."),
            Field("max_idle_connections", .integer(0...100_000), default: "64",
                "Idle keep-alive connections kept per target per worker."),
            Field("idle_timeout", .duration, default: "\"60s\"", "How long an idle upstream connection is kept."),
        ])

    public static let circuitBreaker = Table(
        "circuit_breaker",
        [
            Field("max_requests", .integer(0...1_000_000), default: "0", "Requests in flight at most; more get 503 (0: no limit)."),
            Field("failure_percent", .integer(1...100), default: "50",
                "The share of failed requests within window that opens the breaker."),
            Field("minimum_requests", .integer(1...1_000_000), default: "20", "Fewer requests in window never open it."),
            Field("window", .duration, default: "\"10s\"", "Over how long failures are counted."),
            Field("open_for", .duration, default: "\"5s\"", "How long an open breaker answers 503 before it tries again."),
            Field("half_open_requests", .integer(1...1000), default: "3",
                "Requests let through to try again; all must succeed to close the breaker."),
        ])

    public static let healthCheck = Table(
        "health_check",
        [
            Field("type", .choice(["http", "tcp"]), default: "\"http\"", "A GET of path, or just a TCP connection."),
            Field("path", .string, default: "\"/\"", "What an http check requests."),
            Field("interval", .duration, default: "\"5s\"", "Between checks of a target (with up to 10 % jitter)."),
            Field("timeout", .duration, default: "\"2s\"", "A check that takes longer fails."),
            Field("rise", .integer(1...100), default: "2", "Consecutive successes that make a target healthy."),
            Field("fall", .integer(1...100), default: "3", "Consecutive failures that make a target unhealthy."),
            Field("expect_status", .string, default: "\"200-399\"", "The statuses that pass: \"200\" or \"200-399\"."),
        ])

    /// One element of `targets` written as a table.
    public static let target = Table(
        "a target",
        [
            Field("address", .hostAddress, required: true, "Where the server listens."),
            Field("weight", .integer(1...1000), default: "1", "Its share of requests relative to the others."),
            Field("backup", .boolean, default: "false",
                "Serves only while no other target of the pool can (all ejected or failing)."),
            Field("max_requests", .integer(1...1_000_000), default: "the pool's max_requests_per_target",
                "Requests in flight to this target per worker, at most."),
        ])
}
