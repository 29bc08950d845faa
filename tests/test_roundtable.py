"""``roundtable``: panelists over loopback HTTP, context sharing, failures, fairness."""

from __future__ import annotations

import asyncio
import io
import itertools
import string
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from reactivex import Observable
from reactivex import operators as rx_ops

import rxllm
from rxllm.errors import ConfigError, StreamInterrupted
from rxllm.events import Event, TextDelta
from rxllm.request import Request
from rxllm.response import Response
from rxllm.roundtable import (
    PanelDelta,
    Panelist,
    PanelistFailed,
    RoundFinished,
    RoundtableEvent,
    RoundtableFinished,
    Transcript,
    Turn,
    TurnFinished,
    TurnStarted,
    TurnTimeout,
    context_messages,
    pick_speaker,
    roundtable,
)
from rxllm.sim import Simulator

SCRIPT = "Streams need backpressure because producers outrun consumers sooner or later."


def panelist(sim: Simulator, dialect: str, model: str, **scenario: Any) -> rxllm.Provider:
    """A provider of ``dialect`` on the simulator, with ``scenario`` fields in its header."""
    headers = {"x-rxllm-sim": orjson.dumps(scenario).decode()} if scenario else None
    return rxllm.provider(
        f"{dialect}/{model}", base_url=sim.base_url(dialect), api_key="sim", headers=headers
    )


async def run(
    table: Observable[RoundtableEvent], *, lag: float = 0.0, **kwargs: Any
) -> list[RoundtableEvent]:
    """Every event of ``table``, read through ``to_aiter`` (sleeping ``lag`` s after each)."""
    events = []
    async for event in rxllm.to_aiter(table, **kwargs):
        events.append(event)
        if lag:
            await asyncio.sleep(lag)
    return events


def assert_well_formed(events: list[RoundtableEvent]) -> None:
    """Each turn is TurnStarted, its deltas, then one end; rounds close after their turns."""
    open_turns: set[tuple[str, int]] = set()
    ended: set[tuple[str, int]] = set()
    closed_rounds: list[int] = []
    for event in events:
        match event:
            case TurnStarted(panelist=who, round=r):
                assert closed_rounds == list(range(1, r))
                open_turns.add((who, r))
            case PanelDelta(panelist=who, round=r):
                assert (who, r) in open_turns
            case TurnFinished(panelist=who, round=r) | PanelistFailed(panelist=who, round=r):
                open_turns.remove((who, r))
                ended.add((who, r))
            case RoundFinished(round=r, turns=turns):
                assert not open_turns
                assert {(t.panelist, t.round) for t in turns} == {k for k in ended if k[1] == r}
                closed_rounds.append(r)
            case RoundtableFinished():
                assert event is events[-1]


def of_type(events: list[RoundtableEvent], kind: type) -> list[Any]:
    """The events of one type."""
    return [e for e in events if isinstance(e, kind)]


def words(prefix: str, n: int) -> list[str]:
    """``n`` distinct letter-only words starting with ``prefix`` (one simulator token each)."""
    pairs = itertools.product(string.ascii_lowercase, repeat=2)
    return [prefix + a + b for a, b in itertools.islice(pairs, n)]


class Stamped:
    """Wraps a provider and records each event, and when each word entered the roundtable."""

    def __init__(
        self,
        provider: rxllm.Provider,
        log: list[Event],
        produced: dict[str, float] | None = None,
    ) -> None:
        self.provider = provider
        self.log = log
        self.produced = produced if produced is not None else {}

    def stream(self, request: Request) -> Observable[Event]:
        """The provider's stream, each event logged as it arrives."""

        def note(event: Event) -> None:
            self.log.append(event)
            if isinstance(event, TextDelta):
                now = time.monotonic()
                for word in event.text.split():
                    self.produced[word] = now

        return self.provider.stream(request).pipe(rx_ops.do_action(note))


