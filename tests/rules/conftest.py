"""The workflow tests' `run_deal` (a deal on the time-skipping server) for the rules tests."""

from tests.workflows.conftest import run_deal  # noqa: F401
