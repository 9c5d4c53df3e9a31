// SPDX-License-Identifier: Apache-2.0

/// What jesterctl accepts, as data: every command with its words, help, options and arguments. The parser, the
/// `--help` texts and the shell completions are all made from this one table, so they cannot disagree.
///
/// jesterctl parses its own command line (rather than with swift-argument-parser) to stay small: the library and
/// the Foundation it imports were a third of the binary (bench/PERFORMANCE.md).
public struct ControlCommandSpec: Sendable {
    /// An option, with or without a value.
    public struct Option: Sendable, Equatable {
        /// The long name without dashes (`socket`).
        public var name: String
        /// The one-letter form, if any (`s`).
        public var short: Character?
        /// What the value is called in help (`path`); nil for a flag.
        public var value: String?
        public var help: String

        /// `--name` or `-s, --name`, with `<value>`.
        var label: String {
            let long = "--\(name)" + (value.map { " <\($0)>" } ?? "")
            return short.map { "-\($0), " + long } ?? long
        }
    }

    /// A positional argument.
    public struct Argument: Sendable, Equatable {
        public var name: String
        public var help: String
        public var optional: Bool
    }

    /// The words that name it: `["status"]`, `["cache", "purge"]`.
    public var words: [String]
    /// One line for the list of commands.
    public var abstract: String
    /// More, for its `--help` (may be empty).
    public var discussion: String
    /// Its own options; every command also takes `common`.
    public var options: [Option]
    public var arguments: [Argument]

    /// The options every command that talks to the master takes.
    public static let common: [Option] = [
        Option(name: "socket", short: "s", value: "path",
            help: "The master's control socket (default: $JESTER_CONTROL_SOCKET, else "
                + "\(ControlSocketChoice.defaultPath))."),
        Option(name: "config", short: "c", value: "file",
            help: "Read the control socket from this configuration file, as the master does."),
        Option(name: "json", short: nil, value: nil,
            help: "Print machine-readable JSON (snake_case keys, like the configuration and the logs)."),
    ]

    /// `-h, --help`, which every command takes.
    static let help = Option(name: "help", short: "h", value: nil, help: "Show help information.")

    /// What the whole program is, for `jesterctl --help`.
    public static let overview = "Control a running Jester instance."

    /// The exit statuses, for `jesterctl --help` (jesterctl(8) EXIT STATUS says more).
    public static let exitStatuses = """
        Exit status: 0 success; 1 the operation failed; 2 the master could not be reached, refused the \
        connection or broke off; 3 no such upstream or target; 64 usage error. See jesterctl(8).
        """

