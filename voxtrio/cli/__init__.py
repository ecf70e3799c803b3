"""The ``voxtrio`` command (``python -m voxtrio`` too).

    voxtrio run INPUT.wav [options]   # the loopback provider unless OPENAI_API_KEY is set
    voxtrio transcript --db FILE [--session-id ID] [--format text|json]
    voxtrio bench [--quick] [--json FILE] [--plot FILE.png]

Exit codes: 0 success; 1 the session failed (provider unreachable, key rejected, the
capture failed); 2 bad input or usage; 130 interrupted (Ctrl-C); 141 stdout's reader
went away (``voxtrio run ... | head -3``: no traceback, the session hung up cleanly and
the transcript store kept what was seen, as for Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import click

import voxtrio

from . import runner
from .output import silence_stdout
from .runner import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
    CliError,
    RunOptions,
)

__all__ = ["main"]


class _Group(click.Group):
    """Prints bad-input errors as one line (``voxtrio: error: ...``), never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.Abort:  # Ctrl-C while click itself was reading input
            return EXIT_INTERRUPTED
        except click.UsageError as exc:  # bad options: click's own message, one line
            _fail(exc.format_message())
            return EXIT_USAGE
        except click.ClickException as exc:
            _fail(exc.format_message())
            return exc.exit_code
        except CliError as exc:
            _fail(exc.message)
            return exc.exit_code
        except BrokenPipeError:  # `voxtrio transcript ... | head`: the reader is done
            silence_stdout()
            return EXIT_STDOUT_CLOSED


