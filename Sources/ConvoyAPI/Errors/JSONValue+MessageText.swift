import ConvoyModel

extension JSONValue {
    /// The value as compact JSON text (`["x"]`, `1e+300`, `{"a":1}`), for error messages that
    /// echo what a client sent. Cut at `maxLength` characters with `…`, so a huge value cannot
    /// make a huge message.
    func messageText(maxLength: Int = 200) -> String {
        var text = ""
        append(to: &text, budget: maxLength + 1)
        return text.count > maxLength ? String(text.prefix(maxLength)) + "…" : text
    }

    /// Writes the value until `text` reaches `budget` characters (the rest would be cut anyway).
    private func append(to text: inout String, budget: Int) {
        guard text.count < budget else { return }
        switch self {
        case .null: text += "null"
        case .bool(let flag): text += flag ? "true" : "false"
        case .number(let number): text += Self.numberText(number)
        case .string(let string): Self.appendQuoted(string, to: &text)
        case .array(let items):
            text += "["
            for (index, item) in items.enumerated() {
                guard text.count < budget else { break }
                if index > 0 { text += "," }
                item.append(to: &text, budget: budget)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                guard text.count < budget else { break }
                if index > 0 { text += "," }
                Self.appendQuoted(key, to: &text)
                text += ":"
                members[key]!.append(to: &text, budget: budget)
            }
            text += "}"
        }
    }

    /// Whole numbers without a fraction while a double holds them exactly; others as Swift prints
    /// them (`1e+300`, `0.5`), which is JSON too. NaN and infinities, which JSON cannot spell,
    /// print as `NaN`, `Infinity`, `-Infinity`.
    private static func numberText(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        if number.rounded() == number, abs(number) < 9.0e15 { return String(Int64(number)) }
        return String(number)
    }

    private static func appendQuoted(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
