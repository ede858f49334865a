"""Bundles the control plane must refuse (zip slip, symlinks, bombs, bad manifests …), each
with the documented error and leaving nothing on disk; a bundle with directories accepted;
concurrent deploys; a refused new version leaving the deployed app as it was.
"""

from __future__ import annotations

import functools
import io
import secrets
import stat
import struct
import threading
import time
import zipfile
from types import SimpleNamespace

import pytest

from control_plane import APP, app_names, assert_bundle_private, bundle_path, check_app, create_tenant, create_token
from support.harness import ORDERSAPP, log
from support.server import Server, digest, expect, regular, tree, zip_directory, zip_entries

# --------------------------------------------------------------------------------------------
# Bundles the server refuses


def manifest(name: str, **fields) -> bytes:
    text = f'name = "{name}"\n' + "".join(f'{key} = "{value}"\n' for key, value in fields.items())
    return text.encode()


def valid_files(name: str) -> list:
    return [(regular("app.toml"), manifest(name)), (regular("app.py"), (ORDERSAPP / "app.py").read_bytes())]


@functools.cache
def zeros_bomb() -> bytes:
    """app.toml, app.py and one entry of 1 GiB of zeros (about 1 MB deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in valid_files("bad-bomb"):
            archive.writestr(info, data)
        chunk = bytes(1 << 20)
        with archive.open(regular("zeros.bin"), "w", force_zip64=True) as entry:
            for _ in range(1024):
                entry.write(chunk)
    return buffer.getvalue()


def lying_bomb() -> bytes:
    """One entry of 100 MiB of zeros whose headers claim it expands to its compressed size:
    only counting the bytes as they come catches it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(regular("zeros.bin"), "w") as entry:
            chunk = bytes(1 << 20)
            for _ in range(100):
                entry.write(chunk)
        for info, data in valid_files("bad-lying-bomb"):
            archive.writestr(info, data)
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"PK\x03\x04"
    compressed = struct.unpack_from("<I", data, 18)[0]
    struct.pack_into("<I", data, 22, compressed)  # the local header's uncompressed size
    central = data.index(b"PK\x01\x02")
    assert data[central + 46:central + 46 + 9] == b"zeros.bin"
    struct.pack_into("<I", data, central + 24, compressed)  # the central directory's
    return bytes(data)


