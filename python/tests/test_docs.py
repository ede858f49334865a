"""The examples in the SDK's docstrings run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["aerogrid", "aerogrid._app", "aerogrid._record", "aerogrid._grid",
                                    "aerogrid._stream", "aerogrid._topic"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
