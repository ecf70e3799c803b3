"""The ``voxtrio`` command, run as a user runs it: a subprocess, its exit code, its output.

Every run goes to the in-process loopback server on 127.0.0.1 (no OPENAI_API_KEY in
the child's environment) or to a loopback server of the test; every subprocess call
has a timeout.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import wave
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.cli.output import Tally, event_record
from voxtrio.codecs.transcript import AssistantItem, UserItem
from voxtrio.testing import open_gemini_loopback, open_openai_loopback

WAV = str(resources.files("voxtrio.data") / "hello_48k_stereo.wav")
ROOT = Path(__file__).resolve().parents[1]
USER_LINE = "user said: 'loopback utterance 1'"
ASSISTANT_LINE = "assistant said: 'Hello from the loopback provider.'"


def cli_env(**extra: str) -> dict[str, str]:
    """The child's environment: no API key, this checkout first on the path."""
    keys = {"OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def voxtrio_cli(
    *args: str, cwd: Path, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxtrio", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("voxtrio: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def fast_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cwd = tmp_path_factory.mktemp("run")
    result = voxtrio_cli("run", WAV, "--fast", "--session-id", "call-1", cwd=cwd)
    return cwd, result


def test_run_streams_the_file_against_loopback_and_summarises(
    fast_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, result = fast_run
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "built-in loopback server" in out
    for line in ("connected to openai", "speech started", "speech stopped"):
        assert line in out
    assert USER_LINE in out
    assert ASSISTANT_LINE in out
    assert "\x1b" not in out  # not a terminal: no colour, no progress line
    assert "capture [" not in out
    # Frames sent are reported in seconds too; they cover the whole input.
    pcm, fmt = voxtrio.read_wav(WAV)
    sent = re.search(r"sent +(\d+) frames x (\d+) ms = ([\d.]+) s", out)
    assert sent is not None
    frames, frame_ms, seconds = int(sent[1]), int(sent[2]), float(sent[3])
    assert frame_ms == 20
    assert frames == math.ceil(pcm.shape[0] / fmt.sample_rate * 1000 / frame_ms)
    assert seconds == pytest.approx(frames * frame_ms / 1000)
    assert f"input audio   {pcm.shape[0] / fmt.sample_rate:.2f} s" in out
    assert "reply audio   0.40 s -> out/reply.wav" in out
    assert re.search(r"turn latency  turn 1: \d+ ms", out)
    # The reply went to OUT/reply.wav: the loopback's 400 ms tone at 24 kHz.
    reply, reply_fmt = voxtrio.read_wav(cwd / "out" / "reply.wav")
    assert reply_fmt == voxtrio.AudioFormat(24_000)
    assert reply.shape == (9_600, 1)
    assert np.abs(reply.astype(np.int32)).max() > 1_000


def test_run_stores_the_turns(fast_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    cwd, result = fast_run
    assert result.returncode == 0
    with voxtrio.SqliteTranscriptStore(cwd / "out" / "transcript.sqlite3") as store:
        items = store.items("call-1")
    users = [i.text for i in items if isinstance(i, UserItem)]
    assert users[:1] == ["loopback utterance 1"]
    assert [i.text for i in items if isinstance(i, AssistantItem)] == [
        "Hello from the loopback provider."
    ]


def test_transcript_lists_and_prints_the_session(
    fast_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cwd, _ = fast_run
    db = str(cwd / "out" / "transcript.sqlite3")
    listed = voxtrio_cli("transcript", "--db", db, cwd=cwd, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["call-1"]
    text = voxtrio_cli("transcript", "--db", db, "--session-id", "call-1", cwd=cwd, timeout=30)
    assert text.returncode == 0, text.stderr
    assert 'user: "loopback utterance 1"' in text.stdout
    assert 'assistant: "Hello from the loopback provider."' in text.stdout
    as_json = voxtrio_cli(
        "transcript", "--db", db, "--session-id", "call-1", "--format", "json", cwd=cwd, timeout=30
    )
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records[0]["type"] == "UserItem"
    assert records[0]["text"] == "loopback utterance 1"
    assert "AssistantItem" in {r["type"] for r in records}
    missing = voxtrio_cli("transcript", "--db", db, "--session-id", "nope", cwd=cwd, timeout=30)
    assert "nope" in assert_one_line_error(missing, 1)


def test_run_json_prints_one_object_per_event_and_a_summary(tmp_path: Path) -> None:
    result = voxtrio_cli("run", WAV, "--fast", "--json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    types = [r["type"] for r in records]
    assert types[0] == "start"
    assert types[-1] == "summary"
    for kind in (
        "SessionConnected",
        "SpeechStarted",
        "SpeechStopped",
        "InputTranscriptionCompleted",
        "ReplyTextDone",
        "ReplyDone",
        "ReplyPlayed",
    ):
        assert kind in types
    assert all("pcm" not in r for r in records)
    assert [r["t_s"] for r in records[1:-1]] == sorted(r["t_s"] for r in records[1:-1])
    summary = records[-1]
    assert summary["exit_code"] == 0
    assert summary["audio_sent_s"] == pytest.approx(summary["frames_sent"] * 0.020)
    assert summary["audio_sent_s"] >= summary["input_audio_s"]
    assert summary["reply_audio_s"] == pytest.approx(0.4)
    assert summary["dropped_frames"] == 0
    assert summary["reconnects"] == 0
    [latency] = summary["turn_latency_ms"]
    assert latency is not None
    assert latency >= 0
    # From the runtime's TurnMetrics, not measured by the CLI.
    assert "TurnMetrics" in summary["turn_latency_source"]
    [turn] = summary["turns"]
    assert turn["speech_to_played_ms"] == latency
    assert turn["speech_to_first_audio_ms"] is not None
    assert turn["first_audio_to_played_ms"] is not None
    assert turn["speech_to_played_ms"] == pytest.approx(
        turn["speech_to_first_audio_ms"] + turn["first_audio_to_played_ms"], abs=0.2
    )
    assert summary["turn_latency_p50_ms"] == latency  # one turn: its own median
    assert (tmp_path / "o" / "reply.wav").exists()


def write_8bit_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16_000)
        w.writeframes(bytes([128]) * 1_600)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "no such file"),
        ("not_wav", "not a WAV file"),
        ("eight_bit", "8-bit"),
        ("openai_without_key", "OPENAI_API_KEY"),
        ("gemini_without_key", "GEMINI_API_KEY or GOOGLE_API_KEY"),
        ("base_url_on_a_loopback", "--base-url is for"),
        ("bad_option", "--no-such-option"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, case: str, needle: str) -> None:
    (tmp_path / "notes.wav").write_text("these are not samples\n" * 4)
    write_8bit_wav(tmp_path / "8bit.wav")
    args = {
        "missing": ["run", "missing.wav"],
        "not_wav": ["run", "notes.wav"],
        "eight_bit": ["run", "8bit.wav"],
        "openai_without_key": ["run", WAV, "--provider", "openai"],
        "gemini_without_key": ["run", WAV, "--provider", "gemini"],
        "base_url_on_a_loopback": ["run", WAV, "--provider", "gemini-loopback",
                                   "--base-url", "ws://127.0.0.1:9"],
        "bad_option": ["run", WAV, "--no-such-option"],
    }[case]
    line = assert_one_line_error(voxtrio_cli(*args, cwd=tmp_path, timeout=30), 2)
    assert needle in line
    assert not (tmp_path / "out" / "transcript.sqlite3").exists()


def test_an_unreachable_provider_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env(OPENAI_API_KEY="sk-unreachable-test-key")
    result = voxtrio_cli(
        "run", WAV, "--fast", "--base-url", f"ws://127.0.0.1:{port}", "--max-attempts", "2",
        cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    line = assert_one_line_error(result, 1)
    assert "giving up" in line
    assert "sk-unreachable-test-key" not in result.stdout + result.stderr


async def test_a_rejected_key_exits_1_with_one_line(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_openai_loopback(api_key="the-right-key") as server:
            result = await trio.run_process(
                [sys.executable, "-m", "voxtrio", "run", WAV, "--fast", "--provider", "openai",
                 "--base-url", server.url],
                cwd=tmp_path,
                env=cli_env(OPENAI_API_KEY="sk-the-wrong-key"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )  # fmt: skip
    completed = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )
    line = assert_one_line_error(completed, 1)
    assert "401" in line
    assert "sk-the-wrong-key" not in completed.stdout + completed.stderr


def test_gemini_loopback_runs_the_file_through_a_gemini_session(tmp_path: Path) -> None:
    result = voxtrio_cli("run", WAV, "--fast", "--provider", "gemini-loopback", "--json",
                         "--session-id", "gem-1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["provider"] == "gemini-loopback"
    assert summary["exit_code"] == 0
    assert summary["errors"] == 0
    # Gemini takes 16 kHz; every captured second went out, in 20 ms frames.
    assert summary["captured_audio_s"] == summary["input_audio_s"]
    assert summary["audio_sent_s"] >= summary["input_audio_s"]
    # The loopback heard one utterance and answered it, as the OpenAI one does.
    heard = [r["transcript"] for r in records if r["type"] == "InputTranscriptionCompleted"]
    assert heard == ["loopback utterance 1"]
    said = [r["text"] for r in records if r["type"] == "ReplyTextDone"]
    assert said == ["Hello from the loopback provider."]
    assert [r["status"] for r in records if r["type"] == "ReplyDone"] == ["completed"]
    assert summary["reply_audio_s"] == 0.4
    # One TurnMetrics for the one turn, measured from the end of the user's turn
    # (the Gemini codec's SpeechStopped, which comes before the reply's first audio).
    assert [r["type"] for r in records].count("SpeechStopped") == 1
    [turn] = summary["turns"]
    assert turn["speech_to_first_audio_ms"] is not None
    assert turn["speech_to_first_audio_ms"] >= 0
    assert turn["speech_to_played_ms"] >= turn["speech_to_first_audio_ms"]
    assert summary["turn_latency_p50_ms"] == turn["speech_to_played_ms"]
    with voxtrio.SqliteTranscriptStore(tmp_path / "out" / "transcript.sqlite3") as store:
        items = [i for i in store.items("gem-1") if isinstance(i, UserItem | AssistantItem)]
    assert [(type(i), i.text) for i in items] == [
        (UserItem, "loopback utterance 1"),
        (AssistantItem, "Hello from the loopback provider."),
    ]
    # And without --json, the lines a user reads.
    plain = voxtrio_cli("run", WAV, "--fast", "--provider", "gemini-loopback", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.count("user said: ") == 1
    assert USER_LINE in plain.stdout
    assert plain.stdout.count("assistant said: ") == 1
    assert ASSISTANT_LINE in plain.stdout
    assert re.search(r"turn latency  turn 1: \d+ ms", plain.stdout)


def test_gemini_loopback_paces_its_reply_with_realtime(tmp_path: Path) -> None:
    result = voxtrio_cli("run", WAV, "--realtime", "--provider", "gemini-loopback", "--json",
                         "--linger", "0.5", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    summary = records[-1]
    reply_s = summary["reply_audio_s"]
    assert reply_s == pytest.approx(0.4)
    # The first reply chunk comes with ReplyStarted, the last with ReplyAudioDone
    # (generationComplete); paced, they are the reply's length less one chunk apart
    # (0.3 s of 0.4 s here), unpaced a few milliseconds.
    [started] = [r["t_s"] for r in records if r["type"] == "ReplyStarted"]
    [audio_done] = [r["t_s"] for r in records if r["type"] == "ReplyAudioDone"]
    assert audio_done - started >= 0.5 * reply_s
    # turnComplete (ReplyDone) waits until the last chunk would have played.
    [done] = [r["t_s"] for r in records if r["type"] == "ReplyDone"]
    assert done >= audio_done


async def test_gemini_with_a_key_talks_to_the_given_url(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_gemini_loopback(api_key="gm-test-key") as server:
            result = await trio.run_process(
                [sys.executable, "-m", "voxtrio", "run", WAV, "--fast", "--provider", "gemini",
                 "--base-url", server.url, "--linger", "0.2"],
                cwd=tmp_path,
                env=cli_env(GEMINI_API_KEY="gm-test-key"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr.decode()
            service = server.connections[0].service
            assert service.setup is not None
            assert service.setup["model"] == "models/gemini-live-2.5-flash-preview"
            # The whole file reached the server, as 16 kHz mono.
            received_s = len(service.connection_audio) / 16_000
            assert received_s == pytest.approx(3.44, abs=0.03)
    assert b"gm-test-key" not in result.stdout + result.stderr


async def run_until_the_user_line(
    cmd: list[str], cwd: Path
) -> tuple[trio.Process, bytes]:
    """Start ``cmd`` and read its output until the user's words are printed: the
    session is then up and has a stored turn."""
    proc = await trio.lowlevel.open_process(
        cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    seen = b""
    while USER_LINE.encode() not in seen:
        chunk = await proc.stdout.receive_some()
        assert chunk, seen
        seen += chunk
    return proc, seen


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
async def test_ctrl_c_ends_a_realtime_run_cleanly(tmp_path: Path) -> None:
    # --linger 60: left alone the run would wait a minute after the reply, so ending
    # within the guard below is the interrupt's doing.
    cmd = [sys.executable, "-m", "voxtrio", "run", WAV, "--realtime", "--linger", "60",
           "--session-id", "live", "--db", "live.sqlite3"]  # fmt: skip
    with trio.fail_after(60):
        proc, seen = await run_until_the_user_line(cmd, tmp_path)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            async for chunk in proc.stdout:
                seen += chunk
            errors = b"".join([chunk async for chunk in proc.stderr])
            code = await proc.wait()
    out = seen.decode()
    assert code == 130, (out, errors)
    assert "Traceback" not in out + errors.decode()
    assert "interrupted: the session was closed early" in out
    # What was seen before Ctrl-C was flushed to the store.
    with voxtrio.SqliteTranscriptStore(tmp_path / "live.sqlite3") as store:
        users = [i for i in store.items("live") if isinstance(i, UserItem)]
    assert [u.text for u in users] == ["loopback utterance 1"]


@pytest.mark.skipif(sys.platform == "win32", reason="a pipe's reader going away is POSIX")
async def test_a_closed_stdout_ends_the_run_quietly_and_keeps_the_transcript(
    tmp_path: Path,
) -> None:
    # --linger 60, as for Ctrl-C: ending within the guard is the closed pipe's doing.
    cmd = [sys.executable, "-m", "voxtrio", "run", WAV, "--realtime", "--linger", "60",
           "--session-id", "piped", "--db", "piped.sqlite3"]  # fmt: skip
    with trio.fail_after(60):
        proc, seen = await run_until_the_user_line(cmd, tmp_path)
        assert proc.stdout is not None
        assert proc.stderr is not None
        await proc.stdout.aclose()  # the reader is done (as `head` exits)
        with trio.fail_after(15):
            errors = b"".join([chunk async for chunk in proc.stderr])
            code = await proc.wait()
    assert code == 141, (seen, errors)  # 128 + SIGPIPE, as a shell reports `yes | head`
    assert errors == b""  # no traceback, no "Exception ignored" at exit
    # The session was closed cleanly: what was seen is in the store.
    with voxtrio.SqliteTranscriptStore(tmp_path / "piped.sqlite3") as store:
        users = [i for i in store.items("piped") if isinstance(i, UserItem)]
    assert [u.text for u in users] == ["loopback utterance 1"]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell")
def test_run_piped_into_head_prints_its_lines_and_no_traceback(tmp_path: Path) -> None:
    script = (f'"{sys.executable}" -m voxtrio run "{WAV}" --realtime --linger 60 | head -3; '
              'exit "${PIPESTATUS[0]}"')  # fmt: skip
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert len(result.stdout.splitlines()) == 3
    assert "connected to openai" in result.stdout
    assert result.stderr == ""
    assert result.returncode == 141


@pytest.mark.long  # a minute or more on the 2-core machine
def test_bench_quick_runs_the_benchmarks(tmp_path: Path) -> None:
    result = voxtrio_cli("bench", "--quick", "--json", str(tmp_path / "b.json"), cwd=tmp_path,
                         timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== codecs (quick)" in result.stdout
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["exit_code"] == 0
    assert record["quick"] is True
    assert "== codecs (quick)" in record["output"]


def test_the_bench_test_is_marked_long_in_place() -> None:
    # Marked where it is defined, not from a list of node ids in conftest.py.
    marks = getattr(test_bench_quick_runs_the_benchmarks, "pytestmark", [])
    assert "long" in [m.name for m in marks]
    assert "LONG_ELSEWHERE" not in (ROOT / "tests" / "conftest.py").read_text()


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = voxtrio_cli("--help", cwd=tmp_path, timeout=30)
    assert result.returncode == 0
    for command in ("run", "transcript", "bench"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M)


def test_event_records_summarise_audio_and_never_carry_it() -> None:
    audio = voxtrio.ReplyAudio(np.ones((480, 1), np.int16), 24_000, "r1", "i1")
    record = event_record(audio, 1.25)
    assert record == {
        "type": "ReplyAudio", "t_s": 1.25, "samples": 480, "sample_rate": 24_000,
        "response_id": "r1", "item_id": "i1", "encoding": "pcm16",
    }  # fmt: skip
    json.dumps(record)


def busy(tally: Tally) -> bool:
    """``tally.busy``, read afresh (mypy would keep a narrowed property otherwise)."""
    return tally.busy


def test_tally_keeps_the_runtimes_turn_metrics_and_knows_when_a_turn_is_open() -> None:
    tally = Tally()
    tally.feed(voxtrio.SpeechStarted(), 1.0)
    assert busy(tally)
    tally.feed(voxtrio.SpeechStopped(), 2.0)
    assert busy(tally)  # a reply is awaited
    tally.audio_out(2_400, 24_000, 2.25)
    assert not busy(tally)  # the reply began (its audio reached the output)
    tally.feed(voxtrio.ReplyTextDelta("hi"), 2.5)
    assert tally.reply_s == pytest.approx(0.1)
    metrics = voxtrio.TurnMetrics("r", 0.2, 0.05, 0.25, 100)
    tally.feed(metrics, 2.55)
    assert tally.turns == [metrics]
    tally.feed(voxtrio.ReplyStarted("r"), 2.6)
    assert busy(tally)
    tally.feed(voxtrio.ReplyPlayed("r", 100), 3.0)
    assert not busy(tally)
    tally.feed(voxtrio.ErrorEvent("gone", code="connection_failed", recoverable=False), 4.0)
    assert tally.failure == "gone"