@pytest.mark.rxllm_sim(default={"text": SCRIPT, "tokens_per_second": 400})
async def test_a_panelist_dropping_mid_turn_is_marked_failed_and_the_table_completes(
    rxllm_sim: Simulator,
) -> None:
    """Three dialects, one connection dropped mid-turn: partial text kept, the rest goes on."""
    panel = {
        "ada": Panelist(panelist(rxllm_sim, "openai", "ada"), "An engineer."),
        "bo": Panelist(panelist(rxllm_sim, "anthropic", "bo", drop_after_bytes=900), "A skeptic."),
        "cy": Panelist(panelist(rxllm_sim, "gemini", "cy"), "A historian."),
    }
    table = roundtable(panel, "Do streams need backpressure?", rounds=2)
    events = await run(table, window=1, lag=0.002)  # lags: deltas are merged round-robin
    assert_well_formed(events)

    failed = of_type(events, PanelistFailed)
    assert [(f.panelist, f.round) for f in failed] == [("bo", 1)]
    assert isinstance(failed[0].error, StreamInterrupted)
    partial = failed[0].partial.text
    assert partial
    assert SCRIPT.startswith(partial)
    assert partial != SCRIPT
    shown = "".join(
        e.event.text
        for e in events
        if isinstance(e, PanelDelta) and e.panelist == "bo" and isinstance(e.event, TextDelta)
    )
    assert shown == partial
    finished = {(f.panelist, f.round) for f in of_type(events, TurnFinished)}
    assert finished == {("ada", 1), ("cy", 1), ("ada", 2), ("cy", 2)}
    assert [r.round for r in of_type(events, RoundFinished)] == [1, 2]
    last = events[-1]
    assert isinstance(last, RoundtableFinished)
    assert last.reason == "rounds"
    assert last.round == 2
    (bo_turn,) = last.transcript.by("bo")
    assert bo_turn.failed
    assert bo_turn.text == partial
    assert rxllm_sim.stats.count("anthropic", "bo") == 1  # skipped in round 2
    # Round 2 heard bo's partial words, marked as interrupted.
    ada_2 = next(
        e for e in events if isinstance(e, TurnStarted) and e.panelist == "ada" and e.round == 2
    )
    assert f"bo (interrupted): {partial}" in (ada_2.request.messages[-1].content or "")


@pytest.mark.rxllm_sim(default={"echo": True, "tokens_per_second": 2000})
async def test_in_turns_mode_each_request_carries_what_the_earlier_speakers_said(
    rxllm_sim: Simulator,
) -> None:
    """Each speaker's request, as the simulator read it back, holds the earlier turns."""
    panel = {
        "ada": Panelist(panelist(rxllm_sim, "openai", "ada"), "An engineer."),
        "bo": Panelist(panelist(rxllm_sim, "anthropic", "bo"), "A skeptic."),
        "cy": Panelist(panelist(rxllm_sim, "gemini", "cy"), "A historian."),
    }
    topic = "Is streaming worth it?"
    events = await run(roundtable(panel, topic, rounds=2, mode="turns"))
    assert_well_formed(events)

    said = {(f.panelist, f.round): f.response.text for f in of_type(events, TurnFinished)}
    order = [(s.panelist, s.round) for s in of_type(events, TurnStarted)]
    assert order == [("ada", 1), ("bo", 1), ("cy", 1), ("ada", 2), ("bo", 2), ("cy", 2)]
    # The echo is the last user message each simulator endpoint parsed from the body.
    assert said["ada", 1] == topic
    assert said["bo", 1] == f"{topic}\n\nada: {said['ada', 1]}"
    assert said["cy", 1] == f"{topic}\n\nada: {said['ada', 1]}\n\nbo: {said['bo', 1]}"
    assert said["ada", 2] == f"bo: {said['bo', 1]}\n\ncy: {said['cy', 1]}"
    assert said["cy", 2] == f"ada: {said['ada', 2]}\n\nbo: {said['bo', 2]}"
    # Roles: persona as system, the topic first, one's own turns as assistant messages.
    cy_2 = next(s for s in of_type(events, TurnStarted) if s.panelist == "cy" and s.round == 2)
    roles = [m.role for m in cy_2.request.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert (cy_2.request.messages[0].content or "").startswith("A historian.")
    assert cy_2.request.messages[2].content == said["cy", 1]
    assert cy_2.request.metadata["roundtable"] == {"panelist": "cy", "round": 2}


@pytest.mark.rxllm_sim(default={"text": SCRIPT, "tokens_per_second": 400})
async def test_a_turn_over_its_timeout_fails_with_its_partial_text_and_the_table_goes_on(
    rxllm_sim: Simulator,
) -> None:
    """A stalled panelist times out: its request is closed, the others keep talking."""
    panel = {
        "ada": panelist(rxllm_sim, "openai", "ada"),
        "bo": panelist(rxllm_sim, "ollama", "bo", stall_after_tokens=3),
        "cy": panelist(rxllm_sim, "anthropic", "cy"),
    }
    events = await run(roundtable(panel, "Timeouts?", rounds=2, turn_timeout=0.5), window=1)
    assert_well_formed(events)

    (failed,) = of_type(events, PanelistFailed)
    assert failed.panelist == "bo"
    assert failed.round == 1
    assert isinstance(failed.error, TurnTimeout)
    assert isinstance(failed.error, TimeoutError)
    assert failed.error.timeout == 0.5
    assert failed.error.panelist == "bo"
    assert failed.partial.text == "".join(rxllm.sim.tokenize(SCRIPT)[:3])
    assert {(f.panelist, f.round) for f in of_type(events, TurnFinished)} == {
        ("ada", 1),
        ("cy", 1),
        ("ada", 2),
        ("cy", 2),
    }
    assert isinstance(events[-1], RoundtableFinished)
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=2.0)


