"""The ``temporal-tracer`` command line: ``serve``, ``db upgrade`` and ``demo``.

Every flag also reads an environment variable, named in ``--help``; Temporal's own
variables (``TEMPORAL_ADDRESS``, ``TEMPORAL_CONFIG_FILE``, ``TEMPORAL_API_KEY``...) keep
their usual meaning.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

# Only the standard library and the base install here: each command imports what it
# needs from its extra, so `--help` and the install hints work in a worker's install.
from ._extras import install_hint, missing_extra
from ._ports import PortBusyError
from ._process import run_until_signalled
from .devserver import find_temporal_cli

__all__ = ["build_parser", "main"]

logger = logging.getLogger("tracer")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"temporal-tracer: {name}={value!r} is not a whole number") from None


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"temporal-tracer: {name}={value!r} is not a number") from None


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in (_env(name) or "").split(",") if item.strip()]


def _namespace_list(text: str | None) -> frozenset[str] | None:
    """``orders,payments`` as a set; ``None`` when empty (every namespace)."""
    names = frozenset(item.strip() for item in (text or "").split(",") if item.strip())
    return names or None


def _otlp_token(path: Path | None) -> str | None:
    """The OTLP receiver's bearer token: from the token file, else from
    ``TEMPORAL_TRACER_OTLP_TOKEN``; ``None`` when neither is set.

    Raises:
        ValueError: The file cannot be read or holds no token.
    """
    if path is None:
        return _env("TEMPORAL_TRACER_OTLP_TOKEN")
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise ValueError(f"--otlp-token-file {path}: {err.strerror or err}") from None
    if not token or any(char.isspace() for char in token):
        raise ValueError(f"--otlp-token-file {path}: one token, no spaces, on one line")
    return token


class _DatabaseExit(Exception):
    """The database problem was said; leave with this exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextlib.contextmanager
def _database_problems(url: str, log_level: str) -> Iterator[None]:
    """Say a ``--db`` problem in one line (the traceback only at ``--log-level DEBUG``)."""
    from .db import DatabaseProblem

    try:
        yield
    except DatabaseProblem as problem:
        if log_level == "DEBUG":
            logger.debug("database problem", exc_info=True)
        print(f"temporal-tracer: --db {_shown_url(url)}: {problem}", file=sys.stderr)
        raise _DatabaseExit(1) from None


