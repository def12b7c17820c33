import Foundation
import Synchronization

/// SIGINT and SIGTERM ask the run to stop cleanly: the current step finishes, every rank
/// agrees to stop after the same step (the flag rides on the per-step gather in
/// `runTraining`), a checkpoint is saved when --save is given, the final metrics record is
/// written and the job exits non-zero with one line. A second signal ends the process at
/// once, removing the temporary files of a save in progress (a manifest-less step
/// directory is removed by the next run that takes the save directory).
///
/// Under mpirun, Ctrl-C may reach a rank twice (SIGINT from the terminal and the SIGTERM
/// mpirun forwards); a different signal within two seconds of the first counts as the same
/// request.
public enum StopSignals {
    /// Installs the handlers (idempotent; the process keeps them).
    public static func install() {
        // A parent may have started us with the signals blocked (the mask is inherited):
        // unblock them on the calling thread, which every rank (thread) calls this from.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        guard installed.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        _ = received.load(ordering: .relaxed)
        _ = receivedAt.load(ordering: .relaxed)
        signal(SIGINT, handleStopSignal)
        signal(SIGTERM, handleStopSignal)
    }

    /// The first stop signal received (0: none).
    public static var pending: Int32 { received.load(ordering: .relaxed) }

    /// Temporary files a save in progress in this process may leave: a second signal
    /// unlinks them before it ends the process. nil or empty: no save in progress.
    public static func saving(temporaries paths: [String]?) {
        var buffer: UnsafeMutablePointer<CChar>? = nil
        if let paths, !paths.isEmpty {
            let bytes: [CChar] = paths.flatMap { Array($0.utf8CString) } + [0]
            let b = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
            b.initialize(from: bytes, count: bytes.count)
            buffer = b
        }
        // The replaced list is freed: a handler still reading it is about to _exit anyway.
        let old = temporaries.exchange(Int(bitPattern: buffer), ordering: .acquiringAndReleasing)
        UnsafeMutablePointer<CChar>(bitPattern: old)?.deallocate()
    }

    /// "SIGINT", "SIGTERM" or the number.
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }
}

private let installed = Atomic<Bool>(false)
private let received = Atomic<Int32>(0)
private let receivedAt = Atomic<Int64>(0)
/// The address of the NUL-separated, empty-string-terminated list of paths (0: none).
private let temporaries = Atomic<Int>(0)

private func monotonicNanoseconds() -> Int64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
}

/// Async-signal-safe: atomics, clock_gettime, strlen, unlink, write and _exit only.
private func handleStopSignal(_ signal: Int32) {
    let now = monotonicNanoseconds()
    let (first, previous) = received.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
    if first {
        receivedAt.store(now, ordering: .relaxed)
        return
    }
    if previous != signal && now - receivedAt.load(ordering: .relaxed) < 2_000_000_000 { return }
    if var path = UnsafeMutablePointer<CChar>(bitPattern: temporaries.load(ordering: .acquiring)) {
        while path.pointee != 0 {
            unlink(path)
            path += strlen(path) + 1
        }
    }
    let message: StaticString = "zero-train: error: second interrupt: stopped at once, without a checkpoint\n"
    _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
    _exit(128 + signal)
}
