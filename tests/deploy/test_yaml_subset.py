"""The YAML subset reader used when PyYAML is not installed: what it reads, what it refuses."""

from __future__ import annotations

import pytest

from tests.deploy.yaml_subset import YamlSubsetError, loads


def test_reads_the_shapes_the_deploy_files_use() -> None:
    text = """
# a comment
name: salesflow
services:
  app:
    command: ["salesflow", 'relay', --host, 0.0.0.0]   # trailing comment
    environment:
      PORT: "8000"
      URL: postgresql://u:${PW:?set PW}@db:5432/x
    volumes:
      - ./deploy:/deploy:ro
    healthcheck:
      test:
        - CMD
        - -c
      retries: 3
    init: true
flags:
  - value: 255
    other: 1.5
  - plain
empty:
"""
    assert loads(text) == {
        "name": "salesflow",
        "services": {
            "app": {
                "command": ["salesflow", "relay", "--host", "0.0.0.0"],
                "environment": {"PORT": "8000", "URL": "postgresql://u:${PW:?set PW}@db:5432/x"},
                "volumes": ["./deploy:/deploy:ro"],
                "healthcheck": {"test": ["CMD", "-c"], "retries": 3},
                "init": True,
            }
        },
        "flags": [{"value": 255, "other": 1.5}, "plain"],
        "empty": None,
    }


@pytest.mark.parametrize(
    "text",
    [
        "a: &anchor 1\n",
        "a: *anchor\n",
        "a: !reset []\n",
        "a: |\n  block\n",
        "a: {b: 1}\n",
        "---\na: 1\n",
        "a: 1\na: 2\n",
        "a:\n    b: 1\n  c: 2\n",
        "a: [1, [2]]\n",
    ],
)
def test_refuses_what_it_does_not_read(text: str) -> None:
    with pytest.raises(YamlSubsetError):
        loads(text)
