public import AeroGridCore
import Foundation
import TOMLKit

/// An app bundle's manifest, `app.toml`: the app's name, its entry point and its runtime.
public struct BundleManifest: Sendable, Equatable {
    public var name: String
    public var entrypoint: String
    public var runtime: String

    /// The runtimes apps may ask for.
    public static let runtimes = ["python3.11"]

    /// Reads and checks `app.toml` in `directory`, and that the entry point is there.
    public static func load(directory: String) throws(AeroGridError) -> BundleManifest {
        let path = "\(directory)/app.toml"
        guard FileManager.default.fileExists(atPath: path) else {
            throw AeroGridError(.invalidArgument, "\(path) is missing: an app needs an app.toml with at least name = \"…\"")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AeroGridError(.invalidArgument, "\(path) is not UTF-8 text")
        }
        let manifest = try parse(text, source: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: "\(directory)/\(manifest.entrypoint)", isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw AeroGridError(.invalidArgument, "\(path) names entrypoint '\(manifest.entrypoint)', which is not a file of the bundle")
        }
        return manifest
    }

    /// Parses and checks the manifest's text (`source` names it in errors).
    public static func parse(_ text: String, source: String = "app.toml") throws(AeroGridError) -> BundleManifest {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch {
            throw AeroGridError(.invalidArgument, "\(source) is not valid TOML: \(error)")
        }
        guard let name = table["name"]?.string else {
            throw AeroGridError(.invalidArgument, "\(source) needs name = \"…\" (the app's name)")
        }
        _ = try ResourceName(name, kind: "app name in \(source)")
        let entrypoint = table["entrypoint"]?.string ?? "app.py"
        let components = entrypoint.split(separator: "/", omittingEmptySubsequences: false)
        guard !entrypoint.isEmpty, !entrypoint.hasPrefix("/"), !components.contains(where: { $0 == ".." || $0.isEmpty }) else {
            throw AeroGridError(.invalidArgument, "\(source): entrypoint '\(entrypoint)' must be a relative path inside the bundle")
        }
        let runtime = table["runtime"]?.string ?? "python3.11"
        guard runtimes.contains(runtime) else {
            throw AeroGridError(.invalidArgument, "\(source): unknown runtime '\(runtime)' (known: \(runtimes.joined(separator: ", ")))")
        }
        for key in table.keys where !["name", "entrypoint", "runtime", "quota"].contains(key) {
            throw AeroGridError(.invalidArgument, "\(source): unknown key '\(key)' (known: name, entrypoint, runtime, quota)")
        }
        return BundleManifest(name: name, entrypoint: entrypoint, runtime: runtime)
    }
}
