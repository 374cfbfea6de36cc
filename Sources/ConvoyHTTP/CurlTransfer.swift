import CCurl
import Foundation

/// One request in flight: its libcurl easy handle and what has arrived so far.
///
/// `@unchecked Sendable`: the caller fills it in and submits it through the driver's mutex;
/// from then on only the driver thread touches it, and it resumes the continuation exactly once.
final class CurlTransfer: @unchecked Sendable {
    let id: UInt64
    let request: HTTPRequest
    let configuration: HTTPClientConfiguration
    var continuation: CheckedContinuation<HTTPResponse, Error>?
    private(set) var easy: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var responseBody: [UInt8] = []
    private var responseHeaders: [(name: String, value: String)] = []
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    /// `request.bodyFile`, open while the transfer runs.
    private var bodyHandle: FileHandle?
    /// `request.responseFile`, opened when a 2xx response starts arriving.
    private var responseHandle: FileHandle?
    /// Whether this response's body goes to `request.responseFile` (decided at its first bytes).
    private var writesToFile: Bool?
    private var fileError: String?

    init(id: UInt64, request: HTTPRequest, configuration: HTTPClientConfiguration) {
        self.id = id
        self.request = request
        self.configuration = configuration
        errorBuffer.initialize(to: 0)
    }

    deinit {
        if let easy { curl_easy_cleanup(easy) }
        if let headerList { curl_slist_free_all(headerList) }
        try? bodyHandle?.close()
        try? responseHandle?.close()
        errorBuffer.deallocate()
    }

    func finish(_ result: Result<HTTPResponse, Error>) {
        guard let continuation else { return }
        self.continuation = nil
        continuation.resume(with: result)
    }

