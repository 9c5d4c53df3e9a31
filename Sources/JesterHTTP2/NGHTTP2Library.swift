// SPDX-License-Identifier: Apache-2.0
// The one importer of libnghttp2. The HTTP/2 codec (downstream and upstream) is built here; until it lands, this
// module proves the library is found and linked, and reports its version at start-up.
private import CJesterNGHTTP2

/// Facts about the system libnghttp2 that Jester is linked against.
public enum NGHTTP2Library {
    /// The runtime version string of the loaded library, for example "1.52.0".
    public static var version: String {
        guard let info = nghttp2_version(0) else { return "unknown" }
        return String(cString: info.pointee.version_str)
    }
}
