"""The `widget-server` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from databases import Database

from . import migrations
from .resources import create_database, prepare_sqlite
from .settings import SETTINGS, Settings, SettingsError, load_settings
from .targets import BY_FILE_KIND


def _settings_epilog() -> str:
    lines = ["settings (environment variables or .env):"]
    for setting in SETTINGS:
        default = f" [default: {setting.default}]" if setting.default else ""
        default += f" [{setting.range_text()}]" if setting.bounds else ""
        text = textwrap.fill(setting.help + default, 72, initial_indent="      ", subsequent_indent="      ")
        lines.append(f"  {setting.name}\n{text}")
    return "\n".join(lines)


async def with_database(settings: Settings, work: Callable[[Database], Awaitable[Any]]) -> Any:
    database = create_database(settings)
    await database.connect()
    try:
        await prepare_sqlite(database)
        await migrations.migrate(database)
        return await work(database)
    finally:
        await database.disconnect()


def uvicorn_config(app: Any, settings: Settings) -> Any:
    """How `serve` runs the app (tests start real servers with the same options)."""
    import uvicorn

    from .read_timeouts import header_timeout_protocol

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Forwarded headers are believed from TRUSTED_PROXIES only (uvicorn's own
        # default trusts 127.0.0.1, which lets any local hop forge the client IP).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        http=header_timeout_protocol(settings.request_header_timeout_seconds),
        server_header=False,
        # uvicorn's loggers propagate to the root handler, in LOG_FORMAT.
        log_config=None,
    )


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    if settings.demo_data:
        from . import directory

        loaded = asyncio.run(with_database(settings, directory.load_demo))
        if loaded:
            print("Demo directory loaded.", file=sys.stderr)
    app = create_app(settings)
    print(
        f"Widget server on {settings.public_url} (listening on {settings.host}:{settings.port})",
        file=sys.stderr,
    )
    from . import host_page
    from .logs import configure_logging

    configure_logging(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run does
        asyncio.run(host_page.serve(settings, server))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    from .delivery import create_worker
    from .logs import configure_logging

    configure_logging(settings)

    async def work(database: Database) -> None:
        worker = create_worker(database, settings)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await worker.run_forever(stop)

    asyncio.run(with_database(settings, work))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    database = create_database(settings)

    async def run() -> list[int]:
        await database.connect()
        try:
            return await migrations.migrate(database)
        finally:
            await database.disconnect()

    applied = asyncio.run(run())
    print(f"Applied migrations: {applied}" if applied else "Database already up to date.")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from . import directory

    async def work(database: Database) -> directory.ImportReport:
        return await directory.import_file(
            database,
            args.kind,
            args.file,
            dry_run=args.dry_run,
            progress=None if args.quiet else directory.terminal_progress,
            max_offer_applications=settings.offer_max_applications,
        )

    try:
        report = asyncio.run(with_database(settings, work))
    except directory.ImportFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.rejected else 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from . import callers
    from .local_time import in_paris
    from .webhooks import BadWebhookURL

    async def work(database: Database) -> int:
        if args.action == "create":
            if args.test and args.role != "partner":
                print("Only a partner key can be a test key.", file=sys.stderr)
                return 2
            try:
                made = await callers.create(
                    database,
                    args.caller,
                    args.role,
                    test=args.test,
                    webhook_url=args.webhook,
                    production=settings.production,
                )
            except BadWebhookURL as exc:
                print(f"error: webhook URL refused: {exc}", file=sys.stderr)
                return 2
            what = (
                f"Test API key for {args.caller}" if args.test else f"API key for {args.caller} ({args.role})"
            )
            print(f"{what} - shown once, keep it safe:\n{made.key}")
            if args.test:
                print(
                    "Its requests are stored as tests: their emails are never sent, read them at "
                    f"{settings.public_url}/api/v1/test-mailbox with this key."
                )
            if made.webhook_secret:
                print(f"Webhook signing secret for {args.webhook} - shown once:\n{made.webhook_secret}")
        elif args.action == "list":
            for row in await callers.list_keys(database):
                # Dates the operator reads: Paris dates (local_time.py), like every time shown.
                state = f"revoked {in_paris(row['revoked_at']):%Y-%m-%d}" if row["revoked_at"] else "active"
                webhook = f"  webhook {row['webhook_url']}" if row["webhook_url"] else ""
                print(
                    f"{row['prefix']}  {row['caller']:<30} {row['role']:<9} "
                    f"{'test' if row['test'] else 'live':<4}  "
                    f"created {in_paris(row['created_at']):%Y-%m-%d}  {state}{webhook}"
                )
        elif args.action == "webhook":
            return await _keys_webhook(database, settings, args)
        elif not await callers.revoke_key(database, args.prefix):
            print(f"No active key with prefix {args.prefix}.", file=sys.stderr)
            return 1
        else:
            print(f"Key {args.prefix} revoked.")
        return 0

    return int(asyncio.run(with_database(settings, work)))


async def _keys_webhook(database: Database, settings: Settings, args: argparse.Namespace) -> int:
    from . import callers
    from .webhooks import BadWebhookURL

    if args.remove == bool(args.url or args.rotate_secret):
        print("error: give a URL and/or --rotate-secret, or --remove alone", file=sys.stderr)
        return 2
    try:
        secret = await callers.set_webhook(
            database,
            args.prefix,
            "" if args.remove else args.url,
            rotate_secret=args.rotate_secret,
            production=settings.production,
        )
    except callers.UnknownKey:
        print(f"No active key with prefix {args.prefix}.", file=sys.stderr)
        return 1
    except BadWebhookURL as exc:
        print(f"error: webhook URL refused: {exc}", file=sys.stderr)
        return 2
    if args.remove:
        print(f"Webhook of key {args.prefix} removed; its waiting events will not be sent.")
    elif secret:
        print(f"Webhook of key {args.prefix} set. New signing secret - shown once:\n{secret}")
    else:
        print(f"Webhook of key {args.prefix} set; the signing secret is unchanged.")
    return 0


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    from .retention import purge

    async def work(database: Database) -> str:
        return (await purge(database, settings, dry_run=args.dry_run)).summary()

    print(asyncio.run(with_database(settings, work)))
    return 0


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    from .privacy_rights import forget

    async def work(database: Database) -> str:
        return (await forget(database, args.email)).summary()

    print(asyncio.run(with_database(settings, work)))
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from .privacy_rights import export

    async def work(database: Database) -> dict[str, Any]:
        return await export(database, args.email)

    print(json.dumps(asyncio.run(with_database(settings, work)), ensure_ascii=False, indent=2))
    return 0


def cmd_remind(settings: Settings, args: argparse.Namespace) -> int:
    from .reminders import send_due_reminders

    async def work(database: Database) -> int:
        return await send_due_reminders(database, settings)

    print(f"Reminders queued: {asyncio.run(with_database(settings, work))}")
    return 0


def cmd_operator_link(settings: Settings, args: argparse.Namespace) -> int:
    from .operator_page import signed_link

    print(signed_link(settings, args.hours))
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    from .stats import stats

    print(asyncio.run(with_database(settings, stats)))
    return 0


COMMANDS: dict[str, tuple[str, Callable[[Settings, argparse.Namespace], int]]] = {
    "serve": ("run the API, the widget and the email worker in one process", cmd_serve),
    "worker": ("deliver queued emails only (run several for more throughput)", cmd_worker),
    "migrate": ("create or upgrade the database schema in place", cmd_migrate),
    "import": ("load formations, offers or companies from CSV or JSON Lines", cmd_import),
    "keys": ("create, list or revoke partner API keys, set their webhooks", cmd_keys),
    "purge": ("delete delivered CVs and anonymise old requests (cron-safe)", cmd_purge),
    "forget": (
        "erase everything about the person writing from EMAIL (RGPD), print what was done",
        cmd_forget,
    ),
    "export": ("print everything held about the person writing from EMAIL as JSON (RGPD)", cmd_export),
    "stats": ("print request, answer and delivery counts", cmd_stats),
    "operator-link": ("print a signed link to the operator page (figures by week)", cmd_operator_link),
    "remind": ("queue the reminders that are due (the email workers do it on their own)", cmd_remind),
}


def _link_hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = -1
    if not 0 < hours <= 720:
        raise argparse.ArgumentTypeError("a number of hours above 0, up to 720 (30 days)")
    return hours


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="widget-server",
        description="Apprenticeship matchmaking widget and API.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=help_) for name, (help_, _) in COMMANDS.items()}
    imp = parsers["import"]
    imp.add_argument("kind", choices=list(BY_FILE_KIND))
    imp.add_argument("file", help="a .csv (header row) or .jsonl file")
    imp.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
    imp.add_argument("--quiet", action="store_true", help="no progress display")
    parsers["purge"].add_argument(
        "--dry-run", action="store_true", help="print what would be deleted or anonymised, change nothing"
    )
    for name in ("forget", "export"):
        parsers[name].add_argument("email", help="the person's email address (letter case ignored)")
    parsers["operator-link"].add_argument(
        "--hours", type=_link_hours, default=24, help="how long the link works, up to 720 (default: 24)"
    )
    keys = parsers["keys"].add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="print a new key for CALLER, once")
    create.add_argument("caller", help="the partner's name, e.g. mon-site")
    create.add_argument("--role", choices=["partner", "operator"], default="partner")
    create.add_argument(
        "--test",
        action="store_true",
        help="a test key: its requests are stored as tests and their emails only reach its test mailbox",
    )
    create.add_argument(
        "--webhook",
        metavar="URL",
        help="send this partner's request events to URL, signed (Standard Webhooks); prints the secret once",
    )
    keys.add_parser("list", help="list keys (prefix, caller, role, live or test, state, webhook)")
    webhook = keys.add_parser(
        "webhook",
        help="set, change or remove the webhook of the key with this prefix",
        description="A new URL keeps the signing secret; --rotate-secret makes (and prints) a new one. "
        "Events still waiting go to the current URL with the current secret.",
    )
    webhook.add_argument("prefix")
    webhook.add_argument("url", nargs="?", help="the new webhook URL")
    webhook.add_argument("--rotate-secret", action="store_true", help="make a new signing secret, shown once")
    webhook.add_argument("--remove", action="store_true", help="no more webhooks for this key")
    revoke = keys.add_parser("revoke", help="revoke the key with this prefix")
    revoke.add_argument("prefix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command][1](settings, args)


if __name__ == "__main__":
    sys.exit(main())
