import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridServer
import AeroGridStore
import ArgumentParser
import Foundation
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the platform: the REST API and every tenant's apps, until SIGTERM.",
        discussion: """
            The first start creates an operator token and prints it once; set \
            AEROGRID_OPERATOR_TOKEN to choose it instead. See docs/operations.md for the \
            configuration file and docs/api.md for the API.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "The configuration file (TOML).")
    var config: String = "aerogrid.toml"

    func run() async throws {
        let logger = global.makeLogger(label: "aerogrid.server")
        let configuration = try ServerConfiguration.load(path: config)
        try await runServer(configuration, logger: logger, operatorToken: ProcessInfo.processInfo.environment["AEROGRID_OPERATOR_TOKEN"])
    }
}

/// Opens the store, makes the operator token on a first start, and serves until stopped.
func runServer(_ configuration: ServerConfiguration, logger: Logger, operatorToken: String?,
               outOfRangePolicy: OutOfRangePolicy = .fail, afterBootstrap: (Store) async throws -> Void = { _ in }) async throws {
    let data = configuration.dataDirectory
    try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
    // The sandboxed apps (another uid) read their bundles below it.
    chmod(data, 0o755)
    // Token hashes and the audit: the owner's only. Made 0600 before SQLite opens it, which
    // gives its -wal and -shm files the same mode.
    let database = "\(data)/aerogrid.sqlite"
    for path in [database, database + "-wal", database + "-shm"] where FileManager.default.fileExists(atPath: path) {
        chmod(path, 0o600)
    }
    if !FileManager.default.fileExists(atPath: database) {
        _ = FileManager.default.createFile(atPath: database, contents: nil, attributes: [.posixPermissions: 0o600])
    }
    let store = try Store(path: database)
    if let secret = try await ControlPlaneServer.bootstrapOperator(store: store, fromEnvironment: operatorToken) {
        printLine("operator token: \(secret)")
        printLine("(shown once: keep it; it creates tenants)")
    }
    try await afterBootstrap(store)
    var server = ControlPlaneServer(
        configuration: configuration, defaultProfile: try InstallLayout.resource("sandbox-profiles/python.json"),
        defaultSDK: try InstallLayout.resource("python"), logger: logger)
    server.outOfRangePolicy = outOfRangePolicy
    server.sites = WebSites.installed()
    try await server.run(store: store) { url in printLine("listening on \(url)") }
}

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run the platform on embedded defaults: in-memory Kafka, ./.aerogrid, a demo tenant.",
        discussion: """
            HTTPS (with a certificate authority made for this machine, since Office add-ins load \
            only over HTTPS) and plain HTTP for curl. The URLs and tokens are printed and kept \
            in .aerogrid/dev-tokens (mode 0600), so a rerun shows the same ones.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Where the platform keeps its state.")
    var dir: String = ".aerogrid"

    @Option(help: "HTTPS port.")
    var httpsPort: Int = 8443

    @Option(help: "Plain HTTP port.")
    var httpPort: Int = 8080

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    func run() async throws {
        let logger = global.makeLogger(label: "aerogrid.dev")
        let directory = URL(fileURLWithPath: dir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        let kafka = try EmbeddedKafka(logger: logger)
        try kafka.createTopic("orders", partitions: 8)
        let tls = try DevCertificates.ensure(in: "\(directory)/tls", host: host)

        var configuration = ServerConfiguration(
            dataDirectory: directory, listen: .init(host: host, port: httpsPort), kafkaBootstrap: kafka.bootstrapServers)
        configuration.httpListen = .init(host: host, port: httpPort)
        configuration.tls = tls
        configuration.kafkaProperties = ["fetch.wait.max.ms": "10"]

        var tokens = DevTokens(path: "\(directory)/dev-tokens")
        let operatorToken = tokens.values["operator"] ?? AeroGridServer.newTokenSecret()
        tokens.values["operator"] = operatorToken
        try tokens.save()
        try await runServer(configuration, logger: logger, operatorToken: operatorToken, outOfRangePolicy: .resetToEarliest) { store in
            if try await store.tenant("demo") == nil || tokens.values["demo-admin"] == nil {
                if try await store.tenant("demo") != nil { try await store.deleteTenant("demo") }
                tokens.values["demo-admin"] = try await AeroGridServer.createTenant("demo", topics: ["orders", "demo.*"], in: store)
                try tokens.save()
            }
            printLine("AeroGrid dev platform")
            printLine("  console and API:   https://\(host):\(httpsPort)/   (certificate authority: \(tls.certificate.replacingOccurrences(of: "server.pem", with: "ca.pem")))")
            printLine("  API for curl:      http://\(host):\(httpPort)/api/v1")
            printLine("  Kafka:             \(kafka.bootstrapServers) (in memory; topic orders, 8 partitions)")
            printLine("  operator token:    \(operatorToken)")
            printLine("  demo admin token:  \(tokens.values["demo-admin"]!)")
            printLine("  (kept in \(tokens.path))")
            printLine("  try: curl -H 'Authorization: Bearer \(tokens.values["demo-admin"]!)' http://\(host):\(httpPort)/api/v1/apps")
        }
        withExtendedLifetime(kafka) {}
    }
}

