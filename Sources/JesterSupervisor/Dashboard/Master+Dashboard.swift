// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import JesterControl

/// What the web dashboard reads beyond the API's other endpoints: recent access records (through the tap) and the
/// reload history.
extension Master {
    /// `GET /api/v1/access/recent`: the poll keeps the dashboard's tap open, opening it if it had closed (the
    /// answer then says `tapping: false`: what it holds is from before, and new records follow from now on).
    func recentAccessAnswer() -> APIResponse {
        let tap = adminServer.recentAccess
        tap.polled()
        let tapping = taps.sessions.contains { $0.target === tap }
        if !tapping { openTap(TapFilter(), replyTo: tap) }
        return .json(200, raw: tap.body(tapping: tapping))
    }

    /// A reload or upgrade ended with `result`: kept for `GET /api/v1/reloads`.
    func recordReloadOutcome(_ result: ReloadResult, kind: Machine.Transaction.Kind) {
        adminServer.reloads.record(result, kind: kind.rawValue, at: wallClockNow)
    }
}
