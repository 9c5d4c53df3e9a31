// SPDX-License-Identifier: Apache-2.0
/// HTTP-date (RFC 9110 §5.6.7) to and from seconds since the Unix epoch: `Date`, `Expires`, `Last-Modified`,
/// `If-Modified-Since`.
///
/// Recipients must accept all three forms: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), which is the only one
/// generated, and the obsolete rfc850-date (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime-date
/// (`Sun Nov  6 08:49:37 1994`). Written by hand, without Foundation's formatters: this module stays pure and small,
/// and a formatter's locale or leniency would decide what an `Expires` means. The grammar is case-sensitive and so
/// is this parser; a day name is checked to be one but not against the date (it is redundant, §5.6.7).
public enum HTTPDate {
    private static let dayNames = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let longDayNames = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The seconds since the epoch `value` names, or nil when it is in none of the three forms.
    ///
    /// `now` (seconds since the epoch) places an rfc850-date's two-digit year: one that would be more than 50 years
    /// ahead is the most recent past year with those digits (§5.6.7).
    public static func parse(_ value: String, now: Int64) -> Int64? {
        let bytes = Array(value.utf8)
        if let comma = bytes.firstIndex(of: UInt8(ascii: ",")) {
            let day = String(decoding: bytes[..<comma], as: UTF8.self)
            let rest = Array(bytes[(comma + 1)...])
            if comma == 3, dayNames.contains(day) { return parseIMF(rest) }
            if longDayNames.contains(day) { return parseRFC850(rest, now: now) }
            return nil
        }
        return parseAsctime(bytes)
    }

    /// `seconds` as an IMF-fixdate, the form HTTP generates.
    public static func format(_ seconds: Int64) -> String {
        let days = floorDivide(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = Int(((days % 7) + 7 + 3) % 7)
        func two(_ number: Int64) -> String { number < 10 ? "0\(number)" : "\(number)" }
        var yearText = "\(year)"
        while yearText.utf8.count < 4 { yearText = "0" + yearText }
        return "\(dayNames[weekday]), \(two(day)) \(monthNames[Int(month) - 1]) \(yearText) "
            + "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) GMT"
    }

    // MARK: The three forms

    /// ` DD Mon YYYY HH:MM:SS GMT` (after "Day,").
    private static func parseIMF(_ bytes: [UInt8]) -> Int64? {
        var scanner = Scanner(bytes)
        guard scanner.literal(" "), let day = scanner.digits(2), scanner.literal(" "),
            let month = scanner.month(), scanner.literal(" "), let year = scanner.digits(4), scanner.literal(" "),
            let time = scanner.time(), scanner.literal(" GMT"), scanner.atEnd
        else { return nil }
        return seconds(year: year, month: month, day: day, time: time)
    }

    /// ` DD-Mon-YY HH:MM:SS GMT` (after "Dayname,").
    private static func parseRFC850(_ bytes: [UInt8], now: Int64) -> Int64? {
        var scanner = Scanner(bytes)
        guard scanner.literal(" "), let day = scanner.digits(2), scanner.literal("-"),
            let month = scanner.month(), scanner.literal("-"), let shortYear = scanner.digits(2), scanner.literal(" "),
            let time = scanner.time(), scanner.literal(" GMT"), scanner.atEnd
        else { return nil }
        let currentYear = civil(fromDays: floorDivide(now, 86_400)).year
        var year = currentYear - currentYear % 100 + shortYear
        if year > currentYear + 50 { year -= 100 }
        return seconds(year: year, month: month, day: day, time: time)
    }

    /// `Day Mon _D HH:MM:SS YYYY`, the day padded with a space (C's asctime).
    private static func parseAsctime(_ bytes: [UInt8]) -> Int64? {
        guard bytes.count >= 4, dayNames.contains(String(decoding: bytes[0..<3], as: UTF8.self)) else { return nil }
        var scanner = Scanner(Array(bytes[3...]))
        guard scanner.literal(" "), let month = scanner.month(), scanner.literal(" ") else { return nil }
        let day: Int64
        if scanner.literal(" "), let digit = scanner.digits(1) {
            day = digit
        } else if let digits = scanner.digits(2) {
            day = digits
        } else {
            return nil
        }
        guard scanner.literal(" "), let time = scanner.time(), scanner.literal(" "), let year = scanner.digits(4),
            scanner.atEnd
        else { return nil }
        return seconds(year: year, month: month, day: day, time: time)
    }

    /// The instant, or nil when a part is out of range (31 Feb, 25:00). A leap second (:60) counts as :59.
    private static func seconds(year: Int64, month: Int64, day: Int64, time: (Int64, Int64, Int64)) -> Int64? {
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            (0...23).contains(time.0), (0...59).contains(time.1), (0...60).contains(time.2)
        else { return nil }
        return days(year: year, month: month, day: day) * 86_400 + time.0 * 3600 + time.1 * 60 + min(time.2, 59)
    }

    // MARK: Calendar (proleptic Gregorian; Howard Hinnant's days_from_civil and civil_from_days)

    private static func isLeap(_ year: Int64) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01.
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date `days` after 1970-01-01.
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : (a - b + 1) / b
    }

    /// Reads the fixed-width pieces of a date, failing on anything unexpected.
    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
        }

        var atEnd: Bool { index == bytes.count }

        mutating func literal(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            for offset in 0..<count where bytes[index + offset] != text.utf8Start[offset] { return false }
            index += count
            return true
        }

        mutating func digits(_ count: Int) -> Int64? {
            guard index + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[index..<index + count] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            index += count
            return value
        }

        mutating func month() -> Int64? {
            guard index + 3 <= bytes.count else { return nil }
            let name = String(decoding: bytes[index..<index + 3], as: UTF8.self)
            guard let number = HTTPDate.monthNames.firstIndex(of: name) else { return nil }
            index += 3
            return Int64(number + 1)
        }

        /// `HH:MM:SS`.
        mutating func time() -> (Int64, Int64, Int64)? {
            guard let hour = digits(2), literal(":"), let minute = digits(2), literal(":"), let second = digits(2)
            else { return nil }
            return (hour, minute, second)
        }
    }
}
