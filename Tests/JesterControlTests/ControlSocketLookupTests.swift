// SPDX-License-Identifier: Apache-2.0
import JesterControl
import Testing

// `jesterctl -c FILE`: the control socket read from a configuration and its includes, as the master reads it.

private struct Unreadable: Error, CustomStringConvertible {
    var description: String { "No such file or directory" }
}

private func lookup(_ files: [String: String], environment: [String: String] = [:]) -> ControlSocketLookup {
    ControlSocketLookup(
        read: { path in
            guard let text = files[path] else { throw Unreadable() }
            return text
        },
        glob: { pattern in
            // `*` only, enough for conf.d/*.toml.
            let parts = pattern.split(separator: "*", maxSplits: 1).map(String.init)
            return files.keys.filter {
                parts.count == 2 ? $0.hasPrefix(parts[0]) && $0.hasSuffix(parts[1]) : $0 == pattern
            }.sorted()
        },
        environment: environment)
}

@Test func theSocketIsReadFromTheServerTable() throws {
    let main = #"""
        # A comment with [server] and control_socket = "/not/this" in it.
        include = ["conf.d/*.toml"]   # trailing comment
        title = """
        [server]
        control_socket = "/not/this/either"
        """
        dates = [1979-05-27 07:32:00Z, 2026-12-07]
        inline = { a = [1, { b = "}" }], c = 'it"s' }

        [[listeners]]
        name = "main"
        control_socket = "/a/listener/key"

        [server]
        workers = 2
        "control_socket" = "/run/${NAME}/control.sock"
        """#
    let found = try lookup(["/etc/jester/jester.toml": main], environment: ["NAME": "edge"])
        .controlSocket(file: "/etc/jester/jester.toml")
    #expect(found == "/run/edge/control.sock")
}

@Test func everyWayOfWritingTheKey() throws {
    for text in [
        "server.control_socket = '/s'", "server = { control_socket = \"/s\" }", "[ server ]\ncontrol_socket='/s'",
        "[server]\ncontrol_socket = \"\"\"\n/s\"\"\"", "[server]\ncontrol_socket = \"\\u002Fs\"",
        "[\"server\"]\r\ncontrol_socket = '''/s'''\r\n", "[server]\ncontrol_socket = \"/$${X}s\"",
    ] {
        let expected = text.contains("$$") ? "/${X}s" : "/s"
        #expect(try lookup(["/c.toml": text]).controlSocket(file: "/c.toml") == expected, "\(text)")
    }
    #expect(try lookup(["/c.toml": "[server]\nworkers = 2\n"]).controlSocket(file: "/c.toml")
        == ControlSocketChoice.defaultPath)
    #expect(try lookup(["/c.toml": "[server]\ncontrol_socket = \"${MISSING:-/fallback}\""])
        .controlSocket(file: "/c.toml") == "/fallback")
}

@Test func includesAreReadRelativeToTheFile() throws {
    let files = [
        "/etc/jester/jester.toml": "include = [\"conf.d/*.toml\", \"/opt/extra.toml\"]\n[server]\nworkers = 2\n",
        "/etc/jester/conf.d/10-server.toml": "[server]\ncontrol_socket = \"/run/included.sock\"\n",
        "/etc/jester/conf.d/20-routes.toml": "[[routes]]\npath_prefix = \"/\"\n",
        "/opt/extra.toml": "# nothing here\n",
    ]
    #expect(try lookup(files).controlSocket(file: "/etc/jester/jester.toml") == "/run/included.sock")
}

@Test func problemsNameTheFileAndLine() {
    func problem(_ files: [String: String], _ environment: [String: String] = [:]) -> String? {
        do {
            _ = try lookup(files, environment: environment).controlSocket(file: "/c.toml")
            return nil
        } catch {
            return error.message
        }
    }
    #expect(problem([:]) == "cannot read /c.toml: No such file or directory")
    #expect(problem(["/c.toml": "[server\ncontrol_socket = '/s'"]) == "/c.toml:1:8: invalid TOML: expected ']'")
    #expect(problem(["/c.toml": "[server]\ncontrol_socket = \"/s"])
        == "/c.toml:2:21: invalid TOML: unterminated string")
    #expect(problem(["/c.toml": "[server]\ncontrol_socket = 7"]) == "/c.toml:2: control_socket must be a string")
    #expect(problem(["/c.toml": "[server]\ncontrol_socket = \"${NOPE}\""])
        == "/c.toml:2: environment variable 'NOPE' is not set (write ${NOPE:-default} to give a default)")
    #expect(problem(["/c.toml": "include = [\"missing.toml\"]"])
        == "/c.toml:1: included file /missing.toml does not exist")
    #expect(problem(["/c.toml": "include = \"x.toml\""]) == "/c.toml:1: 'include' must be an array of strings")
    #expect(problem(["/c.toml": "include = [\"/i.toml\"]\nserver.control_socket = \"/a\"",
                     "/i.toml": "[server]\ncontrol_socket = \"/b\""])
        == "/i.toml:2: control_socket is already set at /c.toml:2")
    #expect(problem(["/c.toml": "a = 1 = 2"]) == nil)  // values it skips are the master's to check
}
