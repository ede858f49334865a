import AeroGridIPC
import Foundation
import Synchronization

/// The supervisor's end of one app process's socket (fd 3 in the app): a reader thread
/// that decodes frames and hands them to `onFrame`, and a writer thread that sends queued
/// frames in order and a heartbeat after a second of silence. Both block on the socket,
/// so neither runs on Swift's cooperative pool.
final class AppConnection: Sendable {
    private let fd: Int32
    private let outbox = Mutex<Outbox>(Outbox())
    private let wake = NSCondition()
    private let lastReceived = Mutex<ContinuousClock.Instant>(.now)
    /// The reader and the writer; the last to finish closes the socket.
    private let loopsRunning = Atomic<Int>(2)

    private struct Outbox {
        var frames: [[UInt8]] = []
        var closed = false
        /// After the shutdown frame nothing more is sent.
        var shutdownSent = false
    }

    /// `onFrame` runs on the reader thread, one frame at a time, with the size of the frame's
    /// payload; `onEnd` runs once when the connection ends (EOF, an error, or a protocol
    /// violation, which it is given).
    init(
        fd: Int32, limits: AppLimits, log: AppLog, onFrame: @escaping @Sendable (AppFrame, Int) throws(ProtocolViolation) -> Void,
        onEnd: @escaping @Sendable (ProtocolViolation?) -> Void
    ) {
        self.fd = fd
        let reader = Thread { [self] in
            let violation = readLoop(limits: limits, log: log, onFrame)
            loopFinished()
            onEnd(violation)
        }
        reader.name = "aerogrid-ipc-reader"
        reader.start()
        let writer = Thread { [self] in
            writeLoop()
            loopFinished()
        }
        writer.name = "aerogrid-ipc-writer"
        writer.start()
    }

    /// Queues a frame; frames go out in the order queued. False once the connection sends
    /// nothing more (closed, or after the shutdown frame).
    @discardableResult
    func send(_ frame: [UInt8]) -> Bool {
        wake.lock()
        let accepted = outbox.withLock { box -> Bool in
            guard !box.closed && !box.shutdownSent else { return false }
            box.frames.append(frame)
            return true
        }
        if accepted { wake.signal() }
        wake.unlock()
        return accepted
    }

    /// Queues the shutdown frame, once: the supervisor sends nothing after it.
    func sendShutdown(reason: String) {
        wake.lock()
        let accepted = outbox.withLock { box -> Bool in
            guard !box.closed && !box.shutdownSent else { return false }
            box.frames.append(SupervisorFrames.shutdown(reason: reason))
            box.shutdownSent = true
            return true
        }
        if accepted { wake.signal() }
        wake.unlock()
    }

    /// Sends what is queued, then closes our end: the app sees EOF.
    func close() {
        wake.lock()
        outbox.withLock { $0.closed = true }
        wake.signal()
        wake.unlock()
    }

    /// How long the app has been silent (any frame counts).
    var silence: Duration { ContinuousClock.now - lastReceived.withLock { $0 } }

    private func readLoop(limits: AppLimits, log: AppLog, _ onFrame: @Sendable (AppFrame, Int) throws(ProtocolViolation) -> Void) -> ProtocolViolation? {
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        // Frames and bytes in the current one-second window, against the app's caps; log
        // frames read, and dropped, in it.
        var windowStart = ContinuousClock.now
        var frames = 0
        var bytes = 0
        var logBytes = 0
        var logFrames = 0
        var dropped = (frames: 0, bytes: 0)
        while true {
            let count = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return nil }
            let now = ContinuousClock.now
            lastReceived.withLock { $0 = now }
            if now - windowStart >= .seconds(1) {
                windowStart = now
                frames = 0
                bytes = 0
                logBytes = 0
                logFrames = 0
                if dropped.frames > 0 { log.droppedFrames(dropped.frames, bytes: dropped.bytes) }
                dropped = (0, 0)
            }
            bytes += count
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            do {
                guard bytes <= limits.bytesPerSecond else {
                    throw ProtocolViolation("the app sent over \(limits.bytesPerSecond) bytes in a second (the cap)")
                }
                while let (type, payload) = try decoder.next() {
                    frames += 1
                    guard frames <= limits.framesPerSecond else {
                        throw ProtocolViolation("the app sent over \(limits.framesPerSecond) frames in a second (the cap)")
                    }
                    // Log frames cost the supervisor their decoding: past their bounds they
                    // are dropped unread (and counted), never parsed.
                    if type == FrameType.log.rawValue {
                        logBytes += payload.count
                        logFrames += 1
                        if payload.count > limits.log.frameBytes || logBytes > limits.log.frameBytesPerSecond
                            || logFrames > limits.log.linesPerSecond
                        {
                            dropped.frames += 1
                            dropped.bytes += payload.count
                            continue
                        }
                    }
                    try onFrame(try AppFrame.decode(type: type, payload: payload), payload.count)
                }
            } catch let violation as ProtocolViolation {
                shutdown(fd, Int32(SHUT_RDWR))
                return violation
            } catch {
                shutdown(fd, Int32(SHUT_RDWR))
                return ProtocolViolation("\(error)")
            }
        }
    }

    private func writeLoop() {
        var lastSent = ContinuousClock.now
        while true {
            wake.lock()
            var (frames, closed) = outbox.withLock { box in
                defer { box.frames.removeAll() }
                return (box.frames, box.closed)
            }
            if frames.isEmpty && !closed {
                _ = wake.wait(until: Date(timeIntervalSinceNow: 1))
                (frames, closed) = outbox.withLock { box in
                    defer { box.frames.removeAll() }
                    return (box.frames, box.closed)
                }
            }
            wake.unlock()
            if frames.isEmpty && !closed && ContinuousClock.now - lastSent >= .seconds(1) {
                frames = [SupervisorFrames.heartbeat]
            }
            for frame in frames {
                guard writeAll(frame) else {
                    outbox.withLock { $0.closed = true }
                    shutdown(fd, Int32(SHUT_RDWR))
                    return
                }
                lastSent = .now
            }
            if closed {
                shutdown(fd, Int32(SHUT_WR))
                return
            }
        }
    }

    private func loopFinished() {
        if loopsRunning.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            Foundation.close(fd)
        }
    }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                // MSG_NOSIGNAL: an app that died gives EPIPE here, not a SIGPIPE that would
                // end the supervisor.
                let written = Foundation.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }
}