def _shown_url(url: str) -> str:
    """``url`` without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing in it parsed as a password either
        return url[:200]


def _add_db_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=_env("TEMPORAL_TRACER_DB"),
        metavar="URL",
        help="SQLAlchemy database URL: sqlite:///file.db or postgresql+psycopg://user@host/db "
        "(env TEMPORAL_TRACER_DB; default sqlite:///temporal-tracer.db)",
    )


def _add_log_level(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log verbosity (env TEMPORAL_TRACER_LOG_LEVEL; default INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``temporal-tracer``."""
    parser = argparse.ArgumentParser(
        prog="temporal-tracer",
        description="Trace Temporal workflows across namespaces: link Nexus calls and "
        "activity wrappers from histories and spans, and show the whole call tree.",
    )
    _add_log_level(parser, _env("TEMPORAL_TRACER_LOG_LEVEL", "INFO"))
    # Also accepted after the command (`serve --log-level DEBUG`); SUPPRESS keeps the
    # subcommand from resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_log_level(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the collector: history linker, UI and JSON API, OTLP/HTTP receiver",
        description="Link the call trees of the given namespaces and serve them.",
    )
    _add_db_flag(serve)
    serve.add_argument(
        "--temporal-address",
        default=_env("TEMPORAL_ADDRESS"),
        metavar="HOST:PORT",
        help="Temporal frontend for namespaces without a profile of their own "
        "(env TEMPORAL_ADDRESS; default localhost:7233)",
    )
    serve.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="a namespace to link; repeat for each (env TEMPORAL_TRACER_NAMESPACES, "
        "comma-separated)",
    )
    serve.add_argument(
        "--host",
        default=_env("TEMPORAL_TRACER_HOST", "127.0.0.1"),
        help="address to bind (env TEMPORAL_TRACER_HOST; default %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_int("TEMPORAL_TRACER_PORT", 8700),
        help="UI and JSON API port (env TEMPORAL_TRACER_PORT; default %(default)s)",
    )
    serve.add_argument(
        "--otlp-port",
        type=int,
        default=_env_int("TEMPORAL_TRACER_OTLP_PORT", 4318),
        help="OTLP/HTTP receiver port (env TEMPORAL_TRACER_OTLP_PORT; default %(default)s)",
    )
    serve.add_argument(
        "--otlp-grpc-port",
        type=int,
        default=_env_int("TEMPORAL_TRACER_OTLP_GRPC_PORT", 4317),
        help="OTLP/gRPC receiver port, 0 for none "
        "(env TEMPORAL_TRACER_OTLP_GRPC_PORT; default %(default)s)",
    )
    serve.add_argument(
        "--profile-file",
        type=Path,
        default=_env("TEMPORAL_CONFIG_FILE"),
        metavar="FILE",
        help="Temporal client profiles (TOML); a profile named after a namespace gives its "
        "address, TLS and API key (env TEMPORAL_CONFIG_FILE)",
    )
    serve.add_argument(
        "--poll-interval",
        type=float,
        default=float(_env("TEMPORAL_TRACER_POLL_INTERVAL", "1.0") or 1.0),
        metavar="SECONDS",
        help="how often each namespace is listed (env TEMPORAL_TRACER_POLL_INTERVAL; "
        "default %(default)s)",
    )
    serve.add_argument(
        "--temporal-calls-per-second",
        type=float,
        default=_env_float("TEMPORAL_TRACER_TEMPORAL_CALLS_PER_SECOND", 20.0),
        metavar="CALLS",
        help="the linker's budget of Temporal calls a second per namespace, shared by the "
        "collectors linking it: re-reads of open runs wait for it, runs that start or close "
        "do not (env TEMPORAL_TRACER_TEMPORAL_CALLS_PER_SECOND; default %(default)s)",
    )
    serve.add_argument(
        "--temporal-ui-url",
        default=_env("TEMPORAL_TRACER_TEMPORAL_UI_URL"),
        metavar="URL",
        help="base URL of the Temporal Web UI, to link each workflow to its history "
        "(env TEMPORAL_TRACER_TEMPORAL_UI_URL)",
    )

    serve.add_argument(
        "--export-endpoint",
        action="append",
        dest="export_endpoints",
        metavar="URL",
        help="forward stored spans, enriched, to this OTLP backend: http://jaeger:4318 or "
        "grpc://tempo:4317; repeat for several (env TEMPORAL_TRACER_EXPORT_ENDPOINTS, "
        "comma-separated; headers from OTEL_EXPORTER_OTLP_HEADERS)",
    )
    serve.add_argument(
        "--export-namespaces",
        metavar="NS[,NS...]",
        default=_env("TEMPORAL_TRACER_EXPORT_NAMESPACES"),
        help="export only spans of these namespaces (a backend the other teams' data must "
        "not reach); default: every namespace (env TEMPORAL_TRACER_EXPORT_NAMESPACES)",
    )
    serve.add_argument(
        "--tokens-file",
        type=Path,
        default=_env("TEMPORAL_TRACER_TOKENS_FILE"),
        metavar="FILE",
        help="namespace-scoped access tokens (TOML); without it the UI is open to whoever "
        "reaches it (env TEMPORAL_TRACER_TOKENS_FILE)",
    )
    serve.add_argument(
        "--allowed-hosts",
        default=_env("TEMPORAL_TRACER_ALLOWED_HOSTS"),
        metavar="NAMES",
        help="comma-separated host names the UI answers to (the Host header; '*' for any, "
        "'*.example.com' for subdomains); others get 400, against DNS rebinding (env "
        "TEMPORAL_TRACER_ALLOWED_HOSTS; default: 127.0.0.1, localhost, ::1 and --host, or "
        "this machine's names when --host binds every interface)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=_env("TEMPORAL_TRACER_FORWARDED_ALLOW_IPS"),
        metavar="IPS",
        help="comma-separated proxy addresses whose X-Forwarded-For and X-Forwarded-Proto "
        "are trusted (uvicorn's option; '*' trusts any): the client address failed logins "
        "are counted by, and HTTPS for the Secure cookie (env "
        "TEMPORAL_TRACER_FORWARDED_ALLOW_IPS; default: uvicorn's, 127.0.0.1)",
    )
    serve.add_argument(
        "--otlp-token-file",
        type=Path,
        default=_env("TEMPORAL_TRACER_OTLP_TOKEN_FILE"),
        metavar="FILE",
        help="a file holding the bearer token every OTLP export must carry (exporters: "
        "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%%20<token>); without it or "
        "TEMPORAL_TRACER_OTLP_TOKEN, whoever reaches --otlp-port may send spans "
        "(env TEMPORAL_TRACER_OTLP_TOKEN_FILE)",
    )
    serve.add_argument(
        "--retention",
        default=_env("TEMPORAL_TRACER_RETENTION"),
        metavar="DURATION",
        help="delete trees and spans that ended longer ago than this, e.g. 30d or 12h "
        "(env TEMPORAL_TRACER_RETENTION; default: keep everything)",
    )

    db = commands.add_parser("db", help="manage the store's schema", parents=[common])
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the Alembic migrations", parents=[common]
    )
    _add_db_flag(upgrade)

    from .demo._runner import add_demo_arguments

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the cross-namespace sample: embedded Temporal, collector, workers",
        description="Start an embedded Temporal dev server with the namespaces orders, "
        "payments, notifications and inventory, the collector on SQLite and the sample "
        "workers; place the sample orders and print where to look. Ctrl-C stops it all.",
    )
    add_demo_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``temporal-tracer``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "DEBUG":
        # Alembic announces each of its plugins at INFO on every start.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        if args.command == "db":
            from .db import DEFAULT_DB_URL, create_db_engine, upgrade_database

            with _database_problems(args.db or DEFAULT_DB_URL, args.log_level):
                upgrade_database(create_db_engine(args.db or DEFAULT_DB_URL))
            return 0
        if args.command == "serve":
            from ._service import ServeSettings, serve_forever
            from .db import DEFAULT_DB_URL
            from .export import parse_export_endpoints
            from .ingest import SpanLimits
            from .jobs import parse_duration

            namespaces = args.namespaces or _env_list("TEMPORAL_TRACER_NAMESPACES")
            if not namespaces:
                print("temporal-tracer serve: give at least one --namespace", file=sys.stderr)
                return 2
            try:
                export_endpoints = parse_export_endpoints(
                    args.export_endpoints or _env("TEMPORAL_TRACER_EXPORT_ENDPOINTS"),
                    namespaces=_namespace_list(args.export_namespaces),
                )
                retention = parse_duration(args.retention) if args.retention else None
                otlp_token = _otlp_token(args.otlp_token_file)
                span_limits = SpanLimits.from_env()
                if not args.temporal_calls_per_second >= 0:  # also refuses nan
                    raise ValueError("--temporal-calls-per-second must be 0 or more")
            except ValueError as err:
                print(f"temporal-tracer serve: {err}", file=sys.stderr)
                return 2
            settings = ServeSettings(
                db_url=args.db or DEFAULT_DB_URL,
                namespaces=namespaces,
                temporal_address=args.temporal_address,
                profile_file=args.profile_file,
                host=args.host,
                port=args.port,
                otlp_port=args.otlp_port,
                otlp_grpc_port=args.otlp_grpc_port,
                poll_interval=args.poll_interval,
                temporal_calls_per_second=args.temporal_calls_per_second,
                temporal_ui_url=args.temporal_ui_url,
                retention=retention,
                tokens_file=args.tokens_file,
                export_endpoints=export_endpoints,
                otlp_token=otlp_token,
                span_limits=span_limits,
                allowed_hosts=[
                    name.strip() for name in (args.allowed_hosts or "").split(",") if name.strip()
                ]
                or None,
                forwarded_allow_ips=args.forwarded_allow_ips,
            )
            with _database_problems(settings.db_url, args.log_level):
                run_until_signalled(serve_forever(settings))
            return 0
        if not args.temporal_address:  # the embedded server is the demo extra's temporal CLI
            try:
                find_temporal_cli()
            except FileNotFoundError:
                print(install_hint("demo", "demo", "no 'temporal' CLI found"), file=sys.stderr)
                return 1
        from .demo._runner import run_demo

        return run_demo(args)
    except PortBusyError as err:
        print(f"temporal-tracer: {err}", file=sys.stderr)
        return 1
    except _DatabaseExit as exit_:
        return exit_.code
    except ModuleNotFoundError as err:
        extra = missing_extra(err)  # only our extras' modules: any other is a real bug
        if extra is None:
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "db_command", None))))
        print(install_hint(command, extra, f"no module named {err.name!r}"), file=sys.stderr)
        return 1
