"""The runner's command line and app loading (python -m aerogrid run app.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

from aerogrid.__main__ import LoadError, UsageError, load_app, parse_args, supervisor_fd
from conftest import REPO_DIR, SDK_DIR

SEED_APP = os.path.join(REPO_DIR, "Examples", "ordersapp", "app.py")


@pytest.fixture(autouse=True)
def keep_main_and_path(monkeypatch):
    # load_app installs the app as __main__ and puts its folder on sys.path, as a run would.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_load_app_defines_broker_uri_and_runs_the_seed_unchanged():
    app = load_app(SEED_APP, "localhost:9092")
    assert app.name == "ordersapp" and app.broker == "localhost:9092"
    main = sys.modules["__main__"]
    assert main.BROKER_URI == "localhost:9092" and main.__file__ == SEED_APP
    assert [s.topic.name for s in app.streams] == ["orders"]


def test_load_app_needs_exactly_one_app(tmp_path):
    path = tmp_path / "none.py"
    path.write_text("x = 1\n")
    with pytest.raises(LoadError, match="exactly one aerogrid.App, it created 0"):
        load_app(str(path), "b")


def test_the_app_can_import_modules_beside_it(tmp_path):
    (tmp_path / "helpers.py").write_text("NAME = 'fromhelper'\n")
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import aerogrid, helpers
        app = aerogrid.App(helpers.NAME, broker=BROKER_URI)
    """))
    assert load_app(str(tmp_path / "app.py"), "b").name == "fromhelper"


def test_parse_args():
    assert parse_args(["run", "app.py"]) == {"path": "app.py", "broker": None, "print_grids": False,
                                             "idle_exit": None, "quiet": False}
    options = parse_args(["run", "--broker", "k:9092", "app.py", "--print-grids", "--idle-exit=2.5", "--quiet"])
    assert options == {"path": "app.py", "broker": "k:9092", "print_grids": True, "idle_exit": 2.5, "quiet": True}
    for argv in (["serve"], ["run"], ["run", "a.py", "b.py"], ["run", "a.py", "--broker"],
                 ["run", "a.py", "--idle-exit", "soon"], ["run", "a.py", "--nope"], []):
        with pytest.raises(UsageError):
            parse_args(argv)


def test_supervisor_fd_prefers_the_variable(monkeypatch):
    monkeypatch.setenv("AEROGRID_IPC_FD", "7")
    assert supervisor_fd() == 7


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "aerogrid", *args], cwd=SDK_DIR, capture_output=True,
                          text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")}, **kwargs)


def test_cli_without_supervisor_or_broker_explains_itself():
    result = run_cli("run", SEED_APP, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "give --broker HOST:PORT" in result.stderr


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0 and "python -m aerogrid run APP.py" in result.stdout