    /// Builds the easy handle for this request.
    func makeEasyHandle() throws -> UnsafeMutableRawPointer {
        guard let easy = curl_easy_init() else {
            throw HTTPClientError.transport(code: -1, message: "curl_easy_init failed")
        }
        self.easy = easy
        var failed: CURLcode = CURLE_OK
        func set(_ code: CURLcode) { if code != CURLE_OK && failed == CURLE_OK { failed = code } }

        set(convoy_curl_setopt_string(easy, CURLOPT_URL, request.url))
        // Signals and threads do not mix; curl must not use SIGALRM for its timeouts.
        set(convoy_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        set(convoy_curl_setopt_long(easy, CURLOPT_TIMEOUT_MS, milliseconds(request.timeout ?? configuration.defaultTimeout)))
        set(convoy_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(configuration.connectTimeout)))
        set(convoy_curl_setopt_string(easy, CURLOPT_USERAGENT, configuration.userAgent))
        set(convoy_curl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer))
        set(convoy_curl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, configuration.verifyTLS ? 1 : 0))
        set(convoy_curl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, configuration.verifyTLS ? 2 : 0))
        if let caFile = configuration.caFile {
            set(convoy_curl_setopt_string(easy, CURLOPT_CAINFO, caFile))
        }
        set(convoy_curl_setopt_long(easy, CURLOPT_PROTOCOLS, Int(CURLPROTO_HTTP | CURLPROTO_HTTPS)))

        let context = Unmanaged.passUnretained(self).toOpaque()
        set(convoy_curl_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            guard let data, length > 0 else { return length }
            return transfer.received(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
        })
        set(convoy_curl_setopt_pointer(easy, CURLOPT_WRITEDATA, context))
        set(convoy_curl_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION) { data, size, count, context in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            if let data, length > 0 {
                transfer.receivedHeaderLine(UnsafeRawBufferPointer(start: data, count: length))
            }
            return length
        })
        set(convoy_curl_setopt_pointer(easy, CURLOPT_HEADERDATA, context))

        switch request.method {
        case "GET":
            set(convoy_curl_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case "HEAD":
            set(convoy_curl_setopt_long(easy, CURLOPT_NOBODY, 1))
        case "POST":
            set(convoy_curl_setopt_long(easy, CURLOPT_POST, 1))
        default:
            set(convoy_curl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method))
        }
        if let source = request.bodyDescriptor.map(BodySource.descriptor) ?? request.bodyFile.map(BodySource.file) {
            let size: Int64
            do {
                let handle: FileHandle
                switch source {
                case .file(let path):
                    handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
                case .descriptor(let fd):
                    let copy = dup(fd)
                    guard copy >= 0 else { throw HTTPClientError.invalidRequest("cannot duplicate the body descriptor \(fd)") }
                    handle = FileHandle(fileDescriptor: copy, closeOnDealloc: true)
                }
                bodyHandle = handle
                size = Int64(try handle.seekToEnd())
                try handle.seek(toOffset: 0)
            } catch {
                throw HTTPClientError.invalidRequest("cannot read the body \(source): \(error)")
            }
            // UPLOAD makes curl read the body through READFUNCTION; the method stays the request's.
            set(convoy_curl_setopt_long(easy, CURLOPT_UPLOAD, 1))
            set(convoy_curl_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(size)))
            set(convoy_curl_setopt_data_callback(easy, CURLOPT_READFUNCTION) { buffer, size, count, context in
                let transfer = Unmanaged<CurlTransfer>.fromOpaque(context!).takeUnretainedValue()
                guard let buffer else { return 0 }
                return transfer.readBody(into: UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
            })
            set(convoy_curl_setopt_pointer(easy, CURLOPT_READDATA, context))
            if request.method != "PUT" {
                set(convoy_curl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method))
            }
        } else if let body = request.body {
            // The size must be set before COPYPOSTFIELDS so that binary bodies are copied whole.
            set(convoy_curl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            body.withUnsafeBytes { raw in
                set(convoy_curl_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(errorBuffer))))
            }
        } else if request.method == "POST" {
            set(convoy_curl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, 0))
            set(convoy_curl_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, ""))
        }

        var lines = request.headers.map { "\($0.name): \($0.value)" }
        // No "Expect: 100-continue" round trip before large bodies.
        lines.append("Expect:")
        if let sigV4 = request.sigV4 ?? configuration.sigV4 {
            set(convoy_curl_setopt_string(easy, CURLOPT_AWS_SIGV4, sigV4.curlProvider))
            set(convoy_curl_setopt_string(easy, CURLOPT_USERPWD, "\(sigV4.accessKeyID):\(sigV4.secretAccessKey)"))
            if let token = sigV4.sessionToken {
                lines.append("X-Amz-Security-Token: \(token)")
            }
        }
        for line in lines {
            headerList = curl_slist_append(headerList, line)
        }
        set(convoy_curl_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList))

        if failed != CURLE_OK {
            throw HTTPClientError.invalidRequest("cannot set up \(request.method) \(request.url): \(String(cString: curl_easy_strerror(failed)))")
        }
        return easy
    }

    /// Response bytes: to the response file for a 2xx answer when one is asked for, else memory.
    /// Returns false to abort the transfer (the file could not be written).
    private func received(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if writesToFile == nil {
            var status = 0
            if let easy { _ = convoy_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status) }
            writesToFile = request.responseFile != nil && (200..<300).contains(status)
            if writesToFile == true, let path = request.responseFile {
                guard FileManager.default.createFile(atPath: path, contents: nil),
                      let handle = FileHandle(forWritingAtPath: path) else {
                    fileError = "cannot create the response file \(path)"
                    return false
                }
                responseHandle = handle
            }
        }
        guard writesToFile == true, let responseHandle else {
            responseBody.append(contentsOf: bytes)
            return true
        }
        do {
            try responseHandle.write(contentsOf: Data(bytes))
            return true
        } catch {
            fileError = "cannot write the response file: \(error)"
            return false
        }
    }

    /// Up to `buffer.count` bytes of the body file; 0 at its end, abort on a read error.
    private func readBody(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let bodyHandle else { return 0 }
        do {
            guard let chunk = try bodyHandle.read(upToCount: buffer.count), !chunk.isEmpty else { return 0 }
            chunk.copyBytes(to: buffer)
            return chunk.count
        } catch {
            fileError = "cannot read the body file: \(error)"
            return Int(CURL_READFUNC_ABORT)
        }
    }

    /// Called once libcurl is done with the handle.
    func complete(code: CURLcode) {
        try? responseHandle?.close()
        responseHandle = nil
        if let fileError {
            finish(.failure(HTTPClientError.invalidRequest("\(request.method) \(request.url): \(fileError)")))
            return
        }
        guard code == CURLE_OK, let easy else {
            finish(.failure(error(for: code)))
            return
        }
        var status = 0
        _ = convoy_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        if writesToFile == nil, let path = request.responseFile, (200..<300).contains(status) {
            // An empty body never reached the write callback: the file must still exist.
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                finish(.failure(HTTPClientError.invalidRequest("\(request.method) \(request.url): cannot create the response file \(path)")))
                return
            }
        }
        finish(.success(HTTPResponse(status: status, headers: responseHeaders, body: responseBody)))
    }

    private func receivedHeaderLine(_ line: UnsafeRawBufferPointer) {
        switch Self.headerLine(line) {
        case .statusLine:
            // A new response (after 100 Continue or a redirect): only the last one's headers count.
            responseHeaders.removeAll()
        case .field(let name, let value):
            responseHeaders.append((name: name, value: value))
        case .other:
            break
        }
    }

    enum HeaderLine: Equatable {
        case statusLine
        case field(name: String, value: String)
        /// The blank line that ends the headers, or a line without a colon.
        case other
    }

    /// One line as libcurl hands it over (with its CRLF), read byte by byte: Foundation's
    /// `trimmingCharacters` took 6 % of a busy dispatcher's CPU here.
    static func headerLine(_ line: some Collection<UInt8>) -> HeaderLine {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        let bytes = Array(line)
        var start = 0, end = bytes.count
        while start < end, isSpace(bytes[start]) { start += 1 }
        while end > start, isSpace(bytes[end - 1]) { end -= 1 }
        if bytes[start..<end].starts(with: Array("HTTP/".utf8)) { return .statusLine }
        guard let colon = bytes[start..<end].firstIndex(of: UInt8(ascii: ":")) else { return .other }
        var valueStart = colon + 1
        while valueStart < end, bytes[valueStart] == 0x20 || bytes[valueStart] == 0x09 { valueStart += 1 }
        return .field(name: String(decoding: bytes[start..<colon], as: UTF8.self), value: String(decoding: bytes[valueStart..<end], as: UTF8.self))
    }

    private func error(for code: CURLcode) -> HTTPClientError {
        let detail = String(cString: errorBuffer)
        let message = "\(request.method) \(request.url): " + (detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
        switch code {
        case CURLE_COULDNT_CONNECT:
            return .connectionRefused(message)
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return .couldNotResolveHost(message)
        case CURLE_OPERATION_TIMEDOUT:
            return .timeout(message)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM:
            return .tls(message)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .invalidRequest(message)
        default:
            return .transport(code: Int(code.rawValue), message: message)
        }
    }

    private func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }
}

/// Where a streamed request body is read from.
private enum BodySource: CustomStringConvertible {
    case file(String)
    case descriptor(Int32)

    var description: String {
        switch self {
        case .file(let path): return "file \(path)"
        case .descriptor(let fd): return "descriptor \(fd)"
        }
    }
}
