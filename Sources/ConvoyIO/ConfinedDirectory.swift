#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A directory whose files are listed and opened through descriptors, never following a symbolic
/// link at any step.
///
/// The runner exports a finished container's output from a directory the container wrote: a link
/// there (or one swapped in for a file or a subdirectory between the listing and the upload) must
/// not make the runner read a host file. Every step opens the next name relative to the
/// descriptor of the directory it is in with `O_NOFOLLOW`, so a link is refused wherever it is.
public struct ConfinedDirectory: Sendable {
    /// A regular file found under the directory.
    public struct Entry: Sendable, Equatable {
        /// Its path relative to the directory, components joined by `/`.
        public let path: String
        /// Its size in bytes when it was listed.
        public let size: Int64
    }

    /// Why a listing or an open was refused.
    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The directory's own path (opened again, without following a link, at every use).
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// Every regular file under the directory, sorted by path. Symbolic links, devices, sockets
    /// and pipes are left out; a directory reached only through a link is never entered.
    public func regularFiles() throws -> [Entry] {
        let root = try Self.openDirectory(AT_FDCWD, path, shown: path)
        var entries: [Entry] = []
        try Self.collect(directory: root, prefix: "", into: &entries)
        return entries.sorted { $0.path < $1.path }
    }

    /// Opens the regular file at `relativePath` for reading; the caller closes the descriptor.
    /// Throws when any component is a link, is missing, or the file is not a regular file now.
    public func openFile(_ relativePath: String) throws -> (descriptor: Int32, size: Int64) {
        let components = relativePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !components.isEmpty, components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw Refusal("'\(relativePath)' is not a plain relative path")
        }
        var directory = try Self.openDirectory(AT_FDCWD, path, shown: path)
        for component in components.dropLast() {
            let next: Int32
            do { next = try Self.openDirectory(directory, component, shown: relativePath) } catch {
                close(directory)
                throw error
            }
            close(directory)
            directory = next
        }
        defer { close(directory) }
        let file = openat(directory, components[components.count - 1], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard file >= 0 else { throw Self.refusal(errno, relativePath) }
        var status = stat()
        guard fstat(file, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            close(file)
            throw Refusal("'\(relativePath)' is no longer a regular file")
        }
        return (file, Int64(status.st_size))
    }

    // MARK: Walking

    /// Opens `name` relative to `parent` as a directory, refusing a link.
    private static func openDirectory(_ parent: Int32, _ name: String, shown: String) throws -> Int32 {
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            // Linux answers ENOTDIR, not ELOOP, for a link opened with O_DIRECTORY: say which it was.
            var status = stat()
            if code == ENOTDIR, fstatat(parent, name, &status, AT_SYMLINK_NOFOLLOW) == 0, (status.st_mode & S_IFMT) == S_IFLNK {
                throw refusal(ELOOP, shown)
            }
            throw refusal(code, shown)
        }
        return fd
    }

    private static func refusal(_ code: Int32, _ path: String) -> Refusal {
        switch code {
        case ELOOP: return Refusal("'\(path)' goes through a symbolic link")
        case ENOTDIR: return Refusal("'\(path)' goes through something that is not a directory")
        default: return Refusal("cannot open '\(path)': \(String(cString: strerror(code)))")
        }
    }

    /// Adds the regular files of the open directory `directory` (closed here) to `entries`.
    private static func collect(directory: Int32, prefix: String, into entries: inout [Entry]) throws {
        // fdopendir takes the descriptor over; closedir closes it.
        guard let stream = fdopendir(directory) else {
            let code = errno
            close(directory)
            throw refusal(code, prefix.isEmpty ? "." : prefix)
        }
        defer { closedir(stream) }
        var subdirectories: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            var status = stat()
            // AT_SYMLINK_NOFOLLOW: a link is described as a link, not as what it points at.
            guard fstatat(dirfd(stream), name, &status, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            switch status.st_mode & S_IFMT {
            case S_IFREG: entries.append(Entry(path: prefix + name, size: Int64(status.st_size)))
            case S_IFDIR: subdirectories.append(name)
            default: continue
            }
        }
        for name in subdirectories {
            let child = try openDirectory(dirfd(stream), name, shown: prefix + name)
            try collect(directory: child, prefix: prefix + name + "/", into: &entries)
        }
    }
}
