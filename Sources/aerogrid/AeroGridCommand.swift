import AeroGridCore
import ArgumentParser
import Foundation
import Logging

@main
struct AeroGridCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aerogrid",
        abstract: "Live data from Kafka into Excel: run tenants' Python apps and stream their grids.",
        version: AeroGridVersion.current,
        subcommands: [
            VersionCommand.self, ServeCommand.self, DevCommand.self, TenantCommand.self, TokenCommand.self, AppCommand.self,
            GridCommand.self, QuotaCommand.self, ACLCommand.self, KafkaCommand.self,
        ]
    )
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevel = LogLevel(.info)

    /// Sets up logging to standard error once per process, at the chosen level.
    func makeLogger(label: String) -> Logger {
        LoggingSystem.bootstrapOnce()
        var logger = Logger(label: label)
        logger.logLevel = logLevel.level
        return logger
    }
}

struct LogLevel: ExpressibleByArgument {
    let level: Logger.Level

    init(_ level: Logger.Level) {
        self.level = level
    }

    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument.lowercased()) else { return nil }
        self.level = level
    }

    var defaultValueDescription: String { level.rawValue }
}

/// Writes a line to standard output at once, even when it is a pipe (scripts and tests
/// read what the platform prints, such as the bootstrap servers).
func printLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

extension LoggingSystem {
    private static let bootstrapped: Void = LoggingSystem.bootstrap(StreamLogHandler.standardError)

    static func bootstrapOnce() { _ = bootstrapped }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")

    func run() {
        print("aerogrid \(AeroGridVersion.current)")
    }
}
