"""The `order-api` command line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
import typer
import uvicorn
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api import migrations
from order_api.app import create_app, passwords_from
from order_api.config import ConfigError, Settings, describe_validation_error, load_settings
from order_api.jobs import outbox
from order_api.ops.mail_catcher import MailCatcherUnavailable
from order_api.ops.stack import Stack, StackPlan
from order_api.platform.adapters import InProcessCache
from order_api.platform.db import create_engine, create_sessions
from order_api.platform.http import uvicorn_options
from order_api.platform.telemetry import (
    MULTIPROC_DIR_VARIABLE,
    configure_logging,
    mark_this_process_dead,
)
from order_api.products.demo import seed_demo_catalogue
from order_api.users import service as users_service
from order_api.users.models import Role
from order_api.users.schemas import UserCreate
from order_api.users.service import FIRST_ADMIN_EMAIL, EmailTaken
from order_api.worker import run_worker

cli = typer.Typer(
    help="order-api: run the service and its workers, migrate its database, manage admins.",
    no_args_is_help=True,
    add_completion=False,
)
logger = structlog.get_logger("order_api.cli")
ResultT = TypeVar("ResultT")


def settings_or_exit() -> Settings:
    """Settings for a command, or one clear line on stderr and exit code 2."""
    try:
        settings = load_settings()
    except ConfigError as error:
        typer.echo(f"order-api: refusing to start: {error}", err=True)
        raise typer.Exit(code=2) from None
    configure_logging(settings.log_level, settings.resolved_log_format)
    return settings


async def upgrade_database(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()


def upgrade_or_exit(settings: Settings) -> None:
    run_or_exit(upgrade_database(settings), "cannot migrate the database")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Number of API worker processes.", min=1)] = 1,
) -> None:
    """Serve the API. With the embedded SQLite database, migrations are applied first."""
    settings = settings_or_exit()
    if workers > 1 and settings.redis_url is None:
        # In-process adapters are per process: events would reach only the relaying process.
        typer.echo(
            "order-api: --workers above 1 needs REDIS_URL (without it, the live order stream "
            "and the cache are each process's own)",
            err=True,
        )
        raise typer.Exit(code=2)
    if settings.is_sqlite:
        upgrade_or_exit(settings)
        logger.info("migrations_applied", database="sqlite")
        seeded = run_or_exit(seed_demo(settings), "cannot create the demo catalogue")
        if seeded:
            logger.info("demo_catalogue_created", products=seeded)
        password = run_or_exit(create_first_admin(settings), "cannot create the first admin")
        if password is not None:
            # stdout, not the log: the password is shown once and never stored in clear.
            typer.echo(
                "\nNo admin existed, so one was created. Its password is shown only now:\n"
                f"  e-mail:   {FIRST_ADMIN_EMAIL}\n  password: {password}\n"
            )
    logger.info("serving", url=f"http://{host}:{port}", docs=f"http://{host}:{port}/api/docs")
    with shared_metrics_directory(processes=workers):
        uvicorn.run(
            "order_api.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **uvicorn_options(settings),
        )


@contextmanager
def shared_metrics_directory(processes: int) -> Iterator[None]:
    """Several API processes count into one directory, so any of them answers a scrape whole.

    Set before uvicorn spawns the workers: each imports the app fresh and reads the variable
    before its first metric exists. An operator's own directory is kept (a worker may share it).
    """
    if processes == 1 or os.environ.get(MULTIPROC_DIR_VARIABLE):
        yield
        return
    directory = tempfile.mkdtemp(prefix="order-api-metrics-")
    os.environ[MULTIPROC_DIR_VARIABLE] = directory
    logger.info("metrics_directory_created", path=directory)
    try:
        yield
    finally:
        del os.environ[MULTIPROC_DIR_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The admin's e-mail address.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="12-128 characters, not a common password. Prompted for (hidden) when left out.",
        ),
    ],
    full_name: Annotated[str, typer.Option(help="The admin's name.")] = "Administrator",
) -> None:
    """Create an admin account (non-interactive when --email and --password are both given)."""
    settings = settings_or_exit()
    try:
        data = UserCreate(email=email, password=password, full_name=full_name)
    except ValidationError as error:
        typer.echo(f"order-api: {describe_validation_error(error)}", err=True)
        raise typer.Exit(code=2) from None
    if settings.is_sqlite:
        upgrade_or_exit(settings)
    try:
        run_or_exit(register_admin(settings, data), "cannot create the admin")
    except EmailTaken:
        typer.echo(f"order-api: an account with the e-mail {data.email} already exists", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"admin {data.email} created")


async def register_admin(settings: Settings, data: UserCreate) -> None:
    async with open_session(settings) as session:
        await users_service.register_user(session, passwords_from(settings), data, role=Role.ADMIN)
        await session.commit()


async def create_first_admin(settings: Settings) -> str | None:
    async with open_session(settings) as session:
        password = await users_service.create_first_admin(session, passwords_from(settings))
        await session.commit()
    return password


@asynccontextmanager
async def open_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on an engine of its own, for one command; the engine is closed afterwards."""
    engine = create_engine(settings)
    try:
        async with create_sessions(engine, settings)() as session:
            yield session
    finally:
        await engine.dispose()


