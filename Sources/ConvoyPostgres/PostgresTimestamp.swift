import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Converts between `Date` and PostgreSQL's ISO timestamp text (`2026-11-23 10:50:53.123456+00`).
///
/// Connections run with `TimeZone=UTC`, so `timestamptz` arrives as UTC; `timestamp` without a zone
/// is read as UTC too.
enum PostgresTimestamp {
    static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = Int(interval.rounded(.down))
        var micros = Int(((interval - Double(seconds)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            seconds += 1
            micros -= 1_000_000
        }
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), micros
        )
    }

    static func parse(_ text: String) -> Date? {
        let chars = Array(text.utf8)
        var index = 0

        func number(_ count: Int) -> Int? {
            guard index + count <= chars.count else { return nil }
            var value = 0
            for _ in 0..<count {
                let c = chars[index]
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(c - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
        func expect(_ c: Character) -> Bool {
            guard index < chars.count, chars[index] == c.asciiValue else { return false }
            index += 1
            return true
        }

        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2),
              expect(" ") || expect("T"),
              let hour = number(2), expect(":"), let minute = number(2), expect(":"), let second = number(2)
        else { return nil }

        var fraction = 0.0
        if index < chars.count, chars[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            while index < chars.count, chars[index] >= UInt8(ascii: "0"), chars[index] <= UInt8(ascii: "9") {
                fraction += Double(chars[index] - UInt8(ascii: "0")) * scale
                scale /= 10
                index += 1
            }
        }

        var offsetSeconds = 0
        if index < chars.count {
            let sign: Int
            if chars[index] == UInt8(ascii: "+") { sign = 1 } else if chars[index] == UInt8(ascii: "-") { sign = -1 } else { return nil }
            index += 1
            guard let offsetHours = number(2) else { return nil }
            var offsetMinutes = 0
            if expect(":") {
                guard let minutes = number(2) else { return nil }
                offsetMinutes = minutes
            }
            if expect(":") {
                guard number(2) != nil else { return nil }
            }
            offsetSeconds = sign * (offsetHours * 3600 + offsetMinutes * 60)
        }
        guard index == chars.count else { return nil }

        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = timegm(&parts)
        return Date(timeIntervalSince1970: Double(epoch - offsetSeconds) + fraction)
    }
}
