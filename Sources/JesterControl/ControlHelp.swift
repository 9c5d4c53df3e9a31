// SPDX-License-Identifier: Apache-2.0

/// jesterctl's `--help` texts, made from `ControlCommandSpec` and laid out as swift-argument-parser laid them
/// out before (OVERVIEW, USAGE, ARGUMENTS, OPTIONS, SUBCOMMANDS), wrapped at 80 columns.
public enum ControlHelp {
    static let width = 80

    /// `jesterctl --help`, or the help of a group of commands (`jesterctl cache --help`).
    public static func group(_ words: [String]) -> String {
        let overview = words.isEmpty ? ControlCommandSpec.overview
            : ControlCommandSpec.groups[words] ?? "jesterctl \(words.joined(separator: " ")) commands."
        var text = wrap("OVERVIEW: " + overview, indent: 0) + "\n"
        if words.isEmpty { text += wrap(ControlCommandSpec.exitStatuses, indent: 0) + "\n" }
        text += "USAGE: jesterctl \(words.map { $0 + " " }.joined())<subcommand>\n\n"
        if words.isEmpty {
            text += "OPTIONS:\n"
            text += row("--version", "Show the version.")
            text += row("-h, --help", "Show help information.")
            text += "\n"
        }
        text += "SUBCOMMANDS:\n"
        for word in ControlCommandSpec.nextWords(after: words) {
            let abstract = ControlCommandSpec.command(words + [word])?.abstract
                ?? ControlCommandSpec.groups[words + [word]]
            text += row(word, abstract ?? "")
        }
        text += "\n  See 'jesterctl help <subcommand>' for detailed help.\n"
        return text
    }

    /// `jesterctl COMMAND --help`.
    public static func command(_ spec: ControlCommandSpec) -> String {
        var text = wrap("OVERVIEW: " + spec.abstract, indent: 0)
        if !spec.discussion.isEmpty { text += "\n" + wrap(spec.discussion, indent: 0) }
        text += "\n" + wrap("USAGE: " + spec.usage, indent: 0, hanging: 2) + "\n"
        if !spec.arguments.isEmpty {
            text += "ARGUMENTS:\n"
            for argument in spec.arguments { text += row("<\(argument.name)>", argument.help) }
            text += "\n"
        }
        text += "OPTIONS:\n"
        for option in spec.allOptions { text += row(option.label, option.help) }
        return text
    }

    /// An entry of a list: the name in a 26-column gutter, its help wrapped beside it (or below, when long).
    static func row(_ name: String, _ help: String) -> String {
        let gutter = 26
        let lead = "  " + name
        let body = wrap(help, indent: gutter)
        if lead.count < gutter - 1 {
            return lead + String(repeating: " ", count: gutter - lead.count) + body.dropFirst(gutter)
        }
        return lead + "\n" + body
    }

    /// Words wrapped to `width`: the first line indented by `indent`, later ones by `indent + hanging`; each line
    /// ends in a newline.
    static func wrap(_ text: String, indent: Int, hanging: Int = 0) -> String {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            let margin = lines.isEmpty ? indent : indent + hanging
            if !line.isEmpty, margin + line.count + 1 + word.count > width {
                lines.append(String(repeating: " ", count: margin) + line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty || lines.isEmpty {
            lines.append(String(repeating: " ", count: lines.isEmpty ? indent : indent + hanging) + line)
        }
        return lines.map { $0 + "\n" }.joined()
    }
}
