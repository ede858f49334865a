"""What the suites need of the machine, by name, each with how to get it when it is missing
(scripts/setup installs all of it). A suite's conftest.py names its needs in the `needs`
fixture; support.plugin skips the suite's tests, saying what is missing, when any is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .harness import AEROGRID

CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))

COMMANDS = ("kcat", "curl", "bash")
# PyPI name: the module it installs
PYTHON_PACKAGES = {"confluent-kafka": "confluent_kafka", "websockets": "websockets", "selenium": "selenium",
                   "axe-selenium-python": "axe_selenium_python"}


def importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def missing(needs) -> list:
    """The needs this machine lacks, each with how to get it. A need is "root", "aerogrid"
    (the built binary), "chromium", "chromium-driver", a command of COMMANDS or a package of
    PYTHON_PACKAGES."""
    found = []
    for need in needs:
        if need == "root":
            if os.geteuid() != 0:
                found.append("root (the platform runs apps in sandboxes: cgroups and namespaces)")
        elif need == "aerogrid":
            if not AEROGRID.exists():
                found.append(f"{AEROGRID} (swift build, or set AEROGRID_BIN)")
        elif need in ("chromium", "chromium-driver"):
            path = CHROMIUM if need == "chromium" else CHROMEDRIVER
            if not path.exists():
                found.append(f"{path} (apt-get install {need})")
        elif need in COMMANDS:
            if shutil.which(need) is None:
                found.append(f"{need} (apt-get install {need})")
        elif need in PYTHON_PACKAGES:
            if not importable(PYTHON_PACKAGES[need]):
                found.append(f"{need} (pip install {need})")
        else:
            raise ValueError(f"unknown need {need!r}: see support/prerequisites.py")
    return found
