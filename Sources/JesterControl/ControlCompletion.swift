// SPDX-License-Identifier: Apache-2.0

/// Shell completion scripts for jesterctl (`jesterctl --generate-completion-script bash|zsh|fish`), made from
/// `ControlCommandSpec`: the Debian package installs the three (Packaging/debian/rules), so a command or option
/// added to the table completes without anyone editing a script.
public enum ControlCompletion {
    /// The script for `shell`, or nil for a shell this does not know.
    public static func script(for shell: String) -> String? {
        switch shell {
        case "bash": bash()
        case "zsh": zsh()
        case "fish": fish()
        default: nil
        }
    }

    /// Options whose value is a file name.
    static let fileOptions: Set<String> = ["socket", "config"]

    /// Every option that takes a value, as the shell sees it (`-s`, `--socket`, …).
    static var valueOptionWords: [String] {
        var words: [String] = []
        for spec in ControlCommandSpec.all {
            for option in spec.allOptions where option.value != nil {
                for word in optionWords(option) where !words.contains(word) { words.append(word) }
            }
        }
        return words
    }

    static func optionWords(_ option: ControlCommandSpec.Option) -> [String] {
        ["--" + option.name] + (option.short.map { ["-" + String($0)] } ?? [])
    }

    /// The specs, those with more words first, so a shell `case` tries `cache purge` before `cache`.
    static var specsByDepth: [ControlCommandSpec] {
        ControlCommandSpec.all.sorted { $0.words.count > $1.words.count }
    }

    /// The first sentence of a help text, inside single quotes of `shell`: `'` escaped as the shell needs, and
    /// for zsh without the brackets and colons its `_arguments` and `_describe` specs would misread.
    static func summary(_ help: String, for shell: String) -> String {
        // A sentence ends at ". ", not at the dot of a path (`/run/jester/control.sock`).
        var sentence = Substring(help)
        if let end = help.indices.first(where: { help[$0] == "." && help[help.index(after: $0)...].hasPrefix(" ") }) {
            sentence = help[..<end]
        } else if sentence.hasSuffix(".") {
            sentence = sentence.dropLast()
        }
        var text = ""
        for character in sentence {
            switch (character, shell) {
            case ("'", "fish"): text += "\\'"
            case ("\\", "fish"): text += "\\\\"
            case ("'", _): text += "'\\''"
            case ("[", "zsh"), ("]", "zsh"), (":", "zsh"): break
            default: text.append(character)
            }
        }
        return text
    }

    /// What a first or second word is for: its command's abstract, or its group's.
    static func abstract(_ words: [String]) -> String {
        ControlCommandSpec.command(words)?.abstract ?? ControlCommandSpec.groups[words] ?? ""
    }

    static func bash() -> String {
        let valueOptions = valueOptionWords.joined(separator: "|")
        let files = ControlCommandSpec.common.filter { fileOptions.contains($0.name) }.flatMap(optionWords)
        var script = """
            #!/bin/bash
            # jesterctl completion for bash (jesterctl --generate-completion-script bash)
            _jesterctl() {
                local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" command="" i
                # The command's words so far, options and their values left out.
                for ((i = 1; i < COMP_CWORD; i++)); do
                    case "${COMP_WORDS[i]}" in
                        \(valueOptions)) ((i++)) ;;
                        -*) ;;
                        *) command="${command:+$command }${COMP_WORDS[i]}" ;;
                    esac
                done
                case "$prev" in
                    \(files.joined(separator: "|"))) COMPREPLY=($(compgen -f -- "$cur")); return ;;
                    \(valueOptions)) COMPREPLY=(); return ;;
                esac
                local words
                case "$command" in

            """
        let first = ControlCommandSpec.nextWords(after: []).joined(separator: " ")
        script += "        \"\") words=\"\(first) --help --version\" ;;\n"
        for group in ["cache"] {
            let words = ControlCommandSpec.nextWords(after: [group]).joined(separator: " ")
            script += "        \"\(group)\") words=\"\(words)\" ;;\n"
        }
        for spec in specsByDepth {
            let name = spec.words.joined(separator: " ")
            var words = spec.allOptions.map { "--" + $0.name }
            if spec.words == ["upstream"] { words = UpstreamAdminAction.allCases.map(\.rawValue) + words }
            script += "        \"\(name)\"|\"\(name) \"*) words=\"\(words.joined(separator: " "))\" ;;\n"
        }
        script += """
                    *) words="" ;;
                esac
                COMPREPLY=($(compgen -W "$words" -- "$cur"))
            }
            complete -F _jesterctl jesterctl

            """
        return script
    }

