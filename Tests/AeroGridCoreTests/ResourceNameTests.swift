import AeroGridCore
import Testing

@Suite struct ResourceNameTests {
    @Test(arguments: ["demo", "orders-app", "fx_ticker", "a", "0day", String(repeating: "x", count: 63)])
    func acceptsSafeNames(_ name: String) throws {
        #expect(try ResourceName(name).value == name)
    }

    @Test(arguments: [
        ("", "empty"),
        ("orDers", "only lowercase"),
        ("Orders", "must start"),
        ("-x", "must start"),
        ("a/b", "found '/'"),
        ("a..b", "found '.'"),
        (String(repeating: "x", count: 64), "limit is 63"),
    ])
    func refusesUnsafeNamesWithTheReason(_ name: String, _ reason: String) {
        #expect {
            try ResourceName(name, kind: "app name")
        } throws: { error in
            let error = error as! AeroGridError
            return error.code == .invalidName && error.message.contains(reason) && error.message.hasPrefix("app name")
        }
    }
}
