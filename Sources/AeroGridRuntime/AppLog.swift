import AeroGridCore
public import Foundation
import Logging
import Synchronization

/// One app's log: its stdout, stderr and log frames, and the supervisor's notes about it.
/// Bounded in bytes three times over: a line is cut at `maxLineBytes` (on a Unicode scalar
/// boundary: one "character" can be megabytes of combining marks), the log keeps the last
/// lines that fit in `maxBytes` (and `capacity` lines), and at most `forwardPerSecond` lines
/// and `forwardBytesPerSecond` bytes a second go on to the supervisor's own log. An app that
/// writes 100 MB to stdout costs a fixed amount of memory and a note of what was dropped.
public final class AppLog: Sendable {
    public struct Line: Sendable, Equatable {
        public let time: Date
        /// `stdout`, `stderr`, `app` (log frames) or `supervisor`.
        public let source: String
        public let level: String
        public let text: String
    }

    /// What bounds one app's log.
    public struct Limits: Sendable, Equatable {
        /// Lines kept, at most, and their UTF-8 bytes in all.
        public var lines: Int
        public var bytes: Int
        /// A longer line is cut to this many bytes (and marked with "…").
        public var lineBytes: Int
        /// Passed on to the supervisor's log each second, at most; the rest is counted.
        public var forwardLinesPerSecond: Int
        public var forwardBytesPerSecond: Int
        /// A log frame larger than this is dropped undecoded, and log frames beyond this many
        /// bytes a second too: decoding them is the supervisor's work, not the app's.
        public var frameBytes: Int
        public var frameBytesPerSecond: Int
        /// stdout and stderr are each read at most this fast, in bytes and in lines: a faster
        /// app blocks on its pipe. Log frames past the lines a second are dropped undecoded.
        public var outputBytesPerSecond: Int
        public var linesPerSecond: Int

        public init(
            lines: Int = 2_000, bytes: Int = 1 << 20, lineBytes: Int = 16 << 10,
            forwardLinesPerSecond: Int = 100, forwardBytesPerSecond: Int = 64 << 10,
            frameBytes: Int = 64 << 10, frameBytesPerSecond: Int = 1 << 20, outputBytesPerSecond: Int = 1 << 20,
            linesPerSecond: Int = 1_000
        ) {
            self.lines = lines
            self.bytes = bytes
            self.lineBytes = lineBytes
            self.forwardLinesPerSecond = forwardLinesPerSecond
            self.forwardBytesPerSecond = forwardBytesPerSecond
            self.frameBytes = frameBytes
            self.frameBytesPerSecond = frameBytesPerSecond
            self.outputBytesPerSecond = outputBytesPerSecond
            self.linesPerSecond = linesPerSecond
        }
    }

    private struct State {
        /// Kept lines are `lines[first...]`, oldest first; the dropped prefix is compacted
        /// away from time to time.
        var lines: [Line] = []
        var first = 0
        var keptBytes = 0
        var total = 0
        var windowStart = ContinuousClock.now
        var forwardedLines = 0
        var forwardedBytes = 0
        var droppedInWindow = 0
        var notForwarded = 0

        mutating func keep(_ line: Line, limits: Limits) {
            lines.append(line)
            keptBytes += line.text.utf8.count
            while lines.count - first > max(1, limits.lines) || (keptBytes > limits.bytes && lines.count - first > 1) {
                keptBytes -= lines[first].text.utf8.count
                first += 1
            }
            if first > 64 && first > lines.count / 2 {
                lines.removeFirst(first)
                first = 0
            }
        }

        var kept: ArraySlice<Line> { lines[first...] }
    }

    private let state = Mutex(State())
    public let limits: Limits
    private let logger: Logger

    init(limits: Limits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    func append(_ text: String, source: String, level: Logger.Level = .info) {
        let text = text.cut(toBytes: limits.lineBytes)
        let bytes = text.utf8.count
        let line = Line(time: Date(), source: source, level: level.rawValue, text: text)
        let (forward, dropped) = state.withLock { state -> (Bool, Int) in
            state.keep(line, limits: limits)
            state.total += 1
            var droppedBefore = 0
            if ContinuousClock.now - state.windowStart >= .seconds(1) {
                droppedBefore = state.droppedInWindow
                state.windowStart = .now
                state.forwardedLines = 0
                state.forwardedBytes = 0
                state.droppedInWindow = 0
            }
            guard state.forwardedLines < limits.forwardLinesPerSecond, state.forwardedBytes + bytes <= limits.forwardBytesPerSecond else {
                state.droppedInWindow += 1
                state.notForwarded += 1
                return (false, droppedBefore)
            }
            state.forwardedLines += 1
            state.forwardedBytes += bytes
            return (true, droppedBefore)
        }
        if dropped > 0 {
            let note =
                "the app wrote more than \(limits.forwardLinesPerSecond) lines or \(limits.forwardBytesPerSecond) bytes a second: "
                + "\(dropped) lines were not passed on to the supervisor's log (this log keeps the last \(limits.lines) lines or \(limits.bytes) bytes)"
            logger.warning("\(note)")
            let noteLine = Line(time: Date(), source: "supervisor", level: "warning", text: note)
            state.withLock { state in
                state.keep(noteLine, limits: limits)
                state.total += 1
            }
        }
        if forward {
            logger.log(level: level, "\(text)", metadata: ["aerogrid.source": "\(source)"])
        }
    }

    /// Log frames dropped undecoded (over `frameBytes`, or beyond `frameBytesPerSecond`):
    /// one note a second at most says how many.
    func droppedFrames(_ count: Int, bytes: Int) {
        append(
            "\(count) log frames (\(bytes) bytes) were dropped: a log frame may be \(limits.frameBytes) bytes, and at most "
                + "\(limits.linesPerSecond) of them and \(limits.frameBytesPerSecond) bytes a second are read", source: "supervisor", level: .warning)
    }

    /// The most recent lines, oldest first.
    public func tail(_ count: Int) -> [Line] {
        state.withLock { Array($0.kept.suffix(max(0, count))) }
    }

    /// The lines after the first `seen` ever written (those still kept), and the count to
    /// pass next time: how a follower reads on without repeats.
    public func lines(after seen: Int) -> (lines: [Line], seen: Int) {
        state.withLock { state in
            let new = max(0, min(state.total - seen, state.kept.count))
            return (Array(state.kept.suffix(new)), state.total)
        }
    }

    /// Lines written since the start, kept or not.
    public var totalLines: Int { state.withLock { $0.total } }

    /// The bytes of the lines kept now.
    public var keptBytes: Int { state.withLock { $0.keptBytes } }

    /// Lines kept here but not passed on to the supervisor's log (over the rate).
    public var linesNotForwarded: Int { state.withLock { $0.notForwarded } }
}
