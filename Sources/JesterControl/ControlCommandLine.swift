// SPDX-License-Identifier: Apache-2.0

/// One jesterctl command, parsed and checked: what to ask the master.
public enum ControlCommand: Sendable, Equatable {
    case status
    case reload(wait: Bool)
    case upgrade(wait: Bool)
    case upstreams
    /// `pool` nil: the target in every pool that has it.
    case upstream(UpstreamAdminAction, pool: String?, target: String)
    case drain(timeoutSeconds: Double?)
    case stop(fast: Bool, wait: Bool)
    case reopenLogs
    case tap(TapFilter, count: Int?)
    /// `accept`: the Accept header to negotiate with (nil: the Prometheus text format).
    case metrics(accept: String?)
    case cacheStatus
    case cachePurge(CachePurgeTarget)
}

/// `jesterctl upstream ACTION`: the word the operator types, and the admin state the master sets.
public enum UpstreamAdminAction: String, Sendable, Equatable, CaseIterable {
    case drain, disable, enable

    /// The state in `setTargetAdmin` (and in `jesterctl upstreams`).
    public var state: String {
        switch self {
        case .drain: "drain"
        case .disable: "disabled"
        case .enable: "enabled"
        }
    }
}

/// A command with the options every command takes.
public struct ControlInvocation: Sendable, Equatable {
    public var command: ControlCommand
    public var socket: String?
    public var config: String?
    public var json: Bool

    public init(command: ControlCommand, socket: String? = nil, config: String? = nil, json: Bool = false) {
        self.command = command
        self.socket = socket
        self.config = config
        self.json = json
    }
}

/// jesterctl's command line: words in, what to do out. Pure, so every usage error is tested without a master.
public enum ControlCommandLine {
    /// What the arguments ask for.
    public enum Outcome: Sendable, Equatable {
        case run(ControlInvocation)
        /// Print this help (standard output, exit 0).
        case help(String)
        case version
        /// Print the completion script for this shell (bash, zsh or fish).
        case completion(String)
        /// A mistake: the message, and the usage to show with it (standard error, exit 64).
        case usageError(String, usage: String)
    }

