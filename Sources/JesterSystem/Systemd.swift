private import CJesterSystemd
import Glibc

/// Talks to systemd when Jester runs under it (Type=notify); does nothing otherwise.
public enum Systemd {
    /// Whether systemd asked for notifications (NOTIFY_SOCKET is set).
    public static var isNotifying: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends a state string such as `READY=1`, `RELOADING=1`, `STOPPING=1` or `STATUS=...`.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// The version of libsystemd's sd-daemon protocol support, proving the library is linked: sd_booted answers
    /// whether the system runs systemd (>0), not (0), or failed (<0).
    public static var bootedWithSystemd: Bool { sd_booted() > 0 }
}