FAST = words("a", 300)
SLOW = words("b", 30)


@pytest.mark.rxllm_sim(
    scenarios={
        "fast": {"text": " ".join(FAST), "tokens_per_second": 300},
        "slow": {"text": " ".join(SLOW), "tokens_per_second": 30},
    }
)
async def test_a_lagging_consumer_gets_the_panelists_round_robin(rxllm_sim: Simulator) -> None:
    """A is 10x faster than B and the consumer lags: B waits at most about one cycle."""
    log: list[Event] = []
    produced: dict[str, float] = {}
    panel = {
        "A": Stamped(panelist(rxllm_sim, "openai", "fast"), log, produced),
        "B": Stamped(panelist(rxllm_sim, "anthropic", "slow"), log, produced),
    }
    delays: dict[str, list[float]] = {"A": [], "B": []}
    heard: dict[str, list[str]] = {"A": [], "B": []}
    merged = 0
    table = roundtable(panel, "Go.", rounds=1, instructions=None)
    seen: list[RoundtableEvent] = []
    async for event in rxllm.to_aiter(table, window=1):
        seen.append(event)
        if isinstance(event, PanelDelta) and isinstance(event.event, TextDelta):
            now = time.monotonic()
            got = event.event.text.split()
            merged += len(got) > 1
            heard[event.panelist] += got
            delays[event.panelist] += [now - produced[w] for w in got]
            await asyncio.sleep(0.01)  # the consumer drains ~100 items/s; A makes 300/s
    assert heard == {"A": FAST, "B": SLOW}  # lossless and in order
    assert_well_formed(seen)
    assert merged > 10  # the consumer did lag: A's backlog was merged
    # One cycle is an item of A and one of B (~10 ms each); allow generously for CI.
    assert max(delays["B"]) < 0.3, max(delays["B"])


@pytest.mark.parametrize("sink", ["to_aiter", "subscribe"])
@pytest.mark.rxllm_sim(default={"text": SCRIPT, "tokens_per_second": 300})
async def test_a_consumer_that_keeps_up_gets_every_token_at_once_in_arrival_order(
    rxllm_sim: Simulator, sink: str
) -> None:
    """Keeping up (or no demand-aware sink): every event passes as itself, as it arrived."""
    log: list[Event] = []
    panel = {
        "A": Stamped(panelist(rxllm_sim, "openai", "ada"), log),
        "B": Stamped(panelist(rxllm_sim, "gemini", "bo"), log),
    }
    table = roundtable(panel, "Go.", rounds=1)
    if sink == "to_aiter":
        events = await run(table)
    else:
        events = []
        done = asyncio.get_running_loop().create_future()
        table.subscribe(events.append, done.set_exception, lambda: done.set_result(None))
        await done
    deltas = [e.event for e in of_type(events, PanelDelta)]
    assert len(deltas) == len(log)
    assert all(got is sent for got, sent in zip(deltas, log, strict=True))
    assert isinstance(events[-1], RoundtableFinished)


@pytest.mark.rxllm_sim(default={"text": "Fine.", "tokens_per_second": 1000})
async def test_a_moderator_function_picks_the_speakers_and_ends_the_table(
    rxllm_sim: Simulator,
) -> None:
    """Turns mode: the moderator's choices speak; its None ends the table early."""
    panel = {n: panelist(rxllm_sim, "openai", n) for n in ("ada", "bo", "cy")}
    asked: list[tuple[int, int]] = []
    picks = iter(["cy", "ada", None])

    def moderator(transcript: Transcript, round: int) -> str | None:
        asked.append((len(transcript.turns), round))
        return next(picks)

    events = await run(roundtable(panel, "Who?", rounds=3, mode="turns", moderator=moderator))
    assert [s.panelist for s in of_type(events, TurnStarted)] == ["cy", "ada"]
    assert asked == [(0, 1), (1, 1), (2, 1)]
    (round_1,) = of_type(events, RoundFinished)
    assert [t.panelist for t in round_1.turns] == ["cy", "ada"]
    last = events[-1]
    assert isinstance(last, RoundtableFinished)
    assert (last.reason, last.round, len(last.transcript.turns)) == ("moderator", 1, 2)
    assert rxllm_sim.stats.count(model="bo") == 0

    # Parallel mode: asked before each round; None after the first round ends the table.
    events = await run(
        roundtable(panel, "Who?", rounds=3, moderator=lambda t, r: "ada" if r == 1 else None)
    )
    assert [r.round for r in of_type(events, RoundFinished)] == [1]
    assert len(of_type(events, TurnFinished)) == 3

    with pytest.raises(ConfigError, match="not on the panel"):
        await run(roundtable(panel, "Who?", mode="turns", moderator=lambda t, r: "zed"))


