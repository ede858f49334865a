#if canImport(Glibc)
    import Glibc
#endif

/// Runs a blocking call (waiting for a process, spawning one) on a thread of its own, so it
/// never holds one of Swift's cooperative threads (there is one per core).
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        startThread { continuation.resume(returning: body()) }
    }
}

/// Starts a detached POSIX thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { argument in
            let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, box)
    precondition(result == 0, "cannot start a thread: \(errnoDescription(result))")
    pthread_detach(thread)
}

private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// One long-lived thread that every sandbox is cloned from. The kernel sends a sandbox's
/// init PR_SET_PDEATHSIG when the *thread* that cloned it exits, and idle pool threads do
/// exit; this one never does.
final class SpawnerThread: @unchecked Sendable {
    // @unchecked: `jobs` is only touched with `mutex` held.
    static let shared = SpawnerThread()

    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var jobs: [@Sendable () -> Void] = []

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        startThread { [self] in loop() }
    }

    /// Runs `body` on the spawner thread and waits for its result (synchronously: the
    /// spawn itself takes about a millisecond).
    func run<T>(_ body: () -> T) -> T {
        withoutActuallyEscaping(body) { body in
            let job = PendingJob(body)
            enqueue { job.execute() }
            return job.awaitResult()
        }
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    private func loop() {
        while true {
            pthread_mutex_lock(&mutex)
            while jobs.isEmpty { pthread_cond_wait(&condition, &mutex) }
            let batch = jobs
            jobs.removeAll()
            pthread_mutex_unlock(&mutex)
            for job in batch { job() }
        }
    }
}

/// One job for the spawner thread and the semaphore its caller waits on. Heap-allocated:
/// a `sem_t` must never move while in use.
private final class PendingJob<T>: @unchecked Sendable {
    // @unchecked: `result` is written by the spawner thread before `sem_post` and read by
    // the caller only after `sem_wait`, which orders the two.
    /// Dropped once run: the caller's closure may not outlive its call.
    private var body: (() -> T)?
    private var result: T?
    private let done = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init(_ body: @escaping () -> T) {
        self.body = body
        sem_init(done, 0, 0)
    }

    deinit {
        sem_destroy(done)
        done.deallocate()
    }

    func execute() {
        result = body?()
        body = nil
        sem_post(done)
    }

    func awaitResult() -> T {
        while sem_wait(done) != 0 {}  // retried on EINTR
        return result!
    }
}
