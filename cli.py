"""The ``fature`` command line: database, demo data, ETL and the API server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated, Any, NoReturn

import orjson
import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from db import clock
from db.settings import Settings, get_settings

app = typer.Typer(
    help="Fature: the robust affiliate database and its GraphQL API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The robust database's schema (Alembic migrations).", no_args_is_help=True)
etl_app = typer.Typer(help="The ETL from the operation database.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data and the all-in-one demo.", invoke_without_command=True)
app.add_typer(db_app, name="db")
app.add_typer(etl_app, name="etl")
app.add_typer(demo_app, name="demo")

out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILURE = 1
DEMO_CORS_ORIGINS = r"^http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?$"
EXIT_BUSY = 3
EXIT_PORT_IN_USE = 4
# uvicorn's exit status when its server did not start (a lifespan failure, a bind error).
UVICORN_STARTUP_FAILURE = 3


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"FATURE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid setting: {problems}")
    clock.set_now(settings.now)
    return settings


@contextlib.contextmanager
def known_errors() -> Iterator[None]:
    """Turn every expected failure into one clear line and a non-zero exit."""
    from db.embedded import EmbeddedPostgresError
    from db.engine import DatabaseUnavailable
    from db.migrate import MigrationError
    from etl.sync import EtlBusy, EtlError

    try:
        yield
    except EtlBusy as exc:
        fail(str(exc), EXIT_BUSY)
    except (DatabaseUnavailable, EmbeddedPostgresError, MigrationError, EtlError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{type(exc).__name__}: {exc}")


def check_port_free(host: str, port: int) -> None:
    """Fail with ``EXIT_PORT_IN_USE`` when ``host:port`` cannot be listened on because another
    process holds it: checked before anything is set up or printed (the server binds later).
    The probe binds the way uvicorn does (SO_REUSEADDR), so a socket in TIME_WAIT is no
    false alarm."""
    if not 0 < port < 65536:
        fail(f"--port {port}: choose a port between 1 and 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use (another Fature demo or server?): stop it, "
                 f"or choose another port with --port", EXIT_PORT_IN_USE)
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@contextlib.contextmanager
def databases(settings: Settings) -> Iterator[Any]:
    """The robust and operation URLs, starting the embedded PostgreSQL when none is set."""
    from db.embedded import database_urls

    with known_errors(), database_urls(settings) as urls:
        yield urls


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def with_progress(progress: Progress, title: str) -> Callable[[str, int, int], None]:
    task = progress.add_task(title, total=None)

    def update(step: str, done: int, total: int) -> None:
        progress.update(task, description=step, completed=done, total=total)

    return update


# ------------------------------------------------------------------------------------ db
@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the robust database up (creates it from scratch on an empty database)."""
    from db import migrate

    settings = load_settings()
    with databases(settings) as urls:
        migrate.upgrade(urls.robust, revision)
        out.print(f"robust database at revision {asyncio.run(migrate.current_revision(urls.robust))}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base.")) -> None:
    """Migrate the robust database down."""
    from db import migrate

    settings = load_settings()
    with databases(settings) as urls:
        migrate.downgrade(urls.robust, revision)
        out.print(f"robust database at revision {asyncio.run(migrate.current_revision(urls.robust))}")


@db_app.command("current")
def db_current() -> None:
    """Show the robust database's revision and the code's head revision."""
    from db import migrate

    settings = load_settings()
    with databases(settings) as urls:
        current = asyncio.run(migrate.current_revision(urls.robust))
        out.print(f"current: {current or '(empty database)'}  head: {migrate.head_revision()}")


# ----------------------------------------------------------------------------------- etl
def _operation_url(urls: Any) -> str:
    if not urls.operation:
        fail("no operation database: set FATURE_OPERATION_DATABASE_URL")
    return str(urls.operation)


