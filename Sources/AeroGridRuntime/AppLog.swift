public import Foundation
import Logging
import Synchronization

/// One app's log: its stdout, stderr and log frames, and the supervisor's notes about it.
/// Bounded twice: the last `capacity` lines are kept (for the API and the console), and at
/// most `forwardPerSecond` lines a second go on to the supervisor's own log — an app that
/// writes 100 MB to stdout costs a fixed amount of memory and a note of what was dropped.
public final class AppLog: Sendable {
    public struct Line: Sendable, Equatable {
        public let time: Date
        /// `stdout`, `stderr`, `app` (log frames) or `supervisor`.
        public let source: String
        public let level: String
        public let text: String
    }

    private struct State {
        var lines: [Line] = []
        var next = 0
        var total = 0
        var windowStart = ContinuousClock.now
        var forwardedInWindow = 0
        var droppedInWindow = 0
        var notForwarded = 0
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let forwardPerSecond: Int
    private let logger: Logger

    init(capacity: Int, forwardPerSecond: Int, logger: Logger) {
        self.capacity = max(1, capacity)
        self.forwardPerSecond = forwardPerSecond
        self.logger = logger
    }

    func append(_ text: String, source: String, level: Logger.Level = .info) {
        // A single line is bounded too: 16 KiB is plenty for a traceback line.
        let text = text.utf8.count > 16_384 ? String(text.prefix(16_384)) + "…" : text
        let line = Line(time: Date(), source: source, level: level.rawValue, text: text)
        let (forward, dropped) = state.withLock { state -> (Bool, Int) in
            if state.lines.count < capacity {
                state.lines.append(line)
            } else {
                state.lines[state.next] = line
                state.next = (state.next + 1) % capacity
            }
            state.total += 1
            var droppedBefore = 0
            if ContinuousClock.now - state.windowStart >= .seconds(1) {
                droppedBefore = state.droppedInWindow
                state.windowStart = .now
                state.forwardedInWindow = 0
                state.droppedInWindow = 0
            }
            guard state.forwardedInWindow < forwardPerSecond else {
                state.droppedInWindow += 1
                state.notForwarded += 1
                return (false, droppedBefore)
            }
            state.forwardedInWindow += 1
            return (true, droppedBefore)
        }
        if dropped > 0 {
            let note = "the app wrote more than \(forwardPerSecond) lines a second: \(dropped) lines were not passed on to the supervisor's log (this log keeps the last \(capacity))"
            logger.warning("\(note)")
            state.withLock { state in
                let noteLine = Line(time: Date(), source: "supervisor", level: "warning", text: note)
                if state.lines.count < capacity { state.lines.append(noteLine) } else {
                    state.lines[state.next] = noteLine
                    state.next = (state.next + 1) % capacity
                }
            }
        }
        if forward {
            logger.log(level: level, "\(text)", metadata: ["aerogrid.source": "\(source)"])
        }
    }

    /// The most recent lines, oldest first.
    public func tail(_ count: Int) -> [Line] {
        state.withLock { state in
            let ordered = Array(state.lines[state.next...] + state.lines[..<state.next])
            return Array(ordered.suffix(count))
        }
    }

    /// The lines after the first `seen` ever written (those still kept), and the count to
    /// pass next time: how a follower reads on without repeats.
    public func lines(after seen: Int) -> (lines: [Line], seen: Int) {
        state.withLock { state in
            let ordered = Array(state.lines[state.next...] + state.lines[..<state.next])
            let new = max(0, min(state.total - seen, ordered.count))
            return (Array(ordered.suffix(new)), state.total)
        }
    }

    /// Lines written since the start, kept or not.
    public var totalLines: Int { state.withLock { $0.total } }

    /// Lines kept here but not passed on to the supervisor's log (over the rate).
    public var linesNotForwarded: Int { state.withLock { $0.notForwarded } }
}
