import os

# The SDK is importable through pyproject.toml's `pythonpath`; these are for the tests that
# start processes in the SDK's directory or read files of the repository.
SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(SDK_DIR)
