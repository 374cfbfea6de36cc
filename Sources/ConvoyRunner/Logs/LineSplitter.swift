/// Turns a stream of output bytes into lines. A line longer than `maxLineBytes` is cut into
/// pieces; every piece but the last is marked `continued`, so readers can join them again.
/// Invalid UTF-8 is replaced, never dropped.
public struct LineSplitter: Sendable {
    /// One line (without its newline) and whether the next line continues it.
    public struct Line: Sendable, Equatable {
        public let text: String
        public let continued: Bool

        public init(_ text: String, continued: Bool = false) {
            self.text = text
            self.continued = continued
        }
    }

    public let maxLineBytes: Int
    private var pending: [UInt8] = []

    public init(maxLineBytes: Int = 64 << 10) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
    }

    /// The lines completed by `bytes`.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Line] {
        var lines: [Line] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                lines.append(Line(Self.text(pending)))
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(byte)
                if pending.count == maxLineBytes {
                    lines.append(cutPiece())
                }
            }
        }
        return lines
    }

    /// What is left when the stream ends (a last line without a newline), if anything.
    public mutating func finish() -> Line? {
        guard !pending.isEmpty else { return nil }
        defer { pending.removeAll() }
        return Line(Self.text(pending))
    }

    /// Cuts the pending bytes at `maxLineBytes`, backing off to a UTF-8 character boundary.
    private mutating func cutPiece() -> Line {
        var cut = pending.count
        // Continuation bytes are 10xxxxxx: do not split a character.
        while cut > 1 && pending[cut - 1] & 0xC0 == 0x80 { cut -= 1 }
        if cut > 1 && pending[cut - 1] >= 0xC0 { cut -= 1 }
        if cut <= 1 { cut = pending.count }
        let piece = Line(Self.text(pending[..<cut]), continued: true)
        pending.removeFirst(cut)
        return piece
    }

    private static func text(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}
