"""``voxtrio serve``: the media-stream front door as a worker process.

One worker per core; put a load balancer in front and share one PostgreSQL store
(``--db postgresql://...``) so a call that comes back to another worker continues
(docs/deployment.md). SIGTERM (or Ctrl-C) drains: stop accepting, let live calls run
up to ``--drain-timeout``, flush the store, exit 0.

Once it listens it prints one line to stdout, ``listening ws://HOST:PORT/media``; on
SIGTERM ``draining: ...``; at the end ``drained: ...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from functools import partial

import click
import trio

import voxtrio
from voxtrio.codecs.media_stream import Start
from voxtrio.telephony import MediaStreamServer, serve_media_streams
from voxtrio.testing import ConnectionScript, open_openai_loopback

from . import cli
from .runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE, LOOPBACK_KEY, CliError

__all__ = ["serve"]


def _open_store(db: str | None) -> voxtrio.TranscriptStore:
    if db is None:
        return voxtrio.MemoryTranscriptStore()
    if db.startswith(("postgresql://", "postgres://")):
        try:
            return voxtrio.PostgresTranscriptStore(db)
        except (ValueError, TypeError, ImportError) as exc:  # messages never echo the DSN
            raise CliError(f"--db: {exc}", EXIT_USAGE) from None
    if not os.path.isdir(os.path.dirname(os.path.abspath(db))):
        raise CliError(f"--db {db!r}: its directory does not exist", EXIT_USAGE)
    return voxtrio.SqliteTranscriptStore(db)


@contextlib.asynccontextmanager
async def _factory(
    provider: str, model: str, base_url: str | None, key: str | None
) -> AsyncIterator[voxtrio.telephony.ProviderFactory]:
    if provider == "loopback":
        script = ConnectionScript(pace_replies=True)
        async with open_openai_loopback(default_script=script, api_key=LOOPBACK_KEY) as server:
            url = server.url
            yield lambda start: voxtrio.OpenAIRealtime(
                model=model, api_key=LOOPBACK_KEY, base_url=url
            )
        return
    if not key:
        raise CliError("--provider openai needs OPENAI_API_KEY in the environment", EXIT_USAGE)

    def make(start: Start) -> voxtrio.OpenAIRealtime:
        return voxtrio.OpenAIRealtime(model=model, api_key=key, base_url=base_url)

    make(Start("MZcheck", "CAcheck"))  # bad options fail now, not on the first call
    yield make


async def _serve(
    factory_args: tuple[str, str, str | None, str | None],
    store: voxtrio.TranscriptStore,
    host: str,
    port: int,
    max_calls: int,
    instructions: str | None,
    drain_timeout: float,
) -> None:
    # The signal handlers go in before the listening line is printed: whoever started
    # this process may send SIGTERM as soon as it reads that line, and it must drain.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with _factory(*factory_args) as factory, trio.open_nursery() as nursery:
            server: MediaStreamServer = await nursery.start(
                partial(
                    serve_media_streams,
                    factory,
                    host=host,
                    port=port,
                    max_calls=max_calls,
                    store=store,
                    instructions=instructions,
                )
            )
            nursery.start_soon(_drain_on_signal, server, signals, drain_timeout)
            click.echo(f"listening {server.url}")
            await server.wait_drained()
            nursery.cancel_scope.cancel()
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()
    click.echo(
        f"drained: {server.stats.finished} calls served, {server.stats.refused} refused"
    )


async def _drain_on_signal(
    server: MediaStreamServer, signals: AsyncIterator[int], deadline_s: float
) -> None:
    async for _ in signals:
        server.request_drain(deadline_s)  # a second signal changes nothing
        await server.wait_not_accepting()
        click.echo(f"draining: {server.active_calls} live calls, up to {deadline_s:g} s")
        return


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--max-calls", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--db",
    default=None,
    envvar="VOXTRIO_DB",
    help="Transcript store: a SQLite file or a postgresql:// DSN (or $VOXTRIO_DB, which"
    " keeps a password out of ps) [default: in memory].",
)
@click.option("--provider", type=click.Choice(["loopback", "openai"]), default="loopback",
              show_default=True)
@click.option("--model", default="gpt-realtime", show_default=True)
@click.option("--base-url", default=None, help="Provider websocket URL (openai only).")
@click.option("--instructions", default=None, help="Base instructions of every call.")
@click.option("--drain-timeout", type=click.FloatRange(min=0.0), default=30.0,
              show_default=True, help="Seconds live calls may go on after SIGTERM.")
def serve(
    host: str,
    port: int,
    max_calls: int,
    db: str | None,
    provider: str,
    model: str,
    base_url: str | None,
    instructions: str | None,
    drain_timeout: float,
) -> int:
    """Accept telephony media streams (Twilio JSON shape), one voice session per call."""
    if provider == "loopback" and base_url is not None:
        raise CliError("--base-url is for --provider openai", EXIT_USAGE)
    store = _open_store(db)
    key = os.environ.get("OPENAI_API_KEY") if provider == "openai" else None
    try:
        trio.run(
            _serve, (provider, model, base_url, key), store, host, port, max_calls,
            instructions, drain_timeout,
        )
    except OSError as exc:  # the port is taken, the address is not ours
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       EXIT_FAILED) from None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return EXIT_OK
