// SPDX-License-Identifier: Apache-2.0
// `jesterctl`: talks to a running Jester master over its control socket. Arguments are parsed by
// `ControlCommandLine` (JesterControl), the commands run in `Commands`.
import Glibc
import JesterControl

switch ControlCommandLine.parse(Array(CommandLine.arguments.dropFirst())) {
case .run(let invocation):
    Commands(invocation: invocation).run()
case .help(let text):
    print(text, terminator: "")
case .version:
    print(JesterVersion.current)
case .completion(let script):
    print(script, terminator: "")
case .usageError(let message, let usage):
    // The command's own help, when the usage names one: `jesterctl tap --help`.
    let command = usage.split(separator: " ").prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") && !$0.hasPrefix("(") }
    fail("jesterctl: \(message)\nUsage: \(usage)\n  See '\(command.joined(separator: " ")) --help' for more "
        + "information.", status: .usage)
}
