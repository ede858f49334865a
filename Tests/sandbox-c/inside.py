# Run inside the sandbox by test.sh (python3 -S): prints what the sandbox
# looks like from within, one key=value per line.
import errno
import importlib
import os
import socket


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return "ok"
    except OSError as e:
        return err_name(e)


status = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        status[key] = value.strip()
for key in ("Seccomp", "NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Groups"):
    print(f"{key}={status[key]}")

for ns in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
    print(f"ns_{ns}={os.readlink('/proc/self/ns/' + ns)}")
print("uid_map=" + " ".join(open("/proc/self/uid_map").read().split()))
print("gid_map=" + " ".join(open("/proc/self/gid_map").read().split()))
print("cgroup_paths=" + ",".join(sorted({line.strip().split(":", 2)[2] for line in open("/proc/self/cgroup")})))
print(f"pid={os.getpid()} ppid={os.getppid()}")
print(f"hostname={socket.gethostname()}")

# os.listdir holds one fd of its own while it reads: drop the ones that are
# closed again afterwards.
listed = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
open_fds = []
for fd in listed:
    try:
        os.fstat(fd)
        open_fds.append(fd)
    except OSError:
        pass
print("fds=" + ",".join(map(str, open_fds)))
print("env=" + ",".join(sorted(os.environ)))

for family in ("AF_INET", "AF_INET6", "AF_NETLINK"):
    try:
        socket.socket(getattr(socket, family), socket.SOCK_DGRAM if family == "AF_NETLINK" else socket.SOCK_STREAM).close()
        print(f"socket_{family}=ok")
    except OSError as e:
        print(f"socket_{family}={err_name(e)}")
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.send(b"x")
print("socket_unix=" + ("ok" if b.recv(1) == b"x" else "bad"))

print("write_root=" + try_write("/probe-file"))
print("write_app=" + try_write("/app/probe-file"))
print("write_usr=" + try_write("/usr/probe-file"))
print("write_python=" + try_write(os.path.dirname(os.__file__) + "/probe-file"))

written = 0
try:
    with open("/tmp/fill", "wb") as f:
        chunk = b"x" * 65536
        while written < 256 << 20:
            f.write(chunk)
            f.flush()
            written += len(chunk)
    print(f"tmp_fill=ok kb={written >> 10}")
except OSError as e:
    print(f"tmp_fill={err_name(e)} kb={written >> 10}")
finally:
    os.unlink("/tmp/fill")

try:
    ipc = socket.socket(fileno=3)
    ipc.send(b"ping from the app")
    print("ipc=" + ipc.recv(100).decode())
except OSError as e:
    print("ipc=" + err_name(e))

for module in ("json", "struct", "dataclasses", "asyncio"):  # the runner's needs, last: after the probes
    importlib.import_module(module)
print("imports=ok")