def _fail(message: str) -> None:
    click.echo(f"voxtrio: error: {' '.join(message.split())}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(voxtrio.__version__, prog_name="voxtrio")
def cli() -> None:
    """voxtrio: realtime voice-AI sessions on trio.

    Exit codes: 0 success; 1 the session failed (provider unreachable, key rejected);
    2 bad input or usage; 130 interrupted; 141 stdout was closed (``| head``).
    """


def _default_provider() -> str:
    for name in ("openai", "gemini"):
        if _api_key(name):
            return name
    return "loopback"


def _api_key(provider: str) -> str | None:
    """The key for ``provider`` from the environment (None for the loopbacks)."""
    for variable in runner.KEY_VARIABLES.get(provider, ()):
        if key := os.environ.get(variable):
            return key
    return None


@cli.command()
@click.argument("input_wav", metavar="INPUT.wav", type=click.Path(path_type=Path))
@click.option(
    "--provider",
    type=click.Choice(runner.PROVIDERS),
    default=None,
    help="Default: openai when OPENAI_API_KEY is set, else gemini when GEMINI_API_KEY "
    "(or GOOGLE_API_KEY) is, else the built-in loopback server (OpenAI's protocol; "
    "gemini-loopback speaks Gemini Live's).",
)
@click.option(
    "--model",
    default=None,
    help=f"Realtime model [default: {runner.DEFAULT_MODELS['openai']} (openai), "
    f"{runner.DEFAULT_MODELS['gemini']} (gemini)].",
)
@click.option("--base-url", default=None, help="Provider websocket URL (openai, gemini).")
@click.option("--instructions", default=None, help="Base instructions for the assistant.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Directory for reply.wav (and the default database).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Transcript database [default: OUT/transcript.sqlite3].",
)
@click.option("--session-id", default=None, help="Conversation id; reuse one to resume a call.")
@click.option(
    "--realtime/--fast",
    default=True,
    show_default=True,
    help="Pace capture and playback (and a loopback's replies) in real time, or stream "
    "as fast as possible.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, then a summary.")
@click.option(
    "--linger",
    type=click.FloatRange(min=0.0),
    default=1.5,
    show_default=True,
    help="Seconds of quiet after the input and the last reply before hanging up.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=None,
    help="Connection attempts before giving up [default: the library's policy].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log the runtime's warnings to stderr.")
def run(
    input_wav: Path,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    instructions: str | None,
    out: Path,
    db: Path | None,
    session_id: str | None,
    realtime: bool,
    as_json: bool,
    linger: float,
    max_attempts: int | None,
    verbose: bool,
) -> int:
    """Stream INPUT.wav (16-bit PCM) through a full voice session.

    Events are printed as they arrive, the reply audio goes to OUT/reply.wav and the
    transcript to the database. Ctrl-C hangs up cleanly (exit 130); so does a closed
    stdout, e.g. ``| head -3`` (exit 141, no traceback).
    """
    _configure_logging(verbose)
    name = provider or _default_provider()
    if name.endswith("loopback") and base_url is not None:
        raise CliError("--base-url is for --provider openai or gemini", EXIT_USAGE)
    total, fmt = runner.check_input(input_wav)
    db_path = db if db is not None else out / "transcript.sqlite3"
    if db is not None and not db.parent.is_dir():
        raise CliError(f"--db {str(db)!r}: its directory does not exist", EXIT_USAGE)
    if session_id is not None and not _is_text(session_id):
        raise CliError("--session-id must be valid text", EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create --out {str(out)!r}: {exc.strerror}", EXIT_USAGE) from None
    options = RunOptions(
        input_wav=input_wav,
        input_samples=total,
        input_format=fmt,
        provider=name,
        model=model,
        base_url=base_url,
        api_key=_api_key(name),
        instructions=instructions,
        out_dir=out,
        db=db_path,
        session_id=session_id or time.strftime("run-%Y%m%d-%H%M%S-") + os.urandom(3).hex(),
        realtime=realtime,
        as_json=as_json,
        linger_s=linger,
        max_attempts=max_attempts,
        tty=sys.stdout.isatty() and not as_json,
    )
    return runner.run_to_exit_code(options)


def _is_text(value: str) -> bool:
    """Not empty, and no undecodable bytes (which arrive as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(value)


def _configure_logging(verbose: bool) -> None:
    """The runtime logs retries and failures; they reach the user as events already,
    so they are shown only with ``--verbose`` (and never the last-resort handler)."""
    logger = logging.getLogger("voxtrio")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


@cli.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--session-id", default=None, help="Print this session; without it, list them.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def transcript(db: Path, session_id: str | None, fmt: str) -> int:
    """Print a stored conversation, or list the sessions in the database."""
    if not db.is_file():
        raise CliError(f"{str(db)!r}: no such database file", EXIT_USAGE)
    try:
        with voxtrio.SqliteTranscriptStore(db) as store:
            if session_id is None:
                ids = store.session_ids()
                if fmt == "json":
                    click.echo(json.dumps({"db": str(db), "sessions": ids}))
                else:
                    click.echo("\n".join(ids) if ids else f"(no sessions in {db})")
                return EXIT_OK
            items = store.items(session_id)
    except ValueError as exc:  # a bad session id (sqlite3.DatabaseError is not one)
        raise CliError(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # sqlite3.DatabaseError: not a voxtrio database
        raise CliError(f"cannot read {str(db)!r}: {exc}", EXIT_USAGE) from None
    if not items:
        raise CliError(f"no session {session_id!r} in {str(db)!r}", EXIT_FAILED)
    if fmt == "json":
        for item in items:
            click.echo(json.dumps({"type": type(item).__name__, **attrs.asdict(item)}))
    else:
        click.echo(voxtrio.render_context_as_text(items))
    return EXIT_OK


@cli.command()
@click.option("--quick", is_flag=True, help="A short run (a smoke test, not a measurement).")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every benchmark's rows as one JSON object to this file.",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw throughput by path and the capacity run to this PNG (matplotlib).",
)
@click.argument("names", nargs=-1)
def bench(
    quick: bool, json_file: Path | None, plot_file: Path | None, names: Sequence[str]
) -> int:
    """Run the benchmarks (``python -m benchmarks``) of a source checkout.

    NAMES picks benchmarks (default: all). The runner prints its tables as it goes;
    --json and --plot are written by the runner from the same rows; the JSON also
    records the command, its exit status and the lines it printed.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise CliError(
            "the benchmarks are not installed: run `voxtrio bench` from a source checkout",
            EXIT_USAGE,
        )
    outputs: list[str] = []
    for flag, path in (("--json", json_file), ("--plot", plot_file)):
        if path is not None:
            if not path.resolve().parent.is_dir():
                raise CliError(f"{flag}: no directory {str(path.resolve().parent)!r}", EXIT_USAGE)
            outputs += [flag, str(path.resolve())]  # the runner runs in the checkout
    cmd = [sys.executable, "-m", "benchmarks", *(["--quick"] if quick else []), *outputs, *names]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), _pythonpath()])))
    lines: list[str] = []
    with subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                click.echo(line, nl=False)
                lines.append(line.rstrip("\n"))
        except BrokenPipeError:  # `| head`: stop the runner rather than let it hit EPIPE
            proc.terminate()
            raise
    code = proc.returncode
    if json_file is not None:
        # The runner wrote the rows (if it got that far); add what was run and printed,
        # so a failed run still leaves a record.
        doc: dict[str, Any] = {}
        if code == 0 and json_file.is_file():
            doc = json.loads(json_file.read_text(encoding="utf-8"))
        doc.update(command=["python", "-m", "benchmarks", *cmd[3:]], exit_code=code,
                   output=lines)  # fmt: skip
        doc.setdefault("quick", quick)
        json_file.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if code:
        raise CliError(f"the benchmarks runner exited with status {code}", EXIT_FAILED)
    return EXIT_OK


from . import serve as _serve  # noqa: E402, F401  (registers `voxtrio serve` on cli)


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit code (see the module docstring)."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="voxtrio")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK

