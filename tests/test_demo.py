"""The README's main job runs: a full session against the loopback provider."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

import voxtrio
from examples import demo
from voxtrio.codecs import AudioFormat
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.transcript import AssistantItem, UserItem
from voxtrio.testing import OpenAILoopback, open_openai_loopback

from .loopback_helpers import check_server

DEMO_WAV = str(resources.files("voxtrio.data") / "hello_48k_stereo.wav")
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


async def test_the_demo_session_runs_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers: list[OpenAILoopback] = []

    @asynccontextmanager
    async def recording_loopback(**kwargs: Any) -> AsyncIterator[OpenAILoopback]:
        async with open_openai_loopback(**kwargs) as server:
            servers.append(server)
            yield server

    monkeypatch.setattr(demo, "open_openai_loopback", recording_loopback)
    with trio.fail_after(60):
        code = await demo.run_demo(tmp_path, realtime=False)
    # Everything the demo's session sent validated against openai's own models.
    check_server(servers[0])
    want = convert_oneshot(*voxtrio.read_wav(DEMO_WAV), AudioFormat(24_000))
    got = servers[0].all_audio()
    assert np.array_equal(got[: len(want)], want)
    assert not got[len(want) :].any()  # the end of input's trailing silence (server VAD)
    assert code == 0
    with voxtrio.SqliteTranscriptStore(tmp_path / "transcript.sqlite3") as store:
        items = store.items("demo-call")
    users = [i for i in items if isinstance(i, UserItem)]
    assistants = [i for i in items if isinstance(i, AssistantItem)]
    assert users
    assert users[0].text == "hello, this is the voxtrio demo"
    assert assistants
    assert assistants[0].text == "Hello from the loopback provider."
    # The demo hangs up at ReplyPlayed: the whole reply (400 ms of tone at the
    # provider's 24 kHz) is in the WAV by then.
    reply, fmt = voxtrio.read_wav(tmp_path / "reply.wav")
    assert fmt == voxtrio.AudioFormat(24_000)
    assert reply.shape == (9_600, 1)
    assert np.abs(reply.astype(np.int32)).max() > 1_000  # a tone, not silence


def test_describe_prints_the_events_that_matter() -> None:
    line = demo.describe(voxtrio.InputTranscriptionCompleted("item_1", "hi there"))
    assert line is not None
    assert "item_1" in line
    assert "hi there" in line
    assert demo.describe(voxtrio.ErrorEvent("boom", code="x")) == "error [x]: boom"
    assert demo.describe(voxtrio.SubscriberLagged(3)) is None


def test_the_readme_example_names_real_api() -> None:
    """Every ``voxtrio.X`` the README's example uses exists, and the example compiles."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        tree = ast.parse(block)
        used = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "voxtrio"
        }
        assert used
        missing = sorted(name for name in used if not hasattr(voxtrio, name))
        assert missing == []


async def test_the_readme_testing_example_runs() -> None:
    """The README's example of testing an app against the loopback server runs as
    written (with the bundled recording standing in for the caller's)."""
    [block] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "loopback" in b]
    assert '"caller.wav"' in block
    namespace: dict[str, Any] = {}
    exec(block.replace('"caller.wav"', repr(DEMO_WAV)), namespace)
    with trio.fail_after(60):
        await namespace["test_my_app_hears_the_caller"]()
