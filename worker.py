"""`python worker.py` (CONTRACT.md) from a checkout: the worker of `salesflow.worker`.

Kept at the repository's root for the contract; it is not installed — an installed product
runs `salesflow worker` or `python -m salesflow.worker`.
"""

from salesflow.worker import run

if __name__ == "__main__":
    run()