def corrupted_entry() -> bytes:
    """A stored (uncompressed) entry whose bytes no longer match its CRC-32."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, data in valid_files("bad-crc"):
            archive.writestr(info, data)
        info = regular("data.txt")
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, b"hello world\n" * 100)
    data = bytearray(buffer.getvalue())
    data[data.index(b"hello world")] ^= 0x20  # 'h' -> 'H'
    return bytes(data)


def too_many_entries() -> bytes:
    return zip_entries(valid_files("bad-many") + [(regular(f"data/{n:04}.txt"), b"x") for n in range(999)])


def oversized(size: int) -> bytes:
    """A real bundle whose zip is `size` bytes: app.toml, app.py and random (incompressible) data."""
    base = zip_entries(valid_files("bad-huge"))
    filler = secrets.token_bytes(size - len(base) - 200)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, data in valid_files("bad-huge"):
            archive.writestr(info, data)
        archive.writestr(regular("filler.bin"), filler, compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


# case: (bundle, status, code, words the message must hold one of, the entry it must name)
BAD_BUNDLES = {
    "not-a-zip": (lambda: b"this is not a zip archive\n" * 40, 422, "invalid_bundle", ("zip",), None),
    "empty-body": (lambda: b"", 422, "invalid_bundle", ("zip",), None),
    "zip-slip": (lambda: zip_entries(valid_files("bad-slip") + [(regular("../evil.py"), b"print(1)\n")]),
                 422, "invalid_bundle", ("..",), "evil.py"),
    "nested-zip-slip": (lambda: zip_entries(valid_files("bad-slip2") + [(regular("lib/../../evil.py"), b"x")]),
                        422, "invalid_bundle", ("..",), "evil.py"),
    "absolute-path": (lambda: zip_entries(valid_files("bad-abs") + [(regular("/etc/evil"), b"x")]),
                      422, "invalid_bundle", ("absolute",), "/etc/evil"),
    "symlink": (lambda: zip_entries(valid_files("bad-link") + [(regular("link.py", stat.S_IFLNK | 0o777), b"/etc/passwd")]),
                422, "invalid_bundle", ("symlink",), "link.py"),
    "fifo": (lambda: zip_entries(valid_files("bad-fifo") + [(regular("pipe", stat.S_IFIFO | 0o644), b"")]),
             422, "invalid_bundle", ("special",), "pipe"),
    "device": (lambda: zip_entries(valid_files("bad-dev") + [(regular("disk", stat.S_IFBLK | 0o644), b"")]),
               422, "invalid_bundle", ("special",), "disk"),
    "no-app-toml": (lambda: zip_entries([(regular("app.py"), b"print(1)\n")]), 422, "invalid_bundle", ("app.toml",), None),
    "app-toml-in-a-directory": (lambda: zip_entries([(regular("ordersapp/app.toml"), manifest("bad-nested")),
                                                      (regular("ordersapp/app.py"), b"")]),
                                422, "invalid_bundle", ("app.toml",), None),
    "invalid-app-toml": (lambda: zip_entries([(regular("app.toml"), b'name = "unterminated\n'), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), None),
    "invalid-app-name": (lambda: zip_entries([(regular("app.toml"), manifest("Bad_Name")), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), "Bad_Name"),
    "app-name-over-63": (lambda: zip_entries([(regular("app.toml"), manifest("a" * 64)), (regular("app.py"), b"")]),
                         422, "invalid_bundle", ("app.toml",), "a" * 64),
    "app-name-starting-with-dash": (lambda: zip_entries([(regular("app.toml"), manifest("-app")), (regular("app.py"), b"")]),
                                    422, "invalid_bundle", ("app.toml",), "-app"),
    "app-name-with-a-dot": (lambda: zip_entries([(regular("app.toml"), manifest("my.app")), (regular("app.py"), b"")]),
                            422, "invalid_bundle", ("app.toml",), "my.app"),
    "missing-entrypoint": (lambda: zip_entries([(regular("app.toml"), manifest("bad-entry", entrypoint="main.py")),
                                                (regular("app.py"), b"")]),
                           422, "invalid_bundle", ("entrypoint",), "main.py"),
    "unknown-runtime": (lambda: zip_entries([(regular("app.toml"), manifest("bad-runtime", runtime="python2.7")),
                                             (regular("app.py"), b"")]),
                        422, "invalid_bundle", ("runtime",), "python2.7"),
    "file-and-directory-of-one-name": (lambda: zip_entries(valid_files("bad-clash") + [(regular("lib"), b"x"),
                                                                          (regular("lib/x.py"), b"y")]),
                                       422, "invalid_bundle", ("lib",), "lib"),
    "corrupted-entry": (corrupted_entry, 422, "invalid_bundle", ("crc", "checksum", "corrupt", "damaged"), "data.txt"),
    "zip-bomb": (zeros_bomb, 422, "invalid_bundle", ("expands",), None),
    "lying-zip-bomb": (lying_bomb, 422, "invalid_bundle", ("expands",), None),
    "too-many-entries": (too_many_entries, 422, "invalid_bundle", ("1000", "1,000"), None),
    "over-16-mib": (lambda: oversized((16 << 20) + 4096), 413, "too_large", ("limit", "large", "mib"), None),
    "over-20-mib": (lambda: oversized(20 << 20), 413, "too_large", ("limit", "large", "mib"), None),
}


@pytest.fixture(scope="module")
def bundle_tenant(platform):
    tenant = create_tenant(platform, "bundles")
    developer, _ = create_token(tenant.admin, "developer")
    return SimpleNamespace(tenant=tenant, developer=developer)


def disk_state(server: Server) -> dict:
    top = sorted(p.name for p in server.data_dir.iterdir()) if server.data_dir.exists() else []
    return {"bundles": tree(server.data_dir / "bundles"), "tmp": tree(server.tmp_dir), "data_dir": top}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_bad_bundle_is_refused(platform, bundle_tenant, case):
    build, status, code, words, entry = BAD_BUNDLES[case]
    began = time.monotonic()
    bundle = build()
    built = time.monotonic() - began
    developer = bundle_tenant.developer
    before = disk_state(platform.server)
    apps_before = app_names(developer)

    began = time.monotonic()
    answer = developer.upload(bundle) if len(bundle) > (1 << 20) else developer.deploy(bundle)
    log(f"bundle {case}: {len(bundle):,} bytes (built in {built:.2f} s) -> {answer.status} in "
        f"{time.monotonic() - began:.2f} s: {answer.text[:200]}")
    expect(answer, status, code)
    message = answer.error["message"]
    assert any(word in message.lower() for word in words), f"the message does not say {' or '.join(words)}: {message!r}"
    if entry is not None:
        assert entry in message, f"the message does not name {entry!r}: {message!r}"
    assert str(platform.server.data_dir) not in message and ".incoming" not in message, \
        f"the message shows the server's own paths: {message!r}"

    expect(platform.server.client().get("/healthz"), 200)
    assert app_names(developer) == apps_before
    after = disk_state(platform.server)
    left = {key: sorted(set(after[key]) - set(before[key])) for key in after if after[key] != before[key]}
    assert after == before, f"the refused upload left something on disk (new or changed): {left}"


def test_a_bundle_with_directories_is_accepted(platform, bundle_tenant):
    """Directory entries, nested files and an entry point below the root are fine; the
    bundle is unpacked read-only, directories included."""
    developer = bundle_tenant.developer
    directory_entry = regular("src/", stat.S_IFDIR | 0o755)
    directory_entry.external_attr |= 0x10  # MS-DOS directory bit, as zip tools write it
    bundle = zip_entries([(regular("app.toml"), manifest("nested-app", entrypoint="src/main.py")),
                          (directory_entry, b""), (regular("src/main.py"), (ORDERSAPP / "app.py").read_bytes()),
                          (regular("src/lib/helpers.py"), b"X = 1\n")])
    app = check_app(expect(developer.deploy(bundle), 201).json())
    assert app["entrypoint"] == "src/main.py", app
    root = bundle_path(platform.server, bundle_tenant.tenant, bundle)
    assert (root / "src" / "lib" / "helpers.py").read_bytes() == b"X = 1\n"
    assert_bundle_private(root, bundle_tenant.tenant)
    expect(developer.delete("/api/v1/apps/nested-app"), 204)


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "different-bytes"])
def test_concurrent_deploys(platform, same):
    """Six tenants upload a bundle at once (the same bytes, or each its own): each gets its
    app, and every app's bundle is on disk under its digest — one upload's clean-up never
    takes another's fresh bundle — with nothing half-written left."""
    tenants = [create_tenant(platform, f"many{n}", orders=False) for n in range(6)]
    developers = [create_token(tenant.admin, "developer")[0] for tenant in tenants]
    shared = secrets.token_hex(8)
    bundles = [zip_directory(ORDERSAPP, comment=(shared if same else secrets.token_hex(8)).encode()) for _ in developers]
    answers: list = [None] * len(developers)
    barrier = threading.Barrier(len(developers))

    def deploy(index: int) -> None:
        barrier.wait(10)
        answers[index] = developers[index].deploy(bundles[index])

    threads = [threading.Thread(target=deploy, args=(n,)) for n in range(len(developers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for answer, bundle in zip(answers, bundles, strict=True):
        assert answer is not None and answer.status == 201, answer
        assert digest(bundle) in answer.json()["bundle_digest"], answer
    names = sorted(p.name for p in (platform.server.data_dir / "bundles").iterdir())
    missing = [digest(bundle) for tenant, bundle in zip(tenants, bundles, strict=True) if not bundle_path(platform.server, tenant, bundle).is_dir()]
    assert not missing, f"deployed apps whose bundle directory is gone: {missing}"
    assert not [name for name in names if name.startswith(".")], f"half-written bundles left: {names}"
    for developer in developers:
        expect(developer.delete(f"/api/v1/apps/{APP}"), 204)


def test_a_refused_bundle_does_not_change_the_deployed_app(platform, bundle_tenant):
    """A bad new version of an existing app is refused; the app keeps its version."""
    developer = bundle_tenant.developer
    name = "kept-app"
    good = zip_entries([(regular("app.toml"), manifest(name)), (regular("app.py"), (ORDERSAPP / "app.py").read_bytes())])
    first = expect(developer.deploy(good), 201).json()
    bad = zip_entries([(regular("app.toml"), manifest(name)), (regular("app.py"), b""),
                       (regular("link", stat.S_IFLNK | 0o777), b"/etc/shadow")])
    expect(developer.deploy(bad), 422, "invalid_bundle")
    now = expect(developer.app(name), 200).json()
    assert (now["version"], now["bundle_digest"]) == (first["version"], first["bundle_digest"]), now
    expect(developer.delete(f"/api/v1/apps/{name}"), 204)
