/// An Arvados-style object identifier: `<5-char cluster id>-<5-char type infix>-<15 chars [0-9a-z]>`,
/// e.g. `zzzzz-dz642-0123456789abcde` for a container.
public struct ArvadosUUID: Sendable, Hashable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The type infixes Convoy uses, the same as Arvados'.
    public enum ObjectType: String, Sendable, CaseIterable {
        case container = "dz642"
        case containerRequest = "xvhdp"
        case apiClientAuthorization = "gj3su"
        case log = "57u5n"
        case collection = "4zz18"
        case user = "tpzed"
    }

    public let rawValue: String

    public var clusterID: Substring { rawValue.prefix(5) }
    public var typeInfix: Substring { rawValue.dropFirst(6).prefix(5) }
    public var objectType: ObjectType? { ObjectType(rawValue: String(typeInfix)) }
    public var description: String { rawValue }

    /// Accepts only the exact form: three lowercase alphanumeric parts of 5, 5 and 15 characters.
    public init?(_ text: String) {
        // Checked byte by byte (the form is all ASCII): splitting into Characters cost more than
        // the rest of reading a container row.
        var valid = text.utf8.count == 27
        if valid {
            for (offset, byte) in text.utf8.enumerated() {
                let ok = offset == 5 || offset == 11
                    ? byte == UInt8(ascii: "-")
                    : (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                if !ok { valid = false; break }
            }
        }
        guard valid else { return nil }
        rawValue = text
    }

    /// A new random identifier for an object of `type` on cluster `clusterID`.
    public static func generate(cluster clusterID: String, type: ObjectType) -> ArvadosUUID {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        let random = String((0..<15).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
        return ArvadosUUID("\(clusterID)-\(type.rawValue)-\(random)")!
    }

    /// True when `clusterID` can be used in identifiers (5 characters from [0-9a-z]).
    public static func isValidClusterID(_ clusterID: String) -> Bool {
        clusterID.count == 5 && clusterID.allSatisfy(isUUIDCharacter)
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = ArvadosUUID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a uuid: \(text)"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    private static func isUUIDCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isNumber || character.isLowercase)
    }
}