/// `.aerogrid/dev-tokens`: `name=secret` lines, readable by the owner only.
struct DevTokens {
    let path: String
    var values: [String: String] = [:]

    init(path: String) {
        self.path = path
        for line in ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
    }

    func save() throws {
        let text = values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: "\n") + "\n"
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        chmod(path, 0o600)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }
}

/// A certificate authority and a server certificate for this machine, made once with
/// openssl: browsers and Excel trust the server once the CA is trusted.
enum DevCertificates {
    static func ensure(in directory: String, host: String) throws -> ServerConfiguration.TLS {
        let tls = ServerConfiguration.TLS(certificate: "\(directory)/server.pem", key: "\(directory)/server.key")
        if FileManager.default.fileExists(atPath: tls.certificate) && FileManager.default.fileExists(atPath: tls.key) { return tls }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o700)
        let names = host == "127.0.0.1" || host == "localhost" ? "DNS:localhost,IP:127.0.0.1" : "DNS:localhost,IP:127.0.0.1,IP:\(host)"
        try "subjectAltName=\(names)\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "825",
                     "-subj", "/CN=AeroGrid development CA"], in: directory)
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], in: directory)
        try openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
                     "-days", "825", "-extfile", "server.ext"], in: directory)
        return tls
    }

    private static func openssl(_ arguments: [String], in directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        do { try process.run() } catch {
            throw ValidationError("cannot run /usr/bin/openssl (apt-get install openssl): \(error)")
        }
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}

/// The web console at `/` and the Excel add-in at `/excel/`, from the installation.
enum WebSites {
    static let consolePolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    /// Office hosts frame the add-in and it loads Office.js from Microsoft's CDN.
    static let excelPolicy = "default-src 'self'; script-src 'self' https://appsforoffice.microsoft.com; "
        + "style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; connect-src 'self' https://appsforoffice.microsoft.com; "
        + "object-src 'none'; base-uri 'none'; "
        + "frame-ancestors 'self' https://*.office.com https://*.office365.com https://*.officeapps.live.com https://*.microsoft.com"

    static func installed() -> [StaticSite] {
        var sites: [StaticSite] = []
        if let console = try? InstallLayout.resource("console") {
            sites.append(StaticSite(root: console, prefix: "/", contentSecurityPolicy: consolePolicy))
        }
        if let excel = try? InstallLayout.resource("clients/excel") {
            // The manifest names the server by the address the request came to.
            sites.append(StaticSite(root: excel, prefix: "/excel/", contentSecurityPolicy: excelPolicy) { file, contents, request in
                guard file.hasSuffix(".xml"), let host = request.head.authority else { return contents }
                return Data(String(decoding: contents, as: UTF8.self).replacingOccurrences(of: "{{AEROGRID_BASE_URL}}", with: "https://\(host)").utf8)
            })
        }
        return sites
    }
}
