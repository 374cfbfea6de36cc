import Distributed
import Foundation

/// Records a call's arguments as JSON, one blob each (`WireValueCoding`).
public struct ClusterInvocationEncoder: DistributedTargetInvocationEncoder {
    public typealias SerializationRequirement = Codable

    var arguments: [Data] = []

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        // Generic distributed functions are not used: the wire carries no type names.
    }

    public mutating func recordArgument<Value: Codable>(_ argument: RemoteCallArgument<Value>) throws {
        arguments.append(try WireValueCoding.encode(argument.value))
    }

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}

    public mutating func recordReturnType<R: Codable>(_ type: R.Type) throws {}

    public mutating func doneRecording() throws {}
}

/// Hands a received call's arguments to `executeDistributedTarget`.
public final class ClusterInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = Codable

    private let arguments: [Data]
    private var next = 0

    init(arguments: [Data]) {
        self.arguments = arguments
    }

    public func decodeGenericSubstitutions() throws -> [Any.Type] { [] }

    public func decodeNextArgument<Argument: Codable>() throws -> Argument {
        guard next < arguments.count else {
            throw ClusterError.protocolViolation("the call has \(arguments.count) arguments; the function wants more")
        }
        defer { next += 1 }
        do {
            return try WireValueCoding.decode(Argument.self, from: arguments[next])
        } catch {
            throw ClusterError.protocolViolation("argument \(next + 1) is not a \(Argument.self): \(error)")
        }
    }

    public func decodeErrorType() throws -> Any.Type? { nil }

    public func decodeReturnType() throws -> Any.Type? { nil }
}

/// Turns the local function's outcome into a reply.
public struct ClusterResultHandler: DistributedTargetInvocationResultHandler {
    public typealias SerializationRequirement = Codable

    let callID: UInt64
    let send: @Sendable (ReplyEnvelope) async -> Void

    public func onReturn<Success: Codable>(value: Success) async throws {
        await send(ReplyEnvelope(callID: callID, value: try WireValueCoding.encode(value)))
    }

    public func onReturnVoid() async throws {
        await send(ReplyEnvelope(callID: callID))
    }

    public func onThrow<Err: Error>(error: Err) async throws {
        await send(ReplyEnvelope(callID: callID, error: ClusterError.reporting(error)))
    }
}
