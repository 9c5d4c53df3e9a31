// SPDX-License-Identifier: Apache-2.0

/// The version Jester reports (`jester --version`, `jesterctl --version`, `jesterctl status`). Here, in the
/// module both executables and the master share, so the two binaries of one build cannot disagree.
public enum JesterVersion {
    public static let current = "0.1.0"
}
