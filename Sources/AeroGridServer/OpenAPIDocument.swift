import Foundation

/// The API's OpenAPI 3 document (Resources/openapi.json), served as it is in the repository.
public enum OpenAPIDocument {
    public static let bytes: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
              let data = try? Data(contentsOf: url) else {
            return Array(#"{"error":{"code":"internal","message":"openapi.json is missing from the installation"}}"#.utf8)
        }
        return [UInt8](data)
    }()
}
