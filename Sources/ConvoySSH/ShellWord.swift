/// One word for a remote POSIX shell, single-quoted so that the shell takes it literally
/// whatever it holds (spaces, `$`, `;`, quotes): every value Convoy puts into a command it runs
/// over SSH goes through here.
public enum ShellWord {
    /// `word` in single quotes, each `'` inside written as `'\''`.
    public static func quote(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
