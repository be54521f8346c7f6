"""One bench run from start to end: scratch resources, data, servers, load, report."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench import chart, report, seeding
from bench.environments import new_secret_key, production, with_postgres_and_redis
from bench.fleet import server_specs
from bench.goals import evaluate
from bench.load import LoadContext
from bench.machine import machine, versions
from bench.options import Options
from bench.results import Summary
from bench.runner import measure
from bench.scenarios import Customer, ServerName, all_scenarios
from bench.scratch import REDIS_URL, Scratch, scratch_database, scratch_redis_prefix
from bench.servers import running
from bench.tools import can_pin, ensure_wrk, wrk_version

REPORT_NAME = "benchmarks.md"
CHART_NAME = "benchmarks.png"


def run(options: Options) -> int:
    """The exit code: 0, or 1 when a smoke run had a failed request."""
    wrk = ensure_wrk()
    pin = can_pin()
    info = report.RunInfo(
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        versions=versions(wrk_version(wrk)),
        pinned=pin,
        options=options,
        chart_name=CHART_NAME,
    )
    pid = os.getpid()
    scratch = Scratch.for_process(pid)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="order-api-bench-")))
        database_url = stack.enter_context(scratch_database(scratch))
        redis_prefix = stack.enter_context(scratch_redis_prefix(scratch))
        secret_key = new_secret_key()
        service = with_postgres_and_redis(
            production(secret_key, workdir / "service-data", options.pool_size),
            database_url,
            REDIS_URL,
            redis_prefix,
        )
        embedded = production(secret_key, workdir / "embedded-data", options.pool_size)
        print(f"set-up: database {scratch.database}, Redis prefix {redis_prefix}", flush=True)
        seeding.migrate(service, workdir)
        seeding.migrate(embedded, workdir)
        rows = seeding.product_rows(seed=pid)
        seeding.insert_products(database_url, rows)
        sqlite_path = workdir / "embedded-data" / "order_api.sqlite3"
        seeding.insert_products(f"sqlite:///{sqlite_path}", rows)
        ids_file = workdir / "product-ids.txt"
        seeding.write_ids_file(rows, ids_file)
        servers = stack.enter_context(
            running(server_specs(service, embedded, database_url, pin), workdir)
        )
        service_url = servers[ServerName.SERVICE].url
        reader = seeding.sign_up(service_url, f"bench-reader-{pid}@example.com", "Reader")
        buyer = seeding.sign_up(service_url, f"bench-buyer-{pid}@example.com", "Buyer")
        seeding.place_reader_orders(service_url, reader, rows)
        embedded_buyer = seeding.sign_up(
            servers[ServerName.EMBEDDED].url, f"bench-buyer-{pid}@example.com", "Buyer"
        )
        tokens = {
            Customer.READER: reader.token,
            Customer.BUYER: buyer.token,
            Customer.EMBEDDED_BUYER: embedded_buyer.token,
        }
        context = LoadContext(wrk, ids_file, tokens, options.connections, pin)
        scenarios = all_scenarios()
        print(f"{len(scenarios)} scenarios, pinning {'on' if pin else 'off'}", flush=True)
        runs, failures = measure(scenarios, servers, options, context, run_tag=str(pid))
    summaries = {scenario.key: Summary(scenario, runs[scenario.key]) for scenario in scenarios}
    goals = evaluate(summaries)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    (options.output_dir / REPORT_NAME).write_text(report.render(info, summaries, goals))
    chart.draw(goals, options.output_dir / CHART_NAME)
    print("goals:")
    for goal in goals:
        figures = "; ".join(figure.describe() for figure in goal.figures)
        print(f"  {goal.verdict:<8} {goal.name}: {figures}")
    print(f"report: {options.output_dir / REPORT_NAME}, chart: {options.output_dir / CHART_NAME}")
    if failures:
        print(f"{len(failures)} failed run(s):", *failures, sep="\n  ")
    return 1 if failures and options.smoke else 0