@pytest.mark.rxllm_sim(
    scenarios={"mod": {"text": "I would hand the floor to Bo now."}},
    default={"text": "Fine.", "tokens_per_second": 1000},
)
async def test_a_model_moderator_names_the_next_speaker(rxllm_sim: Simulator) -> None:
    """A provider moderator is prompted with the transcript and its reply picks the speaker."""
    panel = {n: panelist(rxllm_sim, "anthropic", n) for n in ("ada", "bo")}
    moderator = panelist(rxllm_sim, "openai", "mod")
    events = await run(roundtable(panel, "Who?", rounds=1, mode="turns", moderator=moderator))
    assert [s.panelist for s in of_type(events, TurnStarted)] == ["bo", "bo"]
    assert rxllm_sim.stats.count("openai", "mod") == 2
    assert isinstance(events[-1], RoundtableFinished)


@pytest.mark.rxllm_sim(default={"tokens": 500, "tokens_per_second": 20})
async def test_disposing_the_roundtable_closes_every_request(rxllm_sim: Simulator) -> None:
    """Leaving the loop mid-round disconnects every panelist from the simulator."""
    panel = {
        "ada": panelist(rxllm_sim, "openai", "ada"),
        "bo": panelist(rxllm_sim, "anthropic", "bo"),
        "cy": panelist(rxllm_sim, "gemini", "cy"),
    }
    spoke: set[str] = set()
    async for event in rxllm.to_aiter(roundtable(panel, "Talk.", rounds=2), window=1):
        if isinstance(event, PanelDelta) and isinstance(event.event, TextDelta):
            spoke.add(event.panelist)
            if len(spoke) == 3:
                break
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 3, within=3.0)
    assert rxllm_sim.stats.requests == 3


def test_context_messages_map_turns_to_the_roles_each_speaker_expects() -> None:
    """Own turns are assistant messages; others' are named user paragraphs; a cue closes."""

    def turn(who: str, text: str, error: Exception | None = None) -> Turn:
        return Turn(panelist=who, round=1, response=Response(text=text), error=error)

    turns = [turn("a", "A1"), turn("b", "B1", error=TimeoutError()), turn("c", "")]
    messages = context_messages("a", "T", turns, persona="P", instructions=None)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "P"),
        ("user", "T"),
        ("assistant", "A1"),
        ("user", "b (interrupted): B1"),
    ]
    messages = context_messages("b", "T", [turn("a", "A1"), turn("b", "B1")], instructions=None)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "T\n\na: A1"),
        ("assistant", "B1"),
        ("user", "b, please continue."),
    ]
    assert pick_speaker("Next: BO. Then Ada", ["ada", "bo"]) == "bo"
    assert pick_speaker("END - thanks ada", ["ada"]) is None
    assert pick_speaker("nobody", ["ada"]) is None


def test_bad_arguments_raise_config_errors() -> None:
    """Empty panels, topics, rounds and timeouts are refused before anything is sent."""
    p = rxllm.provider("openai/x", base_url="http://127.0.0.1:9", api_key="k")
    bad: list[Callable[[], object]] = [
        lambda: roundtable({}, "T"),
        lambda: roundtable({"a": p}, " "),
        lambda: roundtable({"a": p}, "T", rounds=0),
        lambda: roundtable({"a": p}, "T", turn_timeout=0),
        lambda: roundtable({"a": p}, "T", mode="chaos"),  # type: ignore[arg-type]
        lambda: roundtable({"a": object()}, "T"),  # type: ignore[dict-item]
    ]
    for make in bad:
        with pytest.raises(ConfigError):
            make()


async def test_the_demo_roundtable_prints_three_panelists() -> None:
    """``rxllm demo``'s roundtable section streams three simulated panelists."""
    from rxllm._demo import _roundtable_demo, _Style
    from rxllm.sim import serve

    out = io.StringIO()
    async with serve() as sim:
        await _roundtable_demo(sim, out, _Style(False))
    text = out.getvalue()
    for name in ("Ada", "Bo", "Cy"):
        assert name in text
    assert "failed" in text