def run_or_exit(work: Coroutine[Any, Any, ResultT], failure: str) -> ResultT:
    """Run a database task; an unreachable or unmigrated database is one line and exit code 1."""
    try:
        return asyncio.run(work)
    except (OSError, SQLAlchemyError) as error:
        reason = getattr(error, "orig", None) or error
        typer.echo(f"order-api: {failure}: {reason}".splitlines()[0], err=True)
        raise typer.Exit(code=1) from None


@cli.command("seed-demo")
def seed_demo_command() -> None:
    """Create the demo catalogue, if the catalogue is empty."""
    settings = settings_or_exit()
    if settings.is_sqlite:
        upgrade_or_exit(settings)
    count = run_or_exit(seed_demo(settings), "cannot create the demo catalogue")
    typer.echo(f"{count} demo product(s) created" if count else "the catalogue is not empty")


async def seed_demo(settings: Settings) -> int:
    # The in-process cache is this command's own; a Redis cache entry expires within a minute.
    async with open_session(settings) as session:
        count = await seed_demo_catalogue(session, InProcessCache())
        await session.commit()
    return count


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    settings = settings_or_exit()
    upgrade_or_exit(settings)
    logger.info("migrations_applied", database="sqlite" if settings.is_sqlite else "postgresql")


@cli.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(help="Jobs run at once by this process.", min=1, max=1000)
    ] = 10,
) -> None:
    """Run background jobs from the Redis queue until SIGTERM (then finish running jobs)."""
    settings = settings_or_exit()
    if settings.redis_url is None:
        typer.echo(
            "order-api: the worker needs REDIS_URL; embedded mode runs jobs inside `serve`",
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        asyncio.run(run_worker(settings, concurrency))
    except (RedisError, OSError, SQLAlchemyError) as error:
        typer.echo(f"order-api: the worker cannot start: {error}".splitlines()[0], err=True)
        raise typer.Exit(code=1) from None
    finally:
        mark_this_process_dead()


@cli.command()
def stack(
    host: Annotated[str, typer.Option(help="Interface the API processes bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="The first API process's port; the others follow.", min=1)
    ] = 8000,
    api_processes: Annotated[int, typer.Option(help="API processes.", min=1, max=32)] = 2,
    worker_processes: Annotated[int, typer.Option(help="Worker processes.", min=0, max=32)] = 1,
    concurrency: Annotated[int, typer.Option(help="Jobs at once per worker.", min=1)] = 10,
    mail_catcher: Annotated[
        bool, typer.Option(help="Catch e-mail locally; off: the SMTP_* settings are used.")
    ] = True,
    smtp_port: Annotated[int, typer.Option(help="The mail catcher's SMTP port.", min=1)] = 1025,
    mail_dir: Annotated[
        Path | None, typer.Option(help="Where caught e-mail goes (default: DATA_DIR/stack-mail).")
    ] = None,
) -> None:
    """Run the production topology as local processes (PostgreSQL and Redis by URL) until Ctrl-C."""
    settings = settings_or_exit()
    if settings.is_sqlite or settings.redis_url is None:
        typer.echo("order-api: the stack needs DATABASE_URL=postgresql://… and REDIS_URL", err=True)
        raise typer.Exit(code=2)
    if port + api_processes - 1 > 65535:
        typer.echo(f"order-api: {api_processes} API ports from {port} pass 65535", err=True)
        raise typer.Exit(code=2)
    upgrade_or_exit(settings)
    logger.info("migrations_applied", database="postgresql")
    plan = StackPlan(
        host=host,
        first_port=port,
        api_processes=api_processes,
        worker_processes=worker_processes,
        worker_concurrency=concurrency,
        mail_catcher=("127.0.0.1", smtp_port) if mail_catcher else None,
        mail_directory=mail_dir or settings.data_dir / "stack-mail",
        stop_grace_seconds=settings.shutdown_timeout_seconds,
    )
    with shared_metrics_directory(processes=api_processes + worker_processes):
        try:
            asyncio.run(Stack(plan, sys.stdout.buffer).run(plan.children()))
        except MailCatcherUnavailable as error:
            typer.echo(f"order-api: {error}", err=True)
            raise typer.Exit(code=1) from None


jobs_cli = typer.Typer(help="Inspect and repair background jobs.", no_args_is_help=True)
cli.add_typer(jobs_cli, name="jobs")


@jobs_cli.command("retry-failed")
def retry_failed() -> None:
    """Put every failed job back in the queue with fresh attempts."""
    settings = settings_or_exit()
    count = run_or_exit(requeue_failed(settings), "cannot reach the database")
    typer.echo(f"{count} failed job(s) queued again")


async def requeue_failed(settings: Settings) -> int:
    async with open_session(settings) as session:
        count = await outbox.retry_failed(session)
        await session.commit()
    return count


@cli.command()
def openapi() -> None:
    """Print the OpenAPI schema as JSON."""
    settings = settings_or_exit()
    typer.echo(json.dumps(create_app(settings).openapi(), indent=2))


def main() -> None:
    cli()