    static func zsh() -> String {
        func arguments(_ spec: ControlCommandSpec) -> String {
            spec.allOptions.map { option in
                let names = optionWords(option)
                let value = option.value.map { ":\($0):" + (fileOptions.contains(option.name) ? "_files" : "") } ?? ""
                let help = "[\(summary(option.help, for: "zsh"))]"
                if names.count == 1 { return "'\(names[0])\(help)\(value)'" }
                return "'(\(names.joined(separator: " ")))'{\(names.joined(separator: ","))}'\(help)\(value)'"
            }.joined(separator: " ")
        }
        func describe(_ words: [String], _ variable: String) -> String {
            let entries = ControlCommandSpec.nextWords(after: words).map { word in
                "'\(word):\(summary(abstract(words + [word]), for: "zsh"))'"
            }
            return "local -a \(variable)=(\(entries.joined(separator: " ")))"
        }
        var script = """
            #compdef jesterctl
            # jesterctl completion for zsh (jesterctl --generate-completion-script zsh)
            _jesterctl() {
                if (( CURRENT == 2 )); then
                    \(describe([], "commands"))
                    _describe 'command' commands
                    return
                fi
                case "${words[2]}" in
                    cache)
                        if (( CURRENT == 3 )); then
                            \(describe(["cache"], "subcommands"))
                            _describe 'cache command' subcommands
                            return
                        fi
                        shift words; (( CURRENT-- ))
                        case "${words[2]}" in

            """
        for spec in ControlCommandSpec.all where spec.words.count == 2 {
            script += "                \(spec.words[1])) shift words; (( CURRENT-- )); "
                + "_arguments \(arguments(spec)) ;;\n"
        }
        script += "            esac ;;\n"
        for spec in ControlCommandSpec.all where spec.words.count == 1 {
            var positional = ""
            if spec.words == ["upstream"] {
                positional = " '1:action:(\(UpstreamAdminAction.allCases.map(\.rawValue).joined(separator: " ")))'"
                    + " '2:pool or target:' '3::target:'"
            }
            script += "        \(spec.words[0])) shift words; (( CURRENT-- )); "
                + "_arguments \(arguments(spec))\(positional) ;;\n"
        }
        script += """
                esac
            }
            _jesterctl "$@"

            """
        return script
    }

    static func fish() -> String {
        let top = ControlCommandSpec.nextWords(after: [])
        var script = """
            # jesterctl completion for fish (jesterctl --generate-completion-script fish)
            complete -c jesterctl -f
            complete -c jesterctl -n '__fish_use_subcommand' -l version -d 'Show the version'

            """
        for word in top {
            script += "complete -c jesterctl -n '__fish_use_subcommand' -a \(word) "
                + "-d '\(summary(abstract([word]), for: "fish"))'\n"
        }
        let cacheWords = ControlCommandSpec.nextWords(after: ["cache"])
        for word in cacheWords {
            script += "complete -c jesterctl -n '__fish_seen_subcommand_from cache; and not "
                + "__fish_seen_subcommand_from \(cacheWords.joined(separator: " "))' -a \(word) "
                + "-d '\(summary(abstract(["cache", word]), for: "fish"))'\n"
        }
        script += "complete -c jesterctl -n '__fish_seen_subcommand_from upstream' -a '"
            + UpstreamAdminAction.allCases.map(\.rawValue).joined(separator: " ") + "'\n"
        for spec in ControlCommandSpec.all {
            let condition = "__fish_seen_subcommand_from \(spec.words.last!)"
            for option in spec.allOptions {
                var line = "complete -c jesterctl -n '\(condition)' -l \(option.name)"
                if let short = option.short { line += " -s \(short)" }
                if option.value != nil { line += fileOptions.contains(option.name) ? " -r -F" : " -r" }
                script += line + " -d '\(summary(option.help, for: "fish"))'\n"
            }
        }
        return script
    }
}
