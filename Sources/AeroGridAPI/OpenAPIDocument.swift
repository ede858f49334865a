import Foundation

/// The API's OpenAPI 3 document (openapi.json in this folder), served as it is in the
/// repository. Looked up next to the binary (where the build puts the target's resources;
/// an installation copies that folder along) and then in the source tree, never through
/// `Bundle.module`, which stops the process when its folder is missing.
public enum OpenAPIDocument {
    public static let bytes: [UInt8] = {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [
            executable.appendingPathComponent("AeroGrid_AeroGridAPI.resources/openapi.json"),
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openapi.json"),
        ]
        for url in candidates {
            if let data = try? Data(contentsOf: url) { return [UInt8](data) }
        }
        return Array(
            #"{"error":{"code":"internal","message":"openapi.json is missing: copy AeroGrid_AeroGridAPI.resources next to the aerogrid binary"}}"#.utf8)
    }()
}

/// The document's schemas: every body the API sends or takes.
public typealias Schemas = Components.Schemas
