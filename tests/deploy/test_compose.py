"""docker-compose.temporal.yml and deploy/ checked without Docker.

The compose file is read (PyYAML when installed, else the subset reader beside this file),
its `${…}` interpolated from deploy/stack.env.example, and then: the dependency graph, health
checks, one-shots, mounts and ports hang together; every variable the salesflow containers get
is one the code reads (`SHORT_ENV`, `SALESFLOW_<SECTION>__<KEY>` from the `Settings` model,
`SALESFLOW_CONFIG`, the SDK's envconfig) and the example values load; the image copies what
pyproject packages; the namespace script registers exactly `SEARCH_ATTRIBUTE_TYPES`, run
against a real dev server.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from pydantic import BaseModel
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.envconfig import ClientConfigProfile
from temporalio.testing import WorkflowEnvironment

from salesflow.config.settings import SHORT_ENV, Settings, load_settings
from salesflow.workflows.names import SEARCH_ATTRIBUTE_TYPES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.temporal.yml"
DEPLOY = ROOT / "deploy"
STACK_ENV = DEPLOY / "stack.env.example"
APP_ENV = DEPLOY / "salesflow.env.example"
NAMESPACE_SCRIPT = DEPLOY / "temporal" / "setup-namespace.sh"
SCHEMA_SCRIPT = DEPLOY / "temporal" / "setup-schema.sh"
APP_DOCKERFILE = "deploy/Dockerfile"
LONG_RUNNING = {"always", "unless-stopped"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
BIN = Path(sys.executable).parent

# ---- reading ------------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """NAME=value lines; with `commented`, also the `# NAME=value` examples."""
    pattern = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line.strip())
        if match and (commented or not match.group(1)):
            found[match.group(2)] = match.group(3).strip()
    return found


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str], missing: set[str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` (and `$$`) over `env`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, missing) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        present = env.get(name)
        if op in (":-", "-"):
            return present if present or (op == "-" and name in env) else arg
        if present is None or (op == ":?" and not present) or (op is None and not present):
            missing.add(name)
            return ""
        return present

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    missing: set[str] = set()
    data = interpolate(read_yaml(COMPOSE), read_env_file(STACK_ENV), missing)
    assert not missing, f"compose variables without a default, not in {STACK_ENV.name}: {missing}"
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in services(compose).items()
        if (svc.get("build") or {}).get("dockerfile") == APP_DOCKERFILE
    }


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume."""
    out = []
    for spec in svc.get("volumes") or []:
        assert isinstance(spec, str), f"use the short volume syntax: {spec}"
        parts = spec.split(":")
        assert len(parts) in (2, 3), f"volume {spec!r} is not source:target[:mode]"
        out.append((parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"))
    return out


def host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind a container path, through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target, _ in mounts(svc):
        if source.startswith(".") and (
            wanted == PurePosixPath(target) or (PurePosixPath(target) in wanted.parents)
        ):
            return ROOT / source / wanted.relative_to(target)
    return None


# ---- the compose file ---------------------------------------------------------------------


def test_depends_on_targets_exist_and_conditions_are_backed(compose) -> None:
    svcs = services(compose)
    for name, svc in svcs.items():
        for target, condition in depends(svc).items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} → {target}: bad condition {condition}"
            dep = svcs[target]
            if condition == "service_healthy":
                assert dep.get("healthcheck"), f"{name} waits for {target} healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert dep.get("command"), f"{target} is waited on to finish but has no command"
                assert dep.get("restart", "no") not in LONG_RUNNING, (
                    f"{target} is a one-shot: restart must not be {dep.get('restart')}"
                )
                assert not dep.get("ports"), f"one-shot {target} publishes ports"


def test_dependency_graph_has_no_cycle(compose) -> None:
    svcs = services(compose)
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' → '.join((*path, name))}"
        if name in done:
            return
        for target in depends(svcs[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in svcs:
        visit(name, ())


def test_healthchecks_are_well_formed(compose) -> None:
    for name, svc in services(compose).items():
        check = svc.get("healthcheck")
        if not check:
            continue
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
        assert len(test) >= 2, f"{name}: empty health check"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_long_running_services_restart_and_one_shots_do_not(compose) -> None:
    waited_to_finish = {
        target
        for svc in services(compose).values()
        for target, cond in depends(svc).items()
        if cond == "service_completed_successfully"
    }
    assert waited_to_finish == {"temporal-schema", "temporal-setup"}
    for name, svc in services(compose).items():
        if name not in waited_to_finish:
            assert svc.get("restart") in LONG_RUNNING, f"{name} does not restart"
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"


def test_images_are_pinned_and_temporal_tools_match_the_server(compose) -> None:
    images = {name: svc["image"] for name, svc in services(compose).items()}
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: unpinned {image}"
    server = images["temporal"].rpartition(":")[2]
    for name in ("temporal-schema", "temporal-setup"):
        assert images[name] == f"temporalio/admin-tools:{server}", name
    assert not any("auto-setup" in image for image in images.values())


def test_volumes_are_declared_and_bind_sources_exist(compose) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, svc in services(compose).items():
        targets = [target for _, target, _ in mounts(svc)]
        assert len(targets) == len(set(targets)), f"{name}: a target is mounted twice"
        for source, target, mode in mounts(svc):
            assert target.startswith("/"), f"{name}: relative target {target}"
            assert mode in ("ro", "rw"), f"{name}: mode {mode}"
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: bind source {source} is missing"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_published_ports_are_unique_and_on_loopback(compose) -> None:
    seen: dict[str, str] = {}
    for name, svc in services(compose).items():
        for port in svc.get("ports") or []:
            host_ip, host_port, _ = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert host_port not in seen, f"{name} and {seen.get(host_port)} share {host_port}"
            seen[host_port] = name


def test_scripts_and_configs_the_containers_read_are_mounted(compose) -> None:
    svcs = services(compose)
    for name in ("temporal-schema", "temporal-setup"):
        script = host_path(svcs[name], svcs[name]["command"][-1])
        assert script is not None and script.is_file(), f"{name}: script not mounted"
    temporal = svcs["temporal"]
    dynamic = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    config = host_path(temporal, str(PurePosixPath("/etc/temporal") / dynamic))
    assert config is not None and config.is_file(), "dynamic config not mounted"
    for key, values in read_yaml(config).items():
        assert isinstance(values, list) and all("value" in v for v in values), key
    assert environment(temporal)["NUM_HISTORY_SHARDS"] == "512"
    init = host_path(svcs["postgresql"], "/docker-entrypoint-initdb.d/20-salesflow.sh")
    assert init is not None and init.is_file()
    for name, svc in app_services(compose).items():
        config_file = environment(svc)["SALESFLOW_CONFIG"]
        assert host_path(svc, config_file) is not None, f"{name}: {config_file} not mounted"
        for var, value in read_env_file(APP_ENV, commented=True).items():
            if var.endswith("_PATH"):
                assert host_path(svc, value) is not None, f"{name}: {var}={value} not mounted"


def test_shell_scripts_parse() -> None:
    for script in sorted(DEPLOY.rglob("*.sh")):
        done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"


def _git_ignored(path: Path) -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("git is not available")
    done = subprocess.run(
        ["git", "check-ignore", "-q", str(path.relative_to(ROOT))], cwd=ROOT, check=False
    )
    return done.returncode == 0


def test_secret_files_have_examples_and_are_not_committed(compose) -> None:
    env_files = {f for svc in app_services(compose).values() for f in svc.get("env_file") or []}
    assert env_files == {"deploy/salesflow.env"}
    for secret in (ROOT / "deploy/salesflow.env", ROOT / "deploy/stack.env"):
        assert Path(f"{secret}.example").is_file(), f"{secret}.example is missing"
        assert _git_ignored(secret), f"{secret} would be committed"
    assert _git_ignored(ROOT / "deploy/secrets/client.key")


# ---- what the salesflow containers are given ----------------------------------------------


def settings_variables(model: type[BaseModel], path: tuple[str, ...] = ()) -> set[str]:
    """`SALESFLOW_<SECTION>__<KEY>` for every leaf; a dict field accepts any key below it."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        here = (*path, field_name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= settings_variables(annotation, here)
        else:
            suffix = "__*" if getattr(annotation, "__origin__", None) is dict else ""
            names.add("SALESFLOW_" + "__".join(here).upper() + suffix)
    return names


def read_by_settings(name: str) -> bool:
    if name in SHORT_ENV or name == "SALESFLOW_CONFIG":
        return True
    for known in settings_variables(Settings):
        if name == known or (known.endswith("__*") and name.startswith(known[:-1])):
            return True
    return False


def read_by_envconfig(name: str, value: str) -> bool:
    """The SDK's envconfig (used by config/temporal_client.py) reacts to the variable."""
    blank = ClientConfigProfile.load(disable_file=True, override_env_vars={})
    loaded = ClientConfigProfile.load(disable_file=True, override_env_vars={name: value})
    return loaded != blank


def container_env(compose: dict[str, Any], svc: dict[str, Any]) -> dict[str, str]:
    """What the container sees: the env_file example (comments included) under `environment`."""
    env: dict[str, str] = {}
    for path in svc.get("env_file") or []:
        env.update(read_env_file(ROOT / f"{path}.example", commented=True))
    env.update(environment(svc))
    return env


def test_salesflow_containers_get_only_variables_the_code_reads(compose) -> None:
    apps = app_services(compose)
    assert set(apps) == {"salesflow-worker", "salesflow-relay"}
    for name, svc in apps.items():
        for var, value in container_env(compose, svc).items():
            assert read_by_settings(var) or read_by_envconfig(var, value), (
                f"{name}: {var} is read by neither config/settings.py nor the SDK's envconfig"
            )


def _attr(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _same(setting: Any, raw: str) -> bool:
    if isinstance(setting, bool):
        return setting == (raw.lower() in ("1", "true", "yes", "on"))
    if isinstance(setting, int | float):
        return float(setting) == float(raw)
    return str(setting) == raw


def test_example_values_load_and_land_where_meant(compose) -> None:
    for name, svc in app_services(compose).items():
        env = {
            **read_env_file(APP_ENV),  # the active lines only: the Cloud ones stay commented
            **environment(svc),
            "SALESFLOW_CONFIG": str(ROOT / "salesflow" / "config" / "salesflow.sample.toml"),
        }
        settings = load_settings(environ=env)
        for var, raw in env.items():
            if var in SHORT_ENV:
                dotted = SHORT_ENV[var]
            elif var.startswith("SALESFLOW_") and "__" in var:
                dotted = var.removeprefix("SALESFLOW_").lower().replace("__", ".")
            else:
                continue
            assert _same(_attr(settings, dotted), raw), f"{name}: {var}={raw} → {dotted}"
        assert settings.temporal.address == "temporal:7233"
        assert settings.database.url.startswith("postgresql+asyncpg://salesflow:")


def test_relay_listens_where_its_healthcheck_and_port_point(compose) -> None:
    relay = services(compose)["salesflow-relay"]
    assert relay["command"][:2] == ["salesflow", "relay"]
    assert relay["command"][relay["command"].index("--host") + 1] == "0.0.0.0"
    port = environment(relay)["SALESFLOW_RELAY__PORT"]
    assert relay["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(relay["healthcheck"]["test"])
    assert services(compose)["salesflow-worker"]["command"] == ["salesflow", "worker"]


def test_dockerfile_copies_every_packaged_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setup = project["tool"]["setuptools"]
    wanted = {p.rstrip("*") for p in setup["packages"]["find"]["include"]}
    wanted |= {f"{m}.py" for m in setup.get("py-modules", [])} | {"pyproject.toml"}
    copied: set[str] = set()
    for line in (ROOT / APP_DOCKERFILE).read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            copied |= {PurePosixPath(p).name for p in line.split()[1:-1]}
    assert copied == wanted
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert not wanted & set(ignored), "the build context ignores a packaged module"


# ---- the one-shot scripts -----------------------------------------------------------------


def test_namespace_script_declares_exactly_the_contract_search_attributes() -> None:
    text = NAMESPACE_SCRIPT.read_text(encoding="utf-8")
    (line,) = re.findall(r'^SEARCH_ATTRIBUTES="([^"]*)"$', text, re.MULTILINE)
    declared = dict(pair.split("=") for pair in line.split())
    assert declared == SEARCH_ATTRIBUTE_TYPES
    assert len(line.split()) == len(declared)


def test_schema_script_creates_sets_up_and_upgrades_both_databases(tmp_path) -> None:
    log = tmp_path / "calls"
    fake = tmp_path / "temporal-sql-tool"
    # `create` fails as it does for a database that exists; the rest must still run.
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *" create") exit 1;; esac\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "SQL_PASSWORD": "x"}
    done = subprocess.run(["sh", str(SCHEMA_SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = [c.split(" --db ")[1] for c in log.read_text(encoding="utf-8").splitlines()]
    schema = "/etc/temporal/schema/postgresql/v12"
    assert calls == [
        "temporal create",
        "temporal setup-schema -v 0.0",
        f"temporal update-schema -d {schema}/temporal/versioned",
        "temporal_visibility create",
        "temporal_visibility setup-schema -v 0.0",
        f"temporal_visibility update-schema -d {schema}/visibility/versioned",
    ]


async def _run_namespace_script(env: WorkflowEnvironment, namespace: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sh",
        str(NAMESPACE_SCRIPT),
        env={
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": namespace,
            "SETUP_RETRY_SECONDS": "0.2",
            "SETUP_ATTEMPTS": "100",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def _indexed(kind: str) -> int:
    return IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")


async def test_namespace_script_against_a_dev_server_registers_exactly_them(dev_env) -> None:
    namespace = f"deploy-{uuid.uuid4().hex[:8]}"
    for _ in range(2):  # the second run finds everything in place
        code, out = await _run_namespace_script(dev_env, namespace)
        assert code == 0, out
    listed = await dev_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert dict(listed.custom_attributes) == {
        name: _indexed(kind) for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
    }


async def test_namespace_script_stops_on_a_search_attribute_of_another_type(dev_env) -> None:
    namespace = f"deploy-clash-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    for _ in range(100):  # the new namespace reaches the server's cache
        try:
            await dev_env.client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace, search_attributes={"DealStage": _indexed("Int")}
                )
            )
            break
        except Exception:
            await asyncio.sleep(0.1)
    code, out = await _run_namespace_script(dev_env, namespace)
    assert code == 2, out
    assert "DealStage exists" in out