def run_etl(settings: Settings, urls: Any, *, full: bool, trigger: str = "cli") -> Any:
    from etl.sync import run_cycle

    with progress_bar() as progress:
        result = asyncio.run(
            run_cycle(
                settings,
                urls.robust,
                _operation_url(urls),
                full=full,
                trigger=trigger,
                progress=with_progress(progress, "etl"),
            )
        )
    table = Table(title=f"ETL run {result.run_id} ({result.mode}) committed in {result.duration_s:.2f} s")
    table.add_column("source table")
    table.add_column("rows read", justify="right")
    for name, count in result.rows_read.items():
        table.add_row(name, f"{count:,}")
    out.print(table)
    written = Table()
    written.add_column("robust table")
    written.add_column("rows written", justify="right")
    for name, count in result.rows_written.items():
        written.add_row(name, f"{count:,}")
    out.print(written)
    out.print(
        f"affiliates touched: {result.affiliates_touched:,}   users moved: {result.users_moved:,}   "
        f"new validations: {result.validations:,}   new anomalies: {result.anomalies:,}"
    )
    return result


@etl_app.command("run")
def etl_run(
    full: Annotated[
        bool,
        typer.Option("--full", help="Recompute every aggregate from the source (the CPA ledger is kept)."),
    ] = False,
) -> None:
    """Run one ETL cycle now (incremental; the first one loads everything)."""
    settings = load_settings()
    with databases(settings) as urls, known_errors():
        run_etl(settings, urls, full=full)


@etl_app.command("status")
def etl_status(last: int = typer.Option(10, help="How many runs to show.")) -> None:
    """The last runs, the cursors and how fresh the data is."""
    from etl.archive import status_line
    from etl.status import read_status

    settings = load_settings()
    with databases(settings) as urls, known_errors():
        status = asyncio.run(read_status(urls.robust, last))
        archive_line = asyncio.run(status_line(settings, urls.robust))
    table = Table(title="ETL runs")
    for column in (
        "id",
        "mode",
        "trigger",
        "status",
        "started",
        "duration",
        "affiliates",
        "anomalies",
        "error",
    ):
        table.add_column(column)
    for run in status.runs:
        table.add_row(
            str(run["id"]),
            run["mode"],
            run["trigger"],
            run["status"],
            f"{run['started_at']:%Y-%m-%d %H:%M:%S%z}",
            f"{run['duration_s']:.2f} s" if run["duration_s"] is not None else "-",
            str(run["affiliates_touched"]),
            str(run["anomalies"]),
            (run["error"] or "")[:60],
        )
    out.print(table)
    cursors = Table(title="Source cursors")
    cursors.add_column("table")
    cursors.add_column("loaded up to (source time)")
    for name, cursor in status.cursors.items():
        cursors.add_row(name, str(cursor) if cursor else "(nothing loaded)")
    out.print(cursors)
    if status.last_success is None:
        out.print("no successful run yet")
    else:
        out.print(
            f"data as of {status.last_success:%Y-%m-%d %H:%M:%S%z} "
            f"({status.freshness_s:.0f} s ago); runs in progress: {status.running}; "
            f"anomalies recorded: {status.anomalies:,}"
        )
    print_last_backup(settings)
    out.print(archive_line)


def print_last_backup(settings: Settings) -> None:
    """The last successful backup (the newest manifest in FATURE_BACKUP_DIR)."""
    from datetime import UTC, datetime

    from db.backup_files import backup_directory, last_backup

    directory = backup_directory(settings)
    backup = last_backup(directory)
    if backup is None:
        out.print(f"last successful backup: none in {directory}", highlight=False)
    else:
        age_h = (datetime.now(UTC) - backup.created).total_seconds() / 3600  # a real event: the real clock
        out.print(f"last successful backup: {directory / backup.file} taken "
                  f"{backup.created:%Y-%m-%d %H:%M:%S%z} ({age_h:.1f} h ago, "
                  f"{'lean' if backup.lean else 'complete'}, {backup.size_bytes:,} bytes)", highlight=False)


