"""Fixtures of the deploy/kubernetes checks (`make test-deploy`), besides support.plugin's.

What they need of the machine is not skipped when missing, it fails the tests that need it,
saying how to get it: kubernetes-validate at the version scripts/setup pins (its schemas ship
inside the package: no network), and the built `aerogrid` (or AEROGRID_BIN). No Kubernetes
cluster is used, or needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_checks import DEPLOY, Manifests, pinned_kubernetes_validate
from support.harness import AEROGRID


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    """The pinned kubernetes-validate, importable by this Python; its version."""
    wanted = pinned_kubernetes_validate()
    try:
        from kubernetes_validate.version import __version__ as installed
    except ImportError:
        pytest.fail(f"kubernetes-validate {wanted} is not installed: scripts/setup installs it "
                    f"(pip install kubernetes-validate=={wanted})")
    if installed != wanted:
        pytest.fail(f"kubernetes-validate {installed} is installed, scripts/setup pins {wanted}: run scripts/setup")
    return installed


@pytest.fixture(scope="session")
def aerogrid() -> Path:
    """The built binary the configuration is given to."""
    if not AEROGRID.exists():
        pytest.fail(f"{AEROGRID} is missing: make build (or set AEROGRID_BIN)")
    return AEROGRID


@pytest.fixture(scope="session")
def manifests() -> Manifests:
    return Manifests.read(DEPLOY)


@pytest.fixture
def broken(manifests, tmp_path):
    """A copy of the folder, changed by `change(copy)` and written out, for a check to fail on."""

    def make(change) -> Manifests:
        copied = manifests.copy_to(tmp_path / "kubernetes")
        change(copied)
        copied.save()
        return Manifests.read(copied.directory)

    return make