    /// Parses `arguments` (without the program's name).
    public static func parse(_ arguments: [String]) -> Outcome {
        var positionals: [String] = []
        var given: [(option: ControlCommandSpec.Option, value: String?)] = []
        var index = 0
        var wantsHelp = false
        let known = ControlCommandSpec.all.flatMap(\.allOptions)
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                positionals += arguments[index...]
                break
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                positionals.append(argument)
                continue
            }
            if argument == "--version" { return .version }
            if argument == "--generate-completion-script" || argument.hasPrefix("--generate-completion-script=") {
                let shell = argument.contains("=") ? String(argument.split(separator: "=", maxSplits: 1)[1])
                    : (index < arguments.count ? arguments[index] : "")
                guard let script = ControlCompletion.script(for: shell) else {
                    return .usageError("--generate-completion-script takes bash, zsh or fish", usage: rootUsage)
                }
                return .completion(script)
            }
            // `--name`, `--name=value` or `-n`.
            var name = argument
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            let option = known.first { option in
                name == "--" + option.name || option.short.map { name == "-" + String($0) } == true
            }
            guard let option else { return .usageError("unknown option '\(name)'", usage: usage(for: positionals)) }
            if option.name == "help" {
                wantsHelp = true
                continue
            }
            if option.value == nil {
                guard inlineValue == nil else {
                    return .usageError("'\(name)' takes no value", usage: usage(for: positionals))
                }
                given.append((option, nil))
            } else if let inlineValue {
                given.append((option, inlineValue))
            } else {
                guard index < arguments.count else {
                    return .usageError("'\(name)' needs a value", usage: usage(for: positionals))
                }
                given.append((option, arguments[index]))
                index += 1
            }
        }
        // `jesterctl help [command…]` is `--help`.
        if positionals.first == "help" {
            positionals.removeFirst()
            wantsHelp = true
        }
        // The longest run of leading words that names a command (or a group of them, for help).
        var words: [String] = []
        while words.count < positionals.count,
            ControlCommandSpec.nextWords(after: words).contains(positionals[words.count])
        {
            words.append(positionals[words.count])
        }
        guard let spec = ControlCommandSpec.command(words) else {
            if wantsHelp, positionals.count == words.count { return .help(ControlHelp.group(words)) }
            if words.count < positionals.count {
                let what = words.isEmpty ? "command" : "\(words.joined(separator: " ")) command"
                return .usageError("unknown \(what) '\(positionals[words.count])'", usage: usage(for: words))
            }
            let choices = ControlCommandSpec.nextWords(after: words).joined(separator: ", ")
            return .usageError("missing a command: " + choices, usage: usage(for: words))
        }
        if wantsHelp { return .help(ControlHelp.command(spec)) }
        let values = Array(positionals[words.count...])
        return parse(spec, values: values, given: given)
    }

    /// The usage line shown with an error: the command's if the words name one, else the program's.
    static func usage(for words: [String]) -> String {
        var prefix = words
        while !prefix.isEmpty {
            if let spec = ControlCommandSpec.command(prefix) { return spec.usage }
            prefix.removeLast()
        }
        return rootUsage
    }

    static let rootUsage = "jesterctl <command> [options] (see jesterctl --help)"

    /// Checks a command's options and arguments, and builds it.
    private static func parse(
        _ spec: ControlCommandSpec, values: [String], given: [(option: ControlCommandSpec.Option, value: String?)]
    ) -> Outcome {
        let usage = spec.usage
        // (By name: `--wait` of reload and of stop are one option to the scanner, with two helps.)
        for (option, _) in given where !spec.allOptions.contains(where: { $0.name == option.name }) {
            return .usageError("'\(spec.words.joined(separator: " "))' takes no option --\(option.name)", usage: usage)
        }
        let required = spec.arguments.filter { !$0.optional }.count
        guard values.count >= required else {
            let missing = spec.arguments[values.count].name
            return .usageError("missing the <\(missing)> argument", usage: usage)
        }
        guard values.count <= spec.arguments.count else {
            return .usageError("unexpected argument '\(values[spec.arguments.count])'", usage: usage)
        }
        // The last value of an option given twice counts, as with most tools.
        func value(_ name: String) -> String? { given.last { $0.option.name == name }?.value }
        func flag(_ name: String) -> Bool { given.contains { $0.option.name == name } }
        var invocation = ControlInvocation(command: .status, socket: value("socket"), config: value("config"),
            json: flag("json"))
        switch spec.words {
        case ["status"]:
            invocation.command = .status
        case ["reload"]:
            invocation.command = .reload(wait: flag("wait"))
        case ["upgrade"]:
            invocation.command = .upgrade(wait: flag("wait"))
        case ["upstreams"]:
            invocation.command = .upstreams
        case ["upstream"]:
            guard let action = UpstreamAdminAction(rawValue: values[0]) else {
                return .usageError("'\(values[0])' is not drain, disable or enable", usage: usage)
            }
            // One argument after the action is the target alone.
            invocation.command = values.count == 3
                ? .upstream(action, pool: values[1], target: values[2])
                : .upstream(action, pool: nil, target: values[1])
        case ["drain"]:
            var timeout: Double?
            if let text = value("timeout") {
                guard let seconds = Double(text), seconds.isFinite, seconds >= 0 else {
                    return .usageError("--timeout takes a number of seconds, not \"\(text)\"", usage: usage)
                }
                timeout = seconds
            }
            invocation.command = .drain(timeoutSeconds: timeout)
        case ["stop"]:
            invocation.command = .stop(fast: flag("fast"), wait: flag("wait"))
        case ["reopen-logs"]:
            invocation.command = .reopenLogs
        case ["tap"]:
            let status = value("status")
            if let status, !TapFilter.isValidStatus(status) {
                return .usageError("--status takes a status such as 404 or a class such as 5xx, not \"\(status)\"",
                    usage: usage)
            }
            var count: Int?
            if let text = value("count") {
                guard let number = Int(text), number >= 1 else {
                    return .usageError("--count must be at least 1", usage: usage)
                }
                count = number
            }
            invocation.command = .tap(TapFilter(route: value("route"), upstream: value("upstream"), status: status),
                count: count)
        case ["metrics"]:
            if flag("openmetrics"), value("accept") != nil {
                return .usageError("--openmetrics and --accept cannot be combined", usage: usage)
            }
            invocation.command = .metrics(
                accept: flag("openmetrics") ? "application/openmetrics-text; version=1.0.0" : value("accept"))
        case ["cache", "status"]:
            invocation.command = .cacheStatus
        case ["cache", "purge"]:
            switch (values.first, value("prefix")) {
            case (nil, nil):
                return .usageError("give a KEY or --prefix PREFIX", usage: usage)
            case (.some, .some):
                return .usageError("give a KEY or --prefix PREFIX, not both", usage: usage)
            case (.some(let key), nil):
                guard !key.isEmpty else { return .usageError("the KEY is empty", usage: usage) }
                invocation.command = .cachePurge(.key(key))
            case (nil, .some(let prefix)):
                guard !prefix.isEmpty else {
                    return .usageError("--prefix needs a prefix (an empty one would purge everything)", usage: usage)
                }
                invocation.command = .cachePurge(.prefix(prefix))
            }
        default:
            preconditionFailure("a command in ControlCommandSpec.all without a case here: \(spec.words)")
        }
        return .run(invocation)
    }
}