@etl_app.command("worker")
def etl_worker() -> None:
    """Run the ETL schedule in this process until interrupted (no API). Several workers may
    run: one leads (a PostgreSQL advisory lock held for its life, jobs/leader.py) and runs the
    schedule, the others stand by and take over within seconds when it dies."""
    from jobs.leader import lead_forever

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with databases(settings) as urls:
        operation = _operation_url(urls)

        def announce(text: str) -> None:
            out.print(text, highlight=False, soft_wrap=True)
            sys.stdout.flush()

        async def until_stopped() -> None:
            # SIGTERM (systemctl/docker stop) or Ctrl-C: stop scheduling, release the lock.
            main = asyncio.current_task()
            assert main is not None
            for stop in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(stop, main.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await lead_forever(settings, urls.robust, operation, announce=announce)
            announce("ETL worker stopped")

        asyncio.run(until_stopped())


# ---------------------------------------------------------------------------------- demo
def seed_demo(urls: Any, scale: str, seed: int, force: bool, *, reuse_existing: bool = False) -> None:
    from demo.generator import DemoDataExists, seed_operation_database

    with progress_bar() as progress:
        try:
            report = asyncio.run(
                seed_operation_database(
                    _operation_url(urls),
                    scale=scale,
                    seed=seed,
                    force=force,
                    progress=with_progress(progress, f"seed {scale}"),
                )
            )
        except DemoDataExists as exc:
            if reuse_existing:
                out.print("demo operation data already present: reusing it")
                return
            fail(f"{exc} (use --force to replace the demo data)")
    out.print(
        f"demo operation data ({scale}, seed {seed}) generated in {report.elapsed_s:.1f} s: "
        + ", ".join(f"{name} {count:,}" for name, count in report.rows.items())
    )


@demo_app.callback()
def demo_all(
    ctx: typer.Context,
    port: int = typer.Option(8000, help="Port of the API server."),
    scale: str = typer.Option("small", help="tiny | small | seed | seed3"),
    simulate: bool = typer.Option(True, help="Keep adding live activity while serving."),
) -> None:
    """Everything at once: database, demo data, migrations, ETL and the server with GraphiQL."""
    if ctx.invoked_subcommand is not None:
        return
    from db import migrate

    settings = load_settings()
    check_port_free(settings.host, port)  # before anything is set up or printed
    settings = signing_settings(settings)
    if settings.jwt_secret is not None:
        os.environ.setdefault("FATURE_JWT_SECRET", settings.jwt_secret.get_secret_value())
    # The demo moves: the simulator adds activity and the ETL picks it up every minute.
    os.environ.setdefault("FATURE_ETL_INTERVAL_MINUTES", "1")
    # A portal under development (Vite, CRA, ...) on this machine may call the demo's API.
    os.environ.setdefault("FATURE_CORS_ORIGIN_REGEX", DEMO_CORS_ORIGINS)
    with databases(settings) as urls, known_errors():
        migrate.upgrade(urls.robust)
        seed_demo(urls, scale, seed=42, force=False, reuse_existing=True)
        run_etl(settings, urls, full=False, trigger="demo")
        print_demo_tokens(settings, urls, settings.host, port)
        serve_app(
            settings, urls, host=settings.host, port=port, workers=1, simulate_rate=10.0 if simulate else None
        )


def print_demo_tokens(settings: Settings, urls: Any, host: str, port: int) -> None:
    """Ready-made tokens for an admin, an analyst and the top affiliate by CPA (valid for a
    day), one ``curl`` line that works as printed, and the command that mints more."""
    from web.auth import mint_token

    async def top_affiliate() -> int | None:
        from db.engine import connect

        conn = await connect(urls.robust)
        try:
            return await conn.fetchval(
                "SELECT affiliate_id FROM affiliates WHERE status = 'active' "
                "ORDER BY total_cpa_earned DESC, affiliate_id LIMIT 1"
            )
        finally:
            await conn.close()

    day = timedelta(days=1)
    out.print("\n[bold]Tokens[/] (valid for a day; paste one into GraphiQL's token field):", highlight=False)
    out.print(f"  admin:     {mint_token(settings, 'admin', ttl=day, subject='demo-admin')}",
              soft_wrap=True, highlight=False)
    out.print(f"  analyst:   {mint_token(settings, 'analyst', ttl=day, subject='demo-analyst')}",
              soft_wrap=True, highlight=False)
    affiliate_id = asyncio.run(top_affiliate())
    if affiliate_id is not None:
        affiliate = mint_token(settings, "affiliate", affiliate_id, day)
        out.print(f"  affiliate {affiliate_id}: {affiliate}", soft_wrap=True, highlight=False)
        document = f'{{ affiliate(id: "{affiliate_id}") {{ name totalCpaEarned totalRevEarned }} }}'
        query = orjson.dumps({"query": document}).decode()
        out.print("\n[bold]Try it[/] (the affiliate's own totals):", highlight=False)
        out.print(
            f"  curl -s http://{client_host(host)}:{port}/graphql -H 'Authorization: Bearer {affiliate}' "
            f"-H 'Content-Type: application/json' -d '{query}'",
            soft_wrap=True, highlight=False, markup=False,
        )
    out.print("\n[bold]More tokens[/] (from this folder):", highlight=False)
    out.print("  ./dev token --role analyst --ttl 1d", highlight=False, markup=False)
    out.print("  ./dev token --role affiliate --affiliate-id ID --ttl 1d", highlight=False, markup=False)


def client_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@demo_app.command("seed")
def demo_seed(
    scale: str = typer.Option(
        "small", help="tiny | small | seed (the strategy's scale) | seed3 (three times seed)"
    ),
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same data."),
    force: bool = typer.Option(False, "--force", help="Replace existing demo data."),
) -> None:
    """Generate the demo operation database (bulk, inside PostgreSQL)."""
    if scale not in ("tiny", "small", "seed", "seed3"):
        fail(f"unknown scale {scale!r}: choose tiny, small, seed or seed3")
    settings = load_settings()
    with databases(settings) as urls, known_errors():
        seed_demo(urls, scale, seed, force)


@demo_app.command("simulate")
def demo_simulate(
    rate: float = typer.Option(10.0, help="Events per second."),
    duration: float = typer.Option(None, help="Stop after this many seconds (default: never)."),
) -> None:
    """Keep adding live activity to the demo operation database."""
    from demo.simulate import simulate

    if rate <= 0:
        fail("--rate must be positive")
    settings = load_settings()
    with databases(settings) as urls, known_errors():
        out.print(f"simulating {rate:g} events/s into the operation database (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(simulate(_operation_url(urls), rate=rate, duration_seconds=duration))


# --------------------------------------------------------------------------------- token
def parse_ttl(text: str) -> timedelta:
    """'90s', '15m', '1h', '7d' -> a timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise typer.BadParameter(f"{text!r}: use a positive number with s, m, h or d (e.g. 1h)")
    return timedelta(**{units[unit]: int(number)})


def demo_jwt_secret(settings: Settings) -> str:
    """The demo's signing secret, kept in the data directory so tokens survive a restart."""
    path = settings.data_dir / "jwt_secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def signing_settings(settings: Settings) -> Settings:
    """Settings that can sign: the configured secret or key, else the demo's own secret."""
    if settings.jwt_secret or settings.jwt_private_key_file:
        return settings
    return settings.model_copy(update={"jwt_secret": SecretStr(demo_jwt_secret(settings))})


@app.command("token")
def token(
    role: str = typer.Option(..., help="admin | analyst | affiliate"),
    affiliate_id: int = typer.Option(None, "--affiliate-id", help="Required for --role affiliate."),
    ttl: str = typer.Option("1h", help="Lifetime, e.g. 15m, 1h, 7d."),
    subject: str = typer.Option(None, help="The token's sub claim (default: derived from the role)."),
) -> None:
    """Mint a JWT for development and the demo (FATURE_JWT_SECRET, or the demo's own secret)."""
    from web.auth import mint_token

    lifetime = parse_ttl(ttl)
    settings = signing_settings(load_settings())
    try:
        out.print(mint_token(settings, role, affiliate_id, lifetime, subject), soft_wrap=True)
    except ValueError as exc:
        fail(str(exc))


# --------------------------------------------------------------------------------- serve
def serve_app(
    settings: Settings,
    urls: Any,
    *,
    host: str,
    port: int,
    workers: int,
    simulate_rate: float | None = None,
) -> None:
    import uvicorn

    from web.access_log import configure_logging

    configure_logging()
    os.environ["FATURE_DATABASE_URL"] = urls.robust
    if urls.operation:
        os.environ["FATURE_OPERATION_DATABASE_URL"] = urls.operation
    get_settings.cache_clear()  # the app reads the settings again, with the URLs above
    out.print(
        f"\n[bold green]Fature is starting[/]: GraphiQL at http://{client_host(host)}:{port}/graphql   "
        f"REST at http://{client_host(host)}:{port}/api/v1/affiliates/{{id}}   Ctrl-C stops\n"
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown: turn it into an interrupt so
    # the simulator and the embedded PostgreSQL are stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    simulator = None
    if simulate_rate:
        # Live activity in a side process, so the running demo visibly moves.
        simulator = subprocess.Popen(
            [sys.executable, "-m", "cli", "demo", "simulate", "--rate", str(simulate_rate)],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
        )
    try:
        uvicorn.run(
            "app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
            **server_options(settings),
        )
    except SystemExit as exc:
        if exc.code == UVICORN_STARTUP_FAILURE:  # not the ETL lock's 3: uvicorn said why above
            fail("the server did not start (see the log above)")
        raise
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options that decide what the app trusts and what is logged: forwarded
    headers (X-Forwarded-For/-Proto) are believed only from ``FATURE_TRUSTED_PROXIES`` (none
    by default; uvicorn's own default trusts 127.0.0.1, so a local client could claim any
    address), and uvicorn's access log is off (its line holds query strings: tokens,
    variables); the app writes one JSON access line of its own (web/middleware.py)."""
    proxies = [p.strip() for p in settings.trusted_proxies if p.strip()]
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies, "access_log": False}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command("serve")
def serve(
    host: str = typer.Option(None, help="Interface to listen on (default FATURE_HOST)."),
    port: int = typer.Option(None, help="Port (default FATURE_PORT)."),
    workers: int = typer.Option(1, help="Worker processes."),
) -> None:
    """Run the API (GraphQL, GraphiQL and REST) with uvicorn. In a cluster (several API
    processes or machines) set FATURE_ETL_SCHEDULER_ENABLED=false and run the schedule in
    `fature etl worker`; with FATURE_REDIS_URL set, every process hears the worker's commits."""
    settings = load_settings()
    host, port = host or settings.host, port or settings.port
    check_port_free(host, port)
    out.print("ETL scheduler: " + ("in each API process (FATURE_ETL_SCHEDULER_ENABLED=true)"
                                   if settings.etl_scheduler_enabled else
                                   "off (FATURE_ETL_SCHEDULER_ENABLED=false: `fature etl worker` runs it)"),
              highlight=False)
    with databases(settings) as urls:
        serve_app(settings, urls, host=host, port=port, workers=workers)


documents_app = typer.Typer(help="Trusted documents: the manifest of registered GraphQL operations.",
                            no_args_is_help=True)
app.add_typer(documents_app, name="documents")


@documents_app.command("build")
def documents_build(
    sources: Annotated[list[str], typer.Argument(help=".graphql files or folders of them.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Manifest to write; - is stdout.")] = "-",
) -> None:
    """Write the manifest (apollo-persisted-query-manifest JSON, sha256 ids) of the named
    operations in SOURCES, for FATURE_TRUSTED_DOCUMENTS_PATH."""
    from pathlib import Path

    from web.manifest import ManifestError, build_manifest

    try:
        manifest = build_manifest(Path(s) for s in sources)
    except (ManifestError, OSError) as exc:
        fail(str(exc))
    raw = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
    if output == "-":
        sys.stdout.write(raw.decode())
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(raw)
    err.print(f"{len(manifest['operations'])} operation(s) written to {output}")


@documents_app.command("list")
def documents_list(manifest: str = typer.Argument(..., help="A manifest file.")) -> None:
    """Print each operation of a manifest: its sha256 id, name and type."""
    from pathlib import Path

    from web.manifest import ManifestError, read_manifest

    try:
        operations = read_manifest(Path(manifest))
    except ManifestError as exc:
        fail(str(exc))
    table = Table("sha256", "name", "type")
    for operation in operations:
        table.add_row(operation.id, operation.name, operation.type)
    Console(width=200).print(table)


# -------------------------------------------------------------------------------- backup
backup_app = typer.Typer(help="Backups of the robust database (pg_dump) and their list.",
                         invoke_without_command=True)
app.add_typer(backup_app, name="backup")


@contextlib.contextmanager
def backup_errors() -> Iterator[None]:
    from db.backup import BackupError

    with known_errors():
        try:
            yield
        except BackupError as exc:
            fail(str(exc))


@backup_app.callback()
def backup_now(
    ctx: typer.Context,
    lean: Annotated[
        bool | None,
        typer.Option("--lean/--no-lean", help="Leave out the rows the ETL rebuilds (FATURE_BACKUP_LEAN)."),
    ] = None,
) -> None:
    """Back up the robust database now into FATURE_BACKUP_DIR (dump, sha256, manifest), then rotate."""
    if ctx.invoked_subcommand is not None:
        return
    from etl.backups import backup

    settings = load_settings()
    with databases(settings) as urls, backup_errors():
        outcome = asyncio.run(backup(settings, urls.robust, lean=lean))
    m = outcome.manifest
    out.print(f"backup {outcome.path} ({'lean' if m.lean else 'complete'}): {m.size_bytes:,} bytes in "
              f"{m.duration_s:.2f} s, revision {m.alembic_revision}, sha256 {m.sha256}", highlight=False)
    if outcome.removed:
        out.print(f"rotation removed {len(outcome.removed)}: {', '.join(outcome.removed)}", highlight=False)


@backup_app.command("list")
def backup_list() -> None:
    """The finished backups in FATURE_BACKUP_DIR, oldest first (the last is the last successful one)."""
    from db.backup_files import backup_directory, list_backups

    settings = load_settings()
    directory = backup_directory(settings)
    table = Table(title=f"Backups in {directory}")
    for column in ("file", "taken (UTC)", "kind", "size", "seconds", "revision", "sha256"):
        table.add_column(column)
    for m in list_backups(directory):
        table.add_row(m.file, f"{m.created:%Y-%m-%d %H:%M:%S}", "lean" if m.lean else "complete",
                      f"{m.size_bytes:,}", f"{m.duration_s:.1f}", m.alembic_revision or "-", m.sha256[:16])
    Console(width=200).print(table)


@app.command("restore")
def restore(
    file: Annotated[str, typer.Argument(help="A backup's .dump file (its .json manifest beside it).")],
    into: Annotated[
        str | None,
        typer.Option("--into", help="An empty (or missing) database URL; default: FATURE_DATABASE_URL."),
    ] = None,
) -> None:
    """Restore a backup into an empty database: checksum first, then the revision and row counts;
    a lean backup is rebuilt by the full recompute from the operation database."""
    from pathlib import Path

    from db.settings import masked_url
    from etl.backups import restore as restore_backup

    settings = load_settings()
    if into is not None:
        try:
            Settings(database_url=into, _env_file=None)
        except ValidationError:
            fail("--into: not a PostgreSQL URL")
    with databases(settings) as urls, backup_errors():
        target = into or urls.robust
        recovery = asyncio.run(restore_backup(settings, Path(file), target, urls.operation))
    report = recovery.restore
    out.print(f"restored {report.manifest.file} into {masked_url(target)} in {report.restore_s:.2f} s: "
              f"sha256 verified, revision {report.manifest.alembic_revision}, row counts of "
              f"{report.checked_tables} tables equal the manifest's", highlight=False)
    if recovery.upgraded_from is not None:
        from db import migrate

        out.print(f"then migrated from revision {recovery.upgraded_from} to this code's "
                  f"{migrate.head_revision()}", highlight=False)
    if recovery.rebuild is not None:
        out.print(f"lean backup: derived tables rebuilt by ETL run {recovery.rebuild.run_id} (full) in "
                  f"{recovery.rebuild.duration_s:.2f} s; cursors reset, the next cycle is incremental",
                  highlight=False)


# ------------------------------------------------------------------------------- archive
archive_app = typer.Typer(help="Retention of the financial transactions: archive files and restores.",
                          no_args_is_help=True)
app.add_typer(archive_app, name="archive")


def _month_argument(text: str) -> Any:
    from etl.archive import parse_month

    try:
        return parse_month(text)
    except ValueError as exc:
        fail(str(exc))


@archive_app.command("run")
def archive_run() -> None:
    """Archive the months older than FATURE_TRANSACTIONS_RETENTION_MONTHS (and finish any a
    killed run left half done)."""
    from etl.archive import run_archive

    settings = load_settings()
    with databases(settings) as urls, known_errors():
        result = asyncio.run(run_archive(settings, urls.robust))
    for month, seconds in result.month_seconds.items():
        out.print(f"archived {month} in {seconds:.2f} s")
    out.print(f"archive run {result.run_id}: {len(result.months)} month(s) archived")


@archive_app.command("list")
def archive_list() -> None:
    """Every archived (or restored) month: state, rows, file."""
    from db.engine import connect
    from etl.archive import archived_months, cutoff

    settings = load_settings()

    async def read() -> list[Any]:
        conn = await connect(urls.robust)
        try:
            return await archived_months(conn)
        finally:
            await conn.close()

    with databases(settings) as urls, known_errors():
        months = asyncio.run(read())
    table = Table(title=f"Archived months (online from {cutoff(settings):%Y-%m})")
    for column in ("month", "state", "rows", "archived", "restored", "kept online until", "file"):
        table.add_column(column)
    for m in months:
        table.add_row(f"{m['month']:%Y-%m}", m["state"], f"{m['rows'] or 0:,}",
                      f"{m['archived_at']:%Y-%m-%d %H:%M}" if m["archived_at"] else "-",
                      f"{m['restored_at']:%Y-%m-%d %H:%M}" if m["restored_at"] else "-",
                      f"{m['keep_until']:%Y-%m-%d %H:%M}" if m["state"] == "restored" else "-",
                      m["file"] or "-")
    out.print(table)


@archive_app.command("restore")
def archive_restore(month: str = typer.Argument(..., help="The month, YYYY-MM.")) -> None:
    """Bring one archived month back online (verified against its manifest); it stays online
    FATURE_ARCHIVE_RESTORE_KEEP_DAYS days, or until `fature archive drop`."""
    from etl.archive import restore_month

    settings = load_settings()
    first = _month_argument(month)
    with databases(settings) as urls, known_errors():
        rows = asyncio.run(restore_month(settings, urls.robust, first))
    out.print(f"{first:%Y-%m} restored: {rows:,} rows online")


@archive_app.command("drop")
def archive_drop(month: str = typer.Argument(..., help="The restored month, YYYY-MM.")) -> None:
    """Take a restored month offline again now (archived anew, its file replaced)."""
    from etl.archive import run_archive

    settings = load_settings()
    first = _month_argument(month)
    with databases(settings) as urls, known_errors():
        asyncio.run(run_archive(settings, urls.robust, drop=first))
    out.print(f"{first:%Y-%m} archived again")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
