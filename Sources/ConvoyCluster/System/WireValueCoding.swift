import ConvoyModel
import Foundation

/// How a call's arguments and its value become JSON and back: by hand for the types the replicas
/// send in bulk (`WireJSONCodable`: the sync's instances and reports), through Foundation's coders
/// for the rest. Either way the document is the same, so members on both sides of a rolling
/// upgrade understand each other.
enum WireValueCoding {
    static func encode<Value: Encodable>(_ value: Value) throws -> Data {
        if let wire = value as? any WireJSONCodable { return Data(wire.wireJSON()) }
        return try JSONEncoder().encode(value)
    }

    static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        if let wire = Value.self as? any WireJSONCodable.Type {
            // The cast cannot fail: `wire` is `Value.self`.
            return try wire.init(wireJSON: [UInt8](data)) as! Value
        }
        return try JSONDecoder().decode(Value.self, from: data)
    }
}
