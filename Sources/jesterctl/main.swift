// SPDX-License-Identifier: Apache-2.0
// `jesterctl`: talks to a running Jester master over its control socket. Arguments are parsed by
// `ControlCommandLine` (JesterControl), the commands run in `Commands`. (Nothing but this call at the top level:
// top-level code runs on the main actor, and a closure written here would link Swift's concurrency runtime, 0.6 MB,
// to check that it still does.)
jesterctl(Array(CommandLine.arguments.dropFirst()))
