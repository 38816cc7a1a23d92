"""Inputs, exchanges and checks for the fuzz tests of the running API (tests/test_fuzz.py)."""

import pytest

# The checks are plain `assert`s in tests.fuzz.harness: have pytest rewrite them, as it
# does in test modules, so that a failure shows the values as well as the message.
pytest.register_assert_rewrite("tests.fuzz.harness")
