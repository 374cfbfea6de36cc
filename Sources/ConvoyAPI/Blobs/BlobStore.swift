import Crypto
import Foundation
import NIOCore
import _NIOFileSystem

/// File contents, stored once each under their SHA-256 in a directory:
/// `<directory>/sha256/<first two hex digits>/<hex digest>`. Uploads stream into `tmp/` while
/// being hashed, are synced to disk, and are then renamed into place, so a blob that exists is
/// always complete and no upload is ever held in memory.
public struct BlobStore: Sendable {
    public let directory: String

    /// Uses (and creates if needed) `directory`.
    public init(directory: String) throws {
        self.directory = directory
        for sub in ["sha256", "tmp"] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(sub)", withIntermediateDirectories: true)
        }
    }

    /// Where the blob with this digest lives (whether or not it exists).
    public func path(of sha256: String) -> String {
        "\(directory)/sha256/\(sha256.prefix(2))/\(sha256)"
    }

    /// The size of a stored blob, or nil if there is none with this digest.
    public func size(of sha256: String) async throws -> Int64? {
        guard BlobDigest.isValid(sha256), let info = try await FileSystem.shared.info(forFileAt: FilePath(path(of: sha256))) else { return nil }
        return info.size
    }

    /// Streams `content` into a blob and returns its digest and size. More than `maxSize` bytes,
    /// or a digest other than `expectedSHA256` when one is given, stores nothing and throws.
    public func store<Content: AsyncSequence>(_ content: Content, maxSize: Int64, expectedSHA256: String? = nil) async throws
        -> (sha256: String, size: Int64) where Content.Element == ByteBuffer {
        let temporary = "\(directory)/tmp/\(UUID().uuidString)"
        do {
            let (digest, size) = try await FileSystem.shared.withFileHandle(forWritingAt: FilePath(temporary)) { handle in
                var hasher = SHA256()
                var size: Int64 = 0
                try await handle.withBufferedWriter { writer in
                    for try await buffer in content {
                        size += Int64(buffer.readableBytes)
                        if size > maxSize { throw BlobStoreError.tooLarge(maxSize) }
                        buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                        _ = try await writer.write(contentsOf: buffer)
                    }
                }
                try await handle.synchronize()
                return (BlobDigest.hex(hasher.finalize()), size)
            }
            if let expectedSHA256, expectedSHA256 != digest {
                throw BlobStoreError.digestMismatch(expected: expectedSHA256, actual: digest)
            }
            let destination = path(of: digest)
            if try await FileSystem.shared.info(forFileAt: FilePath(destination)) != nil {
                _ = try? await FileSystem.shared.removeItem(at: FilePath(temporary))
            } else {
                try FileManager.default.createDirectory(atPath: "\(directory)/sha256/\(digest.prefix(2))", withIntermediateDirectories: true)
                do {
                    try await FileSystem.shared.moveItem(at: FilePath(temporary), to: FilePath(destination))
                } catch {
                    // A concurrent upload of the same content may have got there first: same bytes.
                    guard try await FileSystem.shared.info(forFileAt: FilePath(destination)) != nil else { throw error }
                    _ = try? await FileSystem.shared.removeItem(at: FilePath(temporary))
                }
            }
            return (digest, size)
        } catch {
            _ = try? await FileSystem.shared.removeItem(at: FilePath(temporary))
            throw error
        }
    }
}

/// Why a blob was not stored.
public enum BlobStoreError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int64)
    case digestMismatch(expected: String, actual: String)

    public var description: String {
        switch self {
        case .tooLarge(let limit): return "the content is larger than the limit of \(limit) bytes"
        case .digestMismatch(let expected, let actual): return "the content's SHA-256 is \(actual), not the \(expected) the client sent"
        }
    }
}

/// Hex SHA-256 digests.
public enum BlobDigest {
    public static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { byte in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
    }

    /// 64 lowercase hex digits.
    public static func isValid(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
