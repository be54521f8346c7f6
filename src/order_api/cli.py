"""The `order-api` command line."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import structlog
import typer
import uvicorn
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from order_api import migrations
from order_api.app import create_app
from order_api.background import run_worker
from order_api.config import ConfigError, Settings, load_settings
from order_api.db import create_engine, create_sessionmaker
from order_api.jobs import outbox
from order_api.observability import configure_logging

cli = typer.Typer(
    help="order-api: run the service, migrate its database, print its OpenAPI schema.",
    no_args_is_help=True,
    add_completion=False,
)
logger = structlog.get_logger("order_api.cli")


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
    """Migrate, or one line naming what failed and exit code 1 (the trace helps nobody here)."""
    try:
        asyncio.run(upgrade_database(settings))
    except (OSError, SQLAlchemyError) as error:
        reason = getattr(error, "orig", None) or error
        typer.echo(f"order-api: cannot migrate the database: {reason}".splitlines()[0], err=True)
        raise typer.Exit(code=1) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Number of API worker processes.", min=1)] = 1,
) -> None:
    """Serve the API. With the embedded SQLite database, migrations are applied first."""
    settings = settings_or_exit()
    if settings.is_sqlite:
        upgrade_or_exit(settings)
        logger.info("migrations_applied", database="sqlite")
    logger.info("serving", url=f"http://{host}:{port}", docs=f"http://{host}:{port}/api/docs")
    uvicorn.run(
        "order_api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        server_header=False,
    )


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


jobs_cli = typer.Typer(help="Inspect and repair background jobs.", no_args_is_help=True)
cli.add_typer(jobs_cli, name="jobs")


@jobs_cli.command("retry-failed")
def retry_failed() -> None:
    """Put every failed job back in the queue with fresh attempts."""
    settings = settings_or_exit()
    try:
        count = asyncio.run(requeue_failed(settings))
    except (OSError, SQLAlchemyError) as error:
        typer.echo(f"order-api: cannot reach the database: {error}".splitlines()[0], err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{count} failed job(s) queued again")


async def requeue_failed(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            count = await outbox.retry_failed(session)
            await session.commit()
    finally:
        await engine.dispose()
    return count


@cli.command()
def openapi() -> None:
    """Print the OpenAPI schema as JSON."""
    settings = settings_or_exit()
    typer.echo(json.dumps(create_app(settings).openapi(), indent=2))


def main() -> None:
    cli()