    /// Every command, in the order `--help` lists them.
    public static let all: [ControlCommandSpec] = [
        ControlCommandSpec(
            words: ["status"], abstract: "Show the master and one row per worker.", discussion: "", options: [],
            arguments: []),
        ControlCommandSpec(
            words: ["reload"],
            abstract: "Re-read the configuration and replace the workers; exit 1 with the errors if it is invalid.",
            discussion: "",
            options: [Option(name: "wait", short: nil, value: nil, help: """
                Show the phases as they happen (validated, spawning, ready, draining) and return once the old \
                generation has drained.
                """)],
            arguments: []),
        ControlCommandSpec(
            words: ["upgrade"],
            abstract: "Switch the running master to the binary now installed, without dropping a connection.",
            discussion: """
                The master first runs the new binary on its configuration, then executes it in place (same PID); \
                the new program adopts the running workers, starts its own generation and drains the old one. \
                Returns once the new generation serves (with --wait: once the old one has drained). Exit status \
                1: the upgrade failed and the previous binary's workers keep serving.
                """,
            options: [Option(name: "wait", short: nil, value: nil,
                help: "Return only once the old generation has drained, showing its progress.")],
            arguments: []),
        ControlCommandSpec(
            words: ["upstreams"],
            abstract: "List upstream pools and targets: health, admin state, requests in flight, requests, "
                + "failures, latency.",
            discussion: "", options: [], arguments: []),
        ControlCommandSpec(
            words: ["upstream"],
            abstract: "Change a target's admin state on every worker: drain (no new requests; in-flight ones "
                + "finish), disable (also close its idle connections), enable.",
            discussion: """
                With a pool, the target in that pool; without, in every pool that has it (a server under \
                maintenance is usually in several). The state survives reloads while the target stays in the \
                configuration, and binary upgrades. Exit status 3: no such pool, or no pool has that target.
                """,
            options: [],
            arguments: [
                Argument(name: "action", help: "drain, disable or enable", optional: false),
                Argument(name: "pool", help: "The upstream pool; given alone, the target, in every pool that has it.",
                    optional: false),
                Argument(name: "target", help: "The target, as configured (host:port).", optional: true),
            ]),
        ControlCommandSpec(
            words: ["drain"],
            abstract: "Stop accepting, finish in-flight requests, and exit; shows progress while it waits.",
            discussion: """
                Exit status 0 once every worker drained and the master exited; 1 when the timeout passed with \
                requests still in flight (they were cut: the message says how many) or the master exited \
                uncleanly.
                """,
            options: [Option(name: "timeout", short: nil, value: "seconds",
                help: "Seconds to wait for in-flight requests before closing them (default: drain_timeout).")],
            arguments: []),
        ControlCommandSpec(
            words: ["stop"],
            abstract: "Stop Jester: gracefully (like SIGTERM) or, with --fast, at once (like SIGINT).",
            discussion: """
                Returns once the master has accepted the stop; with --wait, once it has exited: exit status 0 \
                when it exited cleanly, 1 when it did not (requests cut by the drain timeout, or a non-zero exit \
                status).
                """,
            options: [
                Option(name: "fast", short: nil, value: nil, help: "Do not wait for in-flight requests."),
                Option(name: "wait", short: nil, value: nil,
                    help: "Return only once the master has exited, showing the drain's progress."),
            ],
            arguments: []),
        ControlCommandSpec(
            words: ["reopen-logs"],
            abstract: "Reopen the access-log file (after logrotate moved it) in the master and every worker; "
                + "like SIGUSR1.",
            discussion: """
                Returns once every worker writes to the new file, lines written before the reopen having gone \
                whole to the old one. Exit status 1 when the file cannot be opened or a worker did not switch \
                (named).
                """,
            options: [], arguments: []),
        ControlCommandSpec(
            words: ["tap"],
            abstract: "Stream the access records of every worker as they happen, filtered; until interrupted.",
            discussion: """
                Each record is its access-log line (JSON, every field), whether or not the access log is on. \
                Workers send records only while a tap is open, in batches at most 100 ms apart; a worker that \
                cannot keep up drops records and the count is reported on standard error ("N records dropped").
                """,
            options: [
                Option(name: "route", short: nil, value: "route",
                    help: "Only this route's requests (its name, or route-N as `jester config dump` shows it)."),
                Option(name: "status", short: nil, value: "status",
                    help: "Only requests answered with this status (404) or status class (5xx)."),
                Option(name: "upstream", short: nil, value: "upstream",
                    help: "Only requests sent to this upstream pool."),
                Option(name: "count", short: nil, value: "count", help: "Stop after this many records."),
            ],
            arguments: []),
        ControlCommandSpec(
            words: ["metrics"],
            abstract: "Print the instance's metrics, as a Prometheus scrape gets them (see jester-metrics(7)).",
            discussion: """
                The sums over the master and every worker of every generation, in the Prometheus text format, \
                or in OpenMetrics with --openmetrics. --accept passes an HTTP Accept header to negotiate as a \
                scrape would.
                """,
            options: [
                Option(name: "openmetrics", short: nil, value: nil,
                    help: "OpenMetrics 1.0 text instead of the Prometheus text format."),
                Option(name: "accept", short: nil, value: "accept",
                    help: "An HTTP Accept header to negotiate the format with, as a scraper sends it."),
            ],
            arguments: []),
        ControlCommandSpec(
            words: ["cache", "status"],
            abstract: "The shared HTTP cache: bytes used of the budget, entries, hits, misses, stores, evictions, "
                + "collapsed requests, hit ratio.",
            discussion: "Exit status 3 when no route caches.", options: [], arguments: []),
        ControlCommandSpec(
            words: ["cache", "purge"],
            abstract: "Remove a stored response (KEY) or every one under a prefix (--prefix) from the shared cache.",
            discussion: """
                KEY is the request's URI as the cache keys it (https://example.com/a?b); --prefix removes every \
                key that starts with PREFIX (https://example.com/img/). Exactly one of the two. Exit status 3 \
                when no route caches.
                """,
            options: [Option(name: "prefix", short: nil, value: "prefix",
                help: "Remove every key that starts with this.")],
            arguments: [Argument(name: "key", help: "The key to remove.", optional: true)]),
    ]

    /// Words that name a group of commands rather than one (`cache`), with what the group is for.
    public static let groups: [[String]: String] = [
        ["cache"]: "The shared HTTP cache: its size and counters (status), and purging stored responses (purge).",
    ]

    /// The command `words` name exactly, if any.
    public static func command(_ words: [String]) -> ControlCommandSpec? {
        all.first { $0.words == words }
    }

    /// The words that may follow `prefix` (`["cache"]` → status, purge; `[]` → every first word).
    public static func nextWords(after prefix: [String]) -> [String] {
        var words: [String] = []
        for spec in all where spec.words.count > prefix.count && Array(spec.words.prefix(prefix.count)) == prefix {
            let word = spec.words[prefix.count]
            if !words.contains(word) { words.append(word) }
        }
        return words
    }

    /// Every option this command takes, common ones included, `--help` last.
    public var allOptions: [Option] { options + Self.common + [Self.help] }

    /// `jesterctl cache purge [<key>] [--prefix <prefix>] [--socket <path>] …`.
    public var usage: String {
        let arguments = arguments.map { $0.optional ? "[<\($0.name)>]" : "<\($0.name)>" }
        let options = (options + Self.common).map { "[--\($0.name)" + ($0.value.map { " <\($0)>" } ?? "") + "]" }
        return (["jesterctl"] + words + arguments + options).joined(separator: " ")
    }
}
