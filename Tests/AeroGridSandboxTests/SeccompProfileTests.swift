import AeroGridSandbox
import Testing

@Suite struct SeccompProfileTests {
    @Test(arguments: ["python.json", "strict.json"])
    func theShippedProfilesLoadAndCompile(_ name: String) throws {
        let profile = try SeccompProfile.load(path: "\(repositoryRoot)/sandbox-profiles/\(name)")
        let filter = try SeccompFilter(profile: profile)
        #expect(filter.instructionCount > 50)
        #expect(profile.defaultAction == .errno(1))
        #expect(profile.quotaDefaults.memoryBytes != nil && profile.quotaDefaults.pids != nil)
    }

    @Test(arguments: [
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "reed"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0].names[1]: unknown syscall 'reed'"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_PERMIT"}]}"#,
            "syscalls[0].action: unknown action 'SCMP_ACT_PERMIT'"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SAME"}]}]}"#,
            "syscalls[0].args[0].op: unknown operator 'SCMP_CMP_SAME'"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "syscalls[0].args[0].index: 7 is not an argument index"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#,
            "architectures[0]: unknown architecture 'SCMP_ARCH_Z80'"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscals": []}"#,
            "syscals: unknown field"
        ),
        (#"{"syscalls": []}"#, "defaultAction: missing"),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}}]}"#,
            "syscalls[0].includes: unsupported field"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "aerogrid": {"memory": "lots"}}"#,
            "aerogrid.memory: expected a size such as \"256M\""
        ),
        ("{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [}", "not valid JSON at line 2, column 16"),
    ])
    func aMistakeIsRefusedNamingTheFileTheFieldAndTheReason(_ text: String, _ reason: String) {
        #expect {
            try SeccompProfile.parse(text, source: "tenant.json")
        } throws: { error in
            let message = (error as? SandboxError)?.message ?? ""
            return message.hasPrefix("seccomp profile tenant.json: ") && message.contains(reason)
        }
    }

    @Test func aMissingFileIsRefusedNamingIt() {
        #expect {
            try SeccompProfile.load(path: "/nonexistent/profile.json")
        } throws: { error in
            (error as? SandboxError)?.message.contains("/nonexistent/profile.json: cannot open") == true
        }
    }

    @Test func quotaDefaultsAndArgumentConditionsAreRead() throws {
        let profile = try SeccompProfile.parse(
            #"""
            {"defaultAction": "SCMP_ACT_KILL_PROCESS", "defaultErrnoRet": 38,
             "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                           "args": [{"index": 0, "value": 2114060416, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                          {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}],
             "aerogrid": {"memory": "512M", "cpus": 1.5, "pids": 100, "nofile": 1024, "tmpSize": "1G"}}
            """#, source: "inline")
        #expect(profile.defaultAction == .killProcess)
        #expect(profile.rules[0].args == [.init(index: 0, value: 2_114_060_416, valueTwo: 0, op: .maskedEqual)])
        #expect(profile.rules[1].action == .errno(38), "errnoRet defaults to defaultErrnoRet")
        #expect(profile.quotaDefaults == .init(memoryBytes: 512 << 20, cpus: 1.5, pids: 100, openFiles: 1024, tmpBytes: 1 << 30))
    }
}
