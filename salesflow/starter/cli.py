"""The `salesflow` command line (typer)."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console

from salesflow.config.settings import ConfigError, Settings, load_settings
from salesflow.starter import deal_commands, report_commands

app = typer.Typer(help="salesflow: the «Продажа» pipeline on Temporal.", no_args_is_help=True)
emulate = typer.Typer(help="Emulators of Bitrix24 and 1C for the local stack and tests.")
app.add_typer(emulate, name="emulate")
app.add_typer(deal_commands.app, name="deal")
app.add_typer(report_commands.app, name="report")
console = Console(soft_wrap=True)  # whole lines when output goes to a file


def settings_or_exit(**overrides: str | None) -> Settings:
    """Load settings; apply dotted-key overrides from options; exit with the bad key named."""
    try:
        settings = load_settings()
        data = settings.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, key = dotted.split("__")
            data[section][key] = value
        return Settings.model_validate(data) if overrides else settings
    except ConfigError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    except ValueError as err:
        console.print(f"[red]bad option: {err}[/red]")
        raise typer.Exit(2) from None


def checkout_rig() -> None:
    """Make the checkout's test rig (`emulators/`) importable, or stop with why.

    The emulators and the local stack are not part of the installed product; `salesflow dev` and
    `salesflow emulate` work from a checkout with the product installed from it (`make run`)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "emulators" / "__init__.py").exists():
        console.print(
            "[red]the emulators are not installed with the product: run this command from a "
            "checkout of the repository (make run)[/red]"
        )
        raise typer.Exit(2)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


@app.command()
def worker() -> None:
    """Run a worker for DealWorkflow and its activities."""
    from salesflow.worker import main

    asyncio.run(main(settings_or_exit()))


@app.command()
def relay(
    host: str = typer.Option(None, help="default: relay.host"),
    port: int = typer.Option(None, help="default: relay.port (8000)"),
    application_token: str = typer.Option(None, envvar="BITRIX24_APPLICATION_TOKEN"),
    database_url: str = typer.Option(None, envvar="DATABASE_URL"),
) -> None:
    """Run the Bitrix24 webhook relay (POST /bitrix24/events, GET /healthz)."""
    from salesflow.relay.server import run

    settings = settings_or_exit(
        bitrix24__application_token=application_token, database__url=database_url
    )
    run(settings, host, port)


@app.command()
def dev(
    data_dir: Path = typer.Option(Path(".salesflow"), help="where the stack keeps its databases"),
    demo: bool = typer.Option(True, help="create a demo deal in the Bitrix24 emulator"),
) -> None:
    """The whole local stack in the foreground: Temporal + Web UI, emulators, relay, worker."""
    checkout_rig()
    from emulators.local_stack import DevPorts, run_dev

    asyncio.run(run_dev(settings_or_exit(), data_dir.resolve(), DevPorts(), demo))


@emulate.command("bitrix24")
def emulate_bitrix24(
    host: str = "127.0.0.1",
    port: int = 8081,
    secret: str = "devsecret",
    handler_url: str = typer.Option(None, help="where outbound events are POSTed"),
    application_token: str = "dev-app-token",
    seed: Path = typer.Option(None, help="a seed JSON file merged over the built-in seed"),
    rate_per_second: float = typer.Option(2.0, help="leaky-bucket drain; 0 turns it off"),
    burst: int = 50,
) -> None:
    """Serve the Bitrix24 REST emulator at /rest/<user>/<secret>/<method>."""
    checkout_rig()
    from emulators.bitrix24.app import run

    console.print(f"Bitrix24 webhook: http://{host}:{port}/rest/1/{secret}/")
    run(
        host,
        port,
        secret,
        handler_url,
        application_token,
        seed,
        rate_per_second=rate_per_second or None,
        burst=burst,
    )


@emulate.command("onec")
def emulate_onec(
    host: str = "127.0.0.1",
    port: int = 8082,
    base: str = "trade",
    user: str = "odata",
    password: str = "odata",
    profile: str = typer.Option("ut11", help="standard configuration: ut11, erp2 or bp3"),
    extension: bool = typer.Option(False, help="the optional salesflow extension installed"),
) -> None:
    """Serve the 1C OData emulator at /<base>/odata/standard.odata/."""
    checkout_rig()
    from emulators.onec.app import run

    console.print(f"1C OData ({profile}): http://{host}:{port}/{base}/odata/standard.odata/")
    run(host, port, base, user, password, profile=profile, extension=extension)


@app.command()
def doctor(
    fix_applied: bool = typer.Option(
        False,
        "--fix-applied",
        help="the 1C configuration was fixed: once 1C checks pass, waiting deals retry their step",
    ),
) -> None:
    """Check the configuration against the live Bitrix24 portal and 1C (exit 0: all right)."""
    from salesflow.starter.doctor import main

    raise typer.Exit(main(settings_or_exit(), console, fix_applied=fix_applied))


@app.command("config-check")
def config_check() -> None:
    """Validate the configuration file and environment; name each bad key."""
    settings = settings_or_exit()
    console.print(f"configuration is valid (Temporal {settings.temporal.address})")


def main() -> None:
    """The console script. It leaves with os._exit once output is flushed: the Temporal SDK's
    native runtime can crash while the interpreter tears down (exit status 134/139 after the
    work was done), which would turn a correct answer into a failure for scripts."""
    code = 1
    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
