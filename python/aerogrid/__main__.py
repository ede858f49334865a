"""``python -m aerogrid run APP.py [options]``: load an app module and run it.

Under the supervisor (``AEROGRID_IPC_FD`` set, or a socket on fd 3) the app speaks IPC on
that socket; with ``--broker`` it consumes Kafka itself (needs ``pip install confluent-kafka``).
This module is imported at every app start, so it imports only what it needs.
"""

import os
import sys

USAGE = """\
usage: python -m aerogrid run APP.py [--broker HOST:PORT] [--print-grids]
                                     [--idle-exit SECONDS] [--quiet]

Runs APP.py with BROKER_URI defined in its globals.
  under the supervisor  speaks IPC on fd 3 (AEROGRID_IPC_FD names another fd)
  --broker HOST:PORT    standalone: consume Kafka directly (pip install confluent-kafka)
  --print-grids         standalone: print every grid as JSON on exit
  --idle-exit SECONDS   standalone: exit after SECONDS without new records (counted
                        from the partition assignment and from the end of each batch)
  --quiet               standalone: do not print grid changes as they happen
"""

SUPERVISOR_BROKER_URI = "aerogrid-ipc://fd/3"


class UsageError(Exception):
    """A bad command line; an empty message asks for the help text."""


class LoadError(Exception):
    """The app file does not define an app."""


def parse_args(argv: "list[str]") -> dict:
    """Parse the command line by hand: argparse costs more start-up time than the whole SDK."""
    if not argv:
        raise UsageError("a command is needed")
    if argv[0] in ("-h", "--help"):
        raise UsageError("")
    if argv[0] != "run":
        raise UsageError(f"unknown command {argv[0]!r}")
    options = {"path": None, "broker": None, "print_grids": False, "idle_exit": None, "quiet": False}
    args = iter(argv[1:])
    for arg in args:
        name, _, inline = arg.partition("=")
        if name in ("--broker", "--idle-exit"):
            value = inline or next(args, None)
            if not value:
                raise UsageError(f"{name} needs a value")
            if name == "--broker":
                options["broker"] = value
            else:
                try:
                    options["idle_exit"] = float(value)
                except ValueError:
                    raise UsageError(f"--idle-exit needs a number of seconds, got {value!r}") from None
        elif arg == "--print-grids":
            options["print_grids"] = True
        elif arg == "--quiet":
            options["quiet"] = True
        elif arg in ("-h", "--help"):
            raise UsageError("")
        elif arg.startswith("-") or options["path"] is not None:
            raise UsageError(f"unexpected argument {arg!r}")
        else:
            options["path"] = arg
    if options["path"] is None:
        raise UsageError("the app file is missing")
    return options


def supervisor_fd() -> "int | None":
    """The IPC socket's fd when running under the supervisor, else None."""
    value = os.environ.get("AEROGRID_IPC_FD")
    if value:
        return int(value)
    try:
        import stat

        return 3 if stat.S_ISSOCK(os.fstat(3).st_mode) else None
    except OSError:
        return None


def load_app(path: str, broker_uri: str):
    """Execute the app file as ``__main__`` with ``BROKER_URI`` defined; return its App."""
    from ._app import created_apps

    path = os.path.abspath(path)
    with open(path, "rb") as file:
        code = compile(file.read(), path, "exec")
    module = type(sys)("__main__")
    module.__file__ = path
    module.BROKER_URI = broker_uri
    sys.modules["__main__"] = module
    sys.path.insert(0, os.path.dirname(path))  # as `python app.py` would, for helper modules
    before = len(created_apps)
    exec(code, module.__dict__)
    apps = created_apps[before:]
    if len(apps) != 1:
        raise LoadError(f"{path} must create exactly one aerogrid.App, it created {len(apps)}")
    return apps[0]


def main(argv: "list[str] | None" = None) -> int:
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        fd = None if options["broker"] else supervisor_fd()
        if fd is None and not options["broker"]:
            raise UsageError("not under the supervisor: give --broker HOST:PORT to run standalone")
        broker_uri = options["broker"] or SUPERVISOR_BROKER_URI
        app = load_app(options["path"], broker_uri)
    except UsageError as exc:
        if not str(exc):
            print(USAGE, end="")
            return 0
        print(f"aerogrid: {exc}\n{USAGE}", end="", file=sys.stderr)
        return 2
    except LoadError as exc:
        print(f"aerogrid: {exc}", file=sys.stderr)
        return 1
    if fd is not None:
        from . import _ipc_runner

        return _ipc_runner.run(app, fd)
    from . import _standalone

    return _standalone.run(app, broker_uri, print_grids=options["print_grids"],
                           idle_exit=options["idle_exit"], quiet=options["quiet"])


if __name__ == "__main__":
    sys.exit(main())
