import Foundation

/// Reads a JSON config: our own keys (the flag names with underscores, e.g. "micro_batch",
/// "stage"; see `TrainingOption.all`) or a DeepSpeed config, read with DeepSpeed's semantics
/// (docs/deepspeed.md). Every value is checked for its type and range like the flag it
/// stands for; unknown or unsupported keys are named in an error, never ignored.
public enum ConfigFile {
    /// `ranks` is the run's rank count (DeepSpeed's train_batch_size rule needs it); `explicit`
    /// holds the command line's flags, which fill a DeepSpeed config's "auto" values.
    public static func apply(_ url: URL, to config: inout TrainingConfig, ranks: Int = 1,
                             explicit: ExplicitFlags = ExplicitFlags()) throws {
        let path = url.path
        if let found = describeNonRegularFile(path) {
            throw found.hasPrefix("nothing") ? ConfigError("config file not found: \(path)")
                : ConfigError("config file \(path) is \(found); expected a JSON file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("config file \(path) cannot be read (check its permissions)")
        }
        guard let json = ConfigJSON.parse(data) else { throw ConfigError("config file \(path) is not valid JSON") }
        guard let object = json.objectValue else { throw ConfigError("config file \(path) is not a JSON object") }
        try apply(object, to: &config, file: url.lastPathComponent, ranks: ranks, explicit: explicit)
    }

    /// A DeepSpeed config (any of its keys present) gets DeepSpeed's semantics
    /// (`DeepSpeedConfig`); otherwise the keys are ours, each set like its flag.
    public static func apply(_ object: [String: ConfigJSON], to c: inout TrainingConfig, file: String, ranks: Int = 1,
                             explicit: ExplicitFlags = ExplicitFlags()) throws {
        if DeepSpeedConfig.isDeepSpeed(object) {
            var reader = DeepSpeedConfig(file: file, config: c, ranks: ranks, explicit: explicit)
            c = try reader.apply(object)
            return
        }
        var unknown: [String] = []
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            if let option = TrainingOption.forConfigKey(key) {
                try option.set(&c, json: value, label: "\(file): '\(key)'")
            } else {
                unknown.append(key)
            }
        }
        if !unknown.isEmpty {
            throw ConfigError("\(file): unknown or unsupported key\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", "))")
        }
    }
}

/// What is at `path`, in plain words, when it is not a regular file (nil when it is one).
public func describeNonRegularFile(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0 else { return errno == ENOENT ? "nothing (no such file)" : String(cString: strerror(errno)) }
    switch st.st_mode & S_IFMT {
    case S_IFREG: return nil
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO (named pipe)"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    default: return "not a regular file"
    }
}
