"""The `salesflow` command line (typer)."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from salesflow.config.settings import (
    LOCAL_STACK_APPLICATION_TOKEN,
    ConfigError,
    Settings,
    StartupError,
    describe,
    load_settings,
    require_event_token,
)
from salesflow.starter import (
    deal_commands,
    report_commands,
    rules_commands,
    whatif_commands,
    why_commands,
)

app = typer.Typer(help="salesflow: the «Продажа» pipeline on Temporal.", no_args_is_help=True)
emulate = typer.Typer(help="Emulators of Bitrix24 and 1C for the local stack and tests.")
app.add_typer(emulate, name="emulate")
deal_commands.app.command("why")(why_commands.why)
app.add_typer(deal_commands.app, name="deal")
app.add_typer(report_commands.app, name="report")
app.add_typer(rules_commands.app, name="rules")
app.command("whatif")(whatif_commands.whatif)
app_commands = typer.Typer(help="The local application on the portal: the deal card's tab, events.")
app.add_typer(app_commands, name="app")
console = Console(soft_wrap=True)


class OneCProfile(StrEnum):
    """The choices of `--profile` (salesflow.integrations.onec.profiles.PROFILES_NAMES)."""

    ut11 = "ut11"
    erp2 = "erp2"
    bp3 = "bp3"  # whole lines when output goes to a file


def fail(message: str, code: int = 2) -> NoReturn:
    """One line (no traceback, no markup read into the message) and the exit code."""
    console.print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(code)


def settings_or_exit(**overrides: str | None) -> Settings:
    """Load settings; apply dotted-key overrides from options; exit with the bad key named."""
    try:
        settings = load_settings()
        data = settings.model_dump()
        given = {dotted: value for dotted, value in overrides.items() if value is not None}
        for dotted, value in given.items():
            section, key = dotted.split("__")
            data[section][key] = value
        return Settings.model_validate(data) if given else settings
    except ConfigError as err:
        fail(str(err))
    except ValidationError as err:
        fail(describe(err))


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

    settings = settings_or_exit()
    try:
        asyncio.run(main(settings))
    except StartupError as err:
        fail(str(err))


@app.command()
def relay(
    host: Annotated[str | None, typer.Option(help="default: relay.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: relay.port (8000)")] = None,
    application_token: Annotated[
        str | None,
        typer.Option(
            help="the outgoing webhook's token (default: bitrix24.application_token); on the"
            " command line it shows in `ps`: prefer BITRIX24_APPLICATION_TOKEN(_FILE) or"
            " --application-token-file",
        ),
    ] = None,
    application_token_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="a file holding the application token (as BITRIX24_APPLICATION_TOKEN_FILE)",
        ),
    ] = None,
    database_url: Annotated[str | None, typer.Option(envvar="DATABASE_URL")] = None,
) -> None:
    """Run the Bitrix24 webhook relay (POST /bitrix24/events, GET /healthz)."""
    from salesflow.relay.server import run

    if application_token_file is not None:
        if application_token is not None:
            fail("give --application-token or --application-token-file, not both")
        application_token = application_token_file.read_text(encoding="utf-8").strip()
    settings = settings_or_exit(
        bitrix24__application_token=application_token, database__url=database_url
    )
    try:
        require_event_token(settings)
        run(settings, host, port)
    except (ConfigError, StartupError) as err:
        fail(str(err))


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="where the stack keeps its databases")] = Path(
        ".salesflow"
    ),
    demo: Annotated[bool, typer.Option(help="create a demo deal in the Bitrix24 emulator")] = True,
) -> None:
    """The whole local stack in the foreground: Temporal + Web UI, emulators, relay, worker."""
    checkout_rig()
    from emulators.local_stack import DevPorts, run_dev

    asyncio.run(run_dev(settings_or_exit(), data_dir.resolve(), DevPorts(), demo))


@emulate.command("bitrix24")
def emulate_bitrix24(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8081,
    secret: Annotated[str, typer.Option(help="the webhook secret of user 1")] = "devsecret",
    handler_url: Annotated[
        str | None, typer.Option(help="where outbound events are POSTed")
    ] = None,
    application_token: Annotated[
        str, typer.Option(help="the token the outbound events carry")
    ] = LOCAL_STACK_APPLICATION_TOKEN,
    seed: Annotated[
        Path | None, typer.Option(help="a seed JSON file merged over the built-in seed")
    ] = None,
    rate_per_second: Annotated[
        float, typer.Option(help="leaky-bucket drain; 0 turns it off")
    ] = 2.0,
    burst: Annotated[int, typer.Option()] = 50,
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
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8082,
    base: Annotated[str, typer.Option(help="the 1C base name in the URL")] = "trade",
    user: Annotated[str, typer.Option()] = "odata",
    password: Annotated[str, typer.Option()] = "odata",
    profile: Annotated[
        OneCProfile, typer.Option(help="the standard configuration the base is")
    ] = OneCProfile.ut11,
    extension: Annotated[
        bool, typer.Option(help="the optional salesflow extension installed")
    ] = False,
) -> None:
    """Serve the 1C OData emulator at /<base>/odata/standard.odata/."""
    checkout_rig()
    from emulators.onec.app import run

    console.print(f"1C OData ({profile}): http://{host}:{port}/{base}/odata/standard.odata/")
    run(host, port, base, user, password, profile=profile.value, extension=extension)


@app.command()
def doctor(
    fix_applied: bool = typer.Option(
        False,
        "--fix-applied",
        help="the 1C configuration was fixed: once 1C checks pass, waiting deals retry their step",
    ),
    fix: bool = typer.Option(
        False,
        "--fix",
        help="bind the deal card's tab and the relay's events where missing (as `app install`)",
    ),
) -> None:
    """Check the configuration against the live Bitrix24 portal and 1C (exit 0: all right)."""
    from salesflow.starter.doctor import main

    raise typer.Exit(main(settings_or_exit(), console, fix_applied=fix_applied, fix=fix))


@app_commands.command("install")
def app_install(
    public_url: Annotated[
        str | None,
        typer.Option(help="the relay as the portal reaches it (default: relay.public_url)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would be bound, bind nothing")
    ] = False,
    online: Annotated[
        bool, typer.Option(help="bind the online events to <public_url>/bitrix24/events")
    ] = True,
    offline: Annotated[
        bool, typer.Option(help="bind relay.offline_events as offline events")
    ] = True,
) -> None:
    """Bind the deal card's tab and the relay's events with the local application's token
    (idempotent: what is bound already is left as it is)."""
    from salesflow.starter.app_install import main as install_main

    code = install_main(
        settings_or_exit(),
        console,
        public_url=public_url,
        dry_run=dry_run,
        online=online,
        offline=offline,
    )
    raise typer.Exit(code)


@app.command("config-check")
def config_check() -> None:
    """Validate the configuration file and environment; name each bad key (exit 2 if any)."""
    settings = settings_or_exit()
    try:
        require_event_token(settings)
    except ConfigError as err:
        fail(f"bad configuration — {err}")
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
