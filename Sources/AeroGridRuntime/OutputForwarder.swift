import Foundation

/// An app's stdout and stderr, line by line, into its log. Read at most `bytesPerSecond`
/// and `linesPerSecond` each: an app writing faster blocks on its full pipe, and its
/// output costs the supervisor a bounded amount of work (a line is work whatever its
/// length). One thread per pipe, ended by the pipe's end.
struct OutputForwarder: Sendable {
    let log: AppLog
    let bytesPerSecond: Int
    let linesPerSecond: Int

    /// A "line" without an end is cut here rather than held for ever.
    static let longestLine = 65_536

    init(log: AppLog, limits: AppLog.Limits) {
        self.log = log
        bytesPerSecond = limits.outputBytesPerSecond
        linesPerSecond = limits.linesPerSecond
    }

    /// Reads `fd` (closed at its end) on a thread of its own, named after `stream`.
    func start(fd: Int32, stream: String) {
        let thread = Thread { [self] in forward(fd: fd, stream: stream) }
        thread.name = "aerogrid-app-\(stream)"
        thread.start()
    }

    private func forward(fd: Int32, stream: String) {
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var pending = Data()
        var pace = Pace(bytesPerSecond: bytesPerSecond, linesPerSecond: linesPerSecond)
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            pace.take(bytes: chunk.count, lines: 0)
            pending.append(chunk)
            var start = pending.startIndex
            while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                pace.take(bytes: 0, lines: 1)
                log.append(String(decoding: pending[start..<newline], as: UTF8.self), source: stream)
                start = pending.index(after: newline)
            }
            pending.removeSubrange(pending.startIndex..<start)
            if pending.count > Self.longestLine {
                pace.take(bytes: 0, lines: 1)
                log.append(String(decoding: pending, as: UTF8.self), source: stream)
                pending.removeAll()
            }
        }
        if !pending.isEmpty { log.append(String(decoding: pending, as: UTF8.self), source: stream) }
    }

    /// A budget of bytes and lines per second; taking past it sleeps until the next second
    /// (and so does the app, whose pipe is not read meanwhile).
    private struct Pace {
        let bytesPerSecond: Int
        let linesPerSecond: Int
        private var window = (start: ContinuousClock.now, bytes: 0, lines: 0)

        init(bytesPerSecond: Int, linesPerSecond: Int) {
            self.bytesPerSecond = bytesPerSecond
            self.linesPerSecond = linesPerSecond
        }

        mutating func take(bytes: Int, lines: Int) {
            if ContinuousClock.now - window.start >= .seconds(1) { window = (.now, 0, 0) }
            if window.bytes + bytes > bytesPerSecond || window.lines + lines > linesPerSecond {
                let left = Duration.seconds(1) - (ContinuousClock.now - window.start)
                if left > .zero { Thread.sleep(forTimeInterval: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18) }
                window = (.now, 0, 0)
            }
            window.bytes += bytes
            window.lines += lines
        }
    }
}
