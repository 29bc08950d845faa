"""``roundtable``: several panelists discuss a topic, streamed as one tagged event stream.

::

    table = rxllm.roundtable(
        {
            "Ada": Panelist(rxllm.provider("openai/gpt-4o-mini"), "You are a pragmatic engineer."),
            "Bo": Panelist(rxllm.provider("anthropic/claude-haiku-4-5"), "You are a skeptic."),
        },
        "Should every API stream?",
        rounds=2,
        mode="turns",
        turn_timeout=60.0,
    )
    async for event in rxllm.to_aiter(table, window=1):
        match event:
            case PanelDelta(panelist=who, event=TextDelta(text=t)):
                print(t, end="")
            case PanelistFailed(panelist=who, error=e):
                print(f"[{who} failed: {e}]")

A *panelist* is a provider (anything with ``stream(request) -> Observable[Event]``: a
``Provider``, a ``Chain``) and a persona. Each round every panelist still in the table
speaks once: all at once (``mode="parallel"``, each seeing the previous rounds) or one
after another (``mode="turns"``, each seeing everything said so far). What a panelist sees
is built by ``context_messages`` (persona as the system message, the topic as the first
user message, its own earlier turns as ``assistant`` messages, the others' turns as ``user``
messages prefixed with their names).

Events form a closed union (``RoundtableEvent``) of frozen, slotted, keyword-only
dataclasses, each carrying ``panelist`` (``None`` for table-level events) and ``round``
(from 1)::

    TurnStarted  PanelDelta*  (TurnFinished | PanelistFailed)   per turn
    RoundFinished                                               per round
    RoundtableFinished                                          once, then completion

A panelist that fails or exceeds ``turn_timeout`` is reported with ``PanelistFailed`` (its
partial answer kept) and the table goes on without it (``skip_failed``). With a
demand-aware sink (``rxllm.to_aiter``, the SSE gateway) parallel output is merged
token-fairly: while the consumer lags, queued text is merged per panelist and handed over
round-robin, so a fast panelist cannot starve a slow one (``rxllm._roundtable_fair``).
Disposing the subscription closes every panelist's (and the moderator's) request.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from ._roundtable_fair import FairMerge, Merge, PassThrough
from ._valve import current_valve, valve_scope
from .aio import scheduler_for
from .errors import ConfigError, StreamInterrupted, TurnTimeout
from .events import Event, ReasoningDelta, TextDelta
from .request import Message, Request
from .response import Accumulator, Response

__all__ = [
    "DEFAULT_CUE",
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_PENDING",
    "MODERATOR_PROMPT",
    "Mode",
    "ModeratorFn",
    "PanelDelta",
    "Panelist",
    "PanelistFailed",
    "RoundFinished",
    "RoundtableEvent",
    "RoundtableFinished",
    "Streamer",
    "Transcript",
    "Turn",
    "TurnFinished",
    "TurnStarted",
    "TurnTimeout",
    "context_messages",
    "moderator_messages",
    "pick_speaker",
    "roundtable",
]

Mode: TypeAlias = Literal["parallel", "turns"]

DEFAULT_MAX_PENDING = 256
"""Entries (a merged text run counts as one) a panelist's lane holds before its socket pauses."""

DEFAULT_MAX_CHARS = 65_536
"""The longest merged text delta handed to a lagging consumer; a longer run starts anew."""

DEFAULT_INSTRUCTIONS: Final = (
    "You are {name}, a panelist in a roundtable discussion. The other panelists' words "
    "reach you prefixed with their names. Speak as {name} only, without a name prefix."
)
"""Appended to each panelist's persona in its system message; ``{name}``, ``{others}``
(the other panelists, comma-separated) and ``{topic}`` are filled in."""

DEFAULT_CUE: Final = "{name}, please continue."
"""The user message sent when a panelist's context would otherwise end with its own turn."""

MODERATOR_PROMPT: Final = (
    "You moderate a roundtable discussion on: {topic}\n"
    "The panelists are: {names}.\n"
    "Read the discussion so far and answer with only the name of the panelist who should "
    "speak next, or END to close the discussion."
)
"""The system message of a model moderator; ``{topic}`` and ``{names}`` are filled in."""


@runtime_checkable
class Streamer(Protocol):
    """Anything a panelist can speak through: ``stream(request)`` returns a cold Observable
    of events, one request per subscription, closed when the subscription is disposed
    (``rxllm.provider(...)``, a ``Chain``)."""

    def stream(self, request: Request) -> Observable[Event]:
        """A cold Observable of the events answering ``request``."""
        ...


@dataclass(frozen=True, slots=True)
class Panelist:
    """A seat at the table: who speaks (``provider``) and how (``persona``).

    Attributes:
        provider: anything with ``stream(request) -> Observable[Event]``.
        persona: the panelist's system prompt (may be empty).
        template: a request whose settings (``temperature``, ``max_tokens``, ``model``,
            ``extra``, ``metadata``...) this panelist's requests use; its messages are
            replaced. Overrides the table's ``template``.
    """

    provider: Streamer
    persona: str = ""
    template: Request | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One turn of the transcript: what ``panelist`` said in ``round``.

    ``error`` is ``None`` for a turn that finished; for a failed one it is the error and
    ``response`` the partial answer.
    """

    panelist: str
    round: int
    response: Response
    error: Exception | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """The turn's text (partial for a failed turn)."""
        return self.response.text

    @property
    def failed(self) -> bool:
        """Whether the turn ended with an error or a timeout."""
        return self.error is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """Everything said at the table so far, in speaking order (within a parallel round,
    in panel order)."""

    topic: str
    turns: tuple[Turn, ...] = ()

    def by(self, panelist: str) -> tuple[Turn, ...]:
        """The turns of ``panelist``."""
        return tuple(t for t in self.turns if t.panelist == panelist)

    def render(self) -> str:
        """The transcript as text: one ``[round N] name: text`` paragraph per turn."""
        parts = []
        for turn in self.turns:
            mark = " (interrupted)" if turn.failed else ""
            parts.append(f"[round {turn.round}] {turn.panelist}{mark}: {turn.text}")
        return "\n\n".join(parts)


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnStarted:
    """``panelist`` starts speaking in ``round``; ``request`` is exactly what was sent."""

    panelist: str
    round: int
    request: Request = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PanelDelta:
    """One event of ``panelist``'s stream (a ``TextDelta``, ``ReasoningDelta``, ``Started``,
    ``Usage``...), tagged. While the consumer lags, consecutive text deltas of one panelist
    may arrive merged into one."""

    panelist: str
    round: int
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnFinished:
    """``panelist``'s turn ended normally; ``response`` is everything it said."""

    panelist: str
    round: int
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class PanelistFailed:
    """``panelist``'s turn failed (an error, or ``TurnTimeout``); ``partial`` is what it said
    before (``StreamInterrupted.partial`` when the stream carried one)."""

    panelist: str
    round: int
    error: Exception
    partial: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundFinished:
    """Every turn of ``round`` has ended; ``turns`` are its turns in transcript order."""

    round: int
    turns: tuple[Turn, ...]
    panelist: None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundtableFinished:
    """The table is over (the last event). ``round`` is the number of rounds held;
    ``reason`` is ``rounds`` (all were held), ``moderator`` (it ended the table) or
    ``no_panelists`` (everyone had failed)."""

    round: int
    transcript: Transcript
    reason: Literal["rounds", "moderator", "no_panelists"] = "rounds"
    panelist: None = None


RoundtableEvent: TypeAlias = (
    TurnStarted | PanelDelta | TurnFinished | PanelistFailed | RoundFinished | RoundtableFinished
)

ModeratorFn: TypeAlias = Callable[[Transcript, int], str | None]
"""A moderator function: ``(transcript, round) -> name of the next speaker | None to end``."""


# --- what each speaker sees -----------------------------------------------------------------


def context_messages(
    name: str,
    topic: str,
    turns: Sequence[Turn],
    *,
    persona: str = "",
    others: Sequence[str] = (),
    instructions: str | None = DEFAULT_INSTRUCTIONS,
    cue: str = DEFAULT_CUE,
) -> list[Message]:
    """The messages ``name`` is sent, given the ``turns`` it may see.

    - ``system``: ``persona``, then ``instructions`` (formatted with ``name``, ``others``
      and ``topic``); left out when both are empty.
    - ``user``: the topic, followed by every other panelist's turn as a paragraph
      ``"Name: text"`` (``"Name (interrupted): text"`` for a failed turn's partial text).
      Consecutive turns of others share one user message, so roles alternate as Anthropic
      and Gemini require.
    - ``assistant``: each of ``name``'s own earlier turns, as it said them.
    - a final ``user`` message ``cue`` (formatted with ``name``) when the conversation would
      otherwise end with the speaker's own turn.

    Turns without text are left out; reasoning and tool calls are never shared.
    """
    system = [p for p in (persona, _fill(instructions, name, others, topic)) if p]
    messages: list[Message] = []
    if system:
        messages.append(Message(role="system", content="\n\n".join(system)))
    heard: list[str] = [topic]
    for turn in turns:
        text = turn.response.text
        if not text:
            continue
        if turn.panelist == name:
            if heard:
                messages.append(Message(role="user", content="\n\n".join(heard)))
                heard = []
            messages.append(Message(role="assistant", content=text))
        else:
            mark = " (interrupted)" if turn.failed else ""
            heard.append(f"{turn.panelist}{mark}: {text}")
    if not heard:
        heard.append(cue.format(name=name))
    messages.append(Message(role="user", content="\n\n".join(heard)))
    return messages


def _fill(template: str | None, name: str, others: Sequence[str], topic: str) -> str:
    if not template:
        return ""
    return template.format(name=name, others=", ".join(others), topic=topic)


def moderator_messages(
    transcript: Transcript, round: int, names: Sequence[str], *, prompt: str = MODERATOR_PROMPT
) -> list[Message]:
    """The messages a model moderator is sent before a turn (or a parallel round) of
    ``round``: ``prompt`` as the system message, the rendered transcript as the user one."""
    said = transcript.render() or "(nobody has spoken yet)"
    return [
        Message(
            role="system", content=prompt.format(topic=transcript.topic, names=", ".join(names))
        ),
        Message(role="user", content=f"{said}\n\nRound {round}. Who speaks next?"),
    ]


def pick_speaker(reply: str, names: Sequence[str]) -> str | None:
    """The panelist a moderator's ``reply`` names first (whole word, any case), or ``None``
    if it names nobody or says ``END`` before any name."""
    best: tuple[int, str | None] | None = None
    for candidate in (*names, "END"):
        found = re.search(rf"(?<!\w){re.escape(candidate)}(?!\w)", reply, re.IGNORECASE)
        if found is not None and (best is None or found.start() < best[0]):
            best = (found.start(), None if candidate == "END" else candidate)
    return None if best is None else best[1]


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    panel: dict[str, Panelist]
    topic: str
    rounds: int
    mode: Mode
    turn_timeout: float | None
    moderator: ModeratorFn | Streamer | None
    fairness: bool
    skip_failed: bool
    template: Request | None
    instructions: str | None
    cue: str
    max_pending: int
    max_chars: int
    scheduler: abc.SchedulerBase | None


def roundtable(
    panel: Mapping[str, Panelist | Streamer],
    topic: str,
    *,
    rounds: int = 2,
    mode: Mode = "parallel",
    turn_timeout: float | None = None,
    moderator: ModeratorFn | Streamer | None = None,
    fairness: bool = True,
    skip_failed: bool = True,
    template: Request | None = None,
    instructions: str | None = DEFAULT_INSTRUCTIONS,
    cue: str = DEFAULT_CUE,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_chars: int = DEFAULT_MAX_CHARS,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[RoundtableEvent]:
    """A cold Observable of a roundtable discussion of ``topic`` by ``panel``.

    Args:
        panel: panelist names mapped to a ``Panelist`` (or a bare provider: no persona).
            The mapping's order is the speaking order.
        topic: the first user message every panelist sees.
        rounds: the most rounds held (each panelist still in the table speaks once a round).
        mode: ``"parallel"``: a round's panelists speak at once, each seeing the previous
            rounds; ``"turns"``: they speak one after another, each seeing everything said
            before it.
        turn_timeout: seconds a turn may take, from its request to its end; a turn over it
            is closed and fails with ``TurnTimeout``. Also bounds a model moderator's reply.
        moderator: ``(transcript, round) -> name | None`` or a provider prompted with
            ``MODERATOR_PROMPT`` (its reply is read with ``pick_speaker``). In ``turns`` mode
            it is asked before every turn and picks the speaker (a round still has at most
            as many turns as panelists are left); in ``parallel`` mode it is asked before
            every round and any name lets the round happen. ``None`` ends the table. A
            function naming no panelist raises ``ConfigError``; a moderator's failure ends
            the roundtable with its error.
        fairness: merge parallel output token-fairly for a lagging demand-aware sink;
            ``False`` passes everything in arrival order and lets the sink pause every
            panelist alike.
        skip_failed: leave a panelist that failed out of later rounds (``False``: ask it
            again each round).
        template: a request whose settings every panelist's request uses (its messages are
            replaced; ``metadata`` gains ``{"roundtable": {"panelist", "round"}}``).
        instructions: appended to each persona (see ``context_messages``); ``None`` for none.
        cue: the closing user message when a context would end with the speaker's own turn.
        max_pending: entries a panelist's queue holds, while the consumer lags, before that
            panelist's socket pauses (a merged text run is one entry).
        max_chars: the longest merged text delta.
        scheduler: for ``turn_timeout`` (default: the asyncio loop's, see
            ``rxllm.aio.scheduler_for``).

    Returns:
        ``RoundtableEvent``s ending with ``RoundtableFinished``, then completion. It errors
        only for a moderator's failure; panelists' failures are events.
    """
    spec = _check(
        panel,
        topic,
        rounds=rounds,
        mode=mode,
        turn_timeout=turn_timeout,
        moderator=moderator,
        fairness=fairness,
        skip_failed=skip_failed,
        template=template,
        instructions=instructions,
        cue=cue,
        max_pending=max_pending,
        max_chars=max_chars,
        scheduler=scheduler,
    )

    def subscribe(
        observer: abc.ObserverBase[RoundtableEvent], sub_scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        sink = current_valve()
        merge: Merge[RoundtableEvent]
        if sink is not None and spec.fairness:
            merge = FairMerge(
                observer,
                sink,
                max_pending=spec.max_pending,
                max_chars=spec.max_chars,
                run_key=_run_key,
                text_of=_text_of,
                join=_join,
            )
        else:
            merge = PassThrough(observer, sink)
        table = _Table(spec, merge, scheduler_for(spec.scheduler, sub_scheduler))
        table.start()
        return Disposable(table.dispose)

    return reactivex.create(subscribe)


def _check(panel: Mapping[str, Panelist | Streamer], topic: str, **kw: Any) -> _Spec:
    if not isinstance(panel, Mapping) or not panel:
        raise ConfigError("a roundtable needs a non-empty mapping of panelist names")
    seats: dict[str, Panelist] = {}
    for name, seat in panel.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a panelist name must be a non-empty string, not {name!r}")
        if not isinstance(seat, Panelist):
            seat = Panelist(seat)
        if not isinstance(seat.provider, Streamer):
            raise ConfigError(f"panelist {name!r}: the provider needs a stream(request) method")
        seats[name] = seat
    if not isinstance(topic, str) or not topic.strip():
        raise ConfigError("a roundtable needs a topic")
    if kw["rounds"] < 1:
        raise ConfigError("rounds must be at least 1")
    if kw["mode"] not in ("parallel", "turns"):
        raise ConfigError(f"mode must be 'parallel' or 'turns', not {kw['mode']!r}")
    if kw["turn_timeout"] is not None and not kw["turn_timeout"] > 0:
        raise ConfigError("turn_timeout must be positive")
    moderator = kw["moderator"]
    if moderator is not None and not (isinstance(moderator, Streamer) or callable(moderator)):
        raise ConfigError("moderator must be a function or a provider")
    if kw["max_pending"] < 1:
        raise ConfigError("max_pending must be at least 1")
    if kw["max_chars"] < 1:
        raise ConfigError("max_chars must be at least 1")
    return _Spec(panel=seats, topic=topic, **kw)


def _run_key(item: RoundtableEvent) -> Hashable | None:
    if type(item) is PanelDelta:
        kind = type(item.event)
        if kind is TextDelta or (kind is ReasoningDelta and item.event.signature is None):  # type: ignore[union-attr]
            return (item.panelist, item.round, kind)
    return None


def _text_of(item: RoundtableEvent) -> str:
    text: str = item.event.text  # type: ignore[union-attr]
    return text


def _join(first: RoundtableEvent, text: str) -> RoundtableEvent:
    assert type(first) is PanelDelta
    event: Event = (
        TextDelta(text=text) if type(first.event) is TextDelta else ReasoningDelta(text=text)
    )
    return PanelDelta(panelist=first.panelist, round=first.round, event=event)


class _Run:
    """One turn in progress."""

    __slots__ = ("acc", "done", "name", "on_done", "round", "subscription", "timer")

    def __init__(self, name: str, round: int, on_done: Callable[[Turn], None]) -> None:
        self.name = name
        self.round = round
        self.on_done = on_done
        self.acc = Accumulator()
        self.done = False
        self.subscription: abc.DisposableBase | None = None
        self.timer: abc.DisposableBase | None = None

    def stop(self) -> None:
        self.done = True
        for disposable in (self.timer, self.subscription):
            if disposable is not None:
                disposable.dispose()
        self.timer = self.subscription = None


class _Table:
    """The state machine of one subscription: rounds, turns, the moderator."""

    def __init__(
        self, spec: _Spec, merge: Merge[RoundtableEvent], scheduler: abc.SchedulerBase
    ) -> None:
        self.spec = spec
        self.merge = merge
        self.scheduler = scheduler
        self.names = list(spec.panel)
        self.failed: set[str] = set()
        self.transcript: list[Turn] = []
        self.round = 0
        self.round_turns: list[Turn] = []
        self.speakers: list[str] = []  # this round's speaking order (turns mode)
        self.slot = 0
        self.runs: dict[int, _Run] = {}
        self.asking: _Run | None = None  # a model moderator's reply in progress
        self.actions: deque[Callable[[], None]] = deque()
        self.driving = False
        self.over = False
        self.disposed = False

    # --- driving: every state change runs here, one at a time (no deep recursion when a
    # source completes synchronously)

    def post(self, action: Callable[[], None]) -> None:
        self.actions.append(action)
        if self.driving:
            return
        self.driving = True
        try:
            while self.actions and not self.disposed and not self.over:
                self.actions.popleft()()
        except Exception as exc:  # noqa: BLE001 - a moderator's or a template's bug
            self.fail(exc)
        finally:
            self.driving = False
            if self.disposed or self.over:
                self.actions.clear()

    def start(self) -> None:
        self.post(self.next_round)

    def eligible(self) -> list[str]:
        if not self.spec.skip_failed:
            return list(self.names)
        return [n for n in self.names if n not in self.failed]

    def snapshot(self) -> Transcript:
        return Transcript(topic=self.spec.topic, turns=tuple(self.transcript))

    # --- rounds

    def next_round(self) -> None:
        if self.round >= self.spec.rounds:
            self.finish("rounds")
            return
        if not self.eligible():
            self.finish("no_panelists")
            return
        if self.spec.mode == "parallel":
            if self.spec.moderator is None:
                self.parallel_round()
            else:
                self.ask(self.round + 1, self.after_parallel_answer)
        else:
            self.round += 1
            self.round_turns = []
            self.speakers = self.eligible()
            self.slot = 0
            self.next_turn()

    def after_parallel_answer(self, answer: str | None) -> None:
        if answer is None:
            self.finish("moderator")
        else:
            self.parallel_round()

    def parallel_round(self) -> None:
        self.round += 1
        self.round_turns = []
        speakers = self.eligible()
        seen = tuple(self.transcript)
        finished: dict[str, Turn] = {}

        def on_done(turn: Turn) -> None:
            finished[turn.panelist] = turn
            if len(finished) == len(speakers):
                self.round_turns = [finished[n] for n in speakers]
                self.transcript.extend(self.round_turns)
                self.post(self.end_round)

        for name in speakers:
            if self.disposed or self.over:
                return
            self.start_turn(name, seen, on_done)

    def next_turn(self) -> None:
        if self.slot >= len(self.speakers) or not self.eligible():
            self.end_round()
        elif self.spec.moderator is None:
            self.speak(self.speakers[self.slot])
        else:
            self.ask(self.round, self.after_turn_answer)

    def after_turn_answer(self, answer: str | None) -> None:
        if answer is None:
            if self.round_turns:
                self.merge.barrier(RoundFinished(round=self.round, turns=tuple(self.round_turns)))
            else:
                self.round -= 1  # the round never started
            self.finish("moderator")
        else:
            self.speak(answer)

    def speak(self, name: str) -> None:
        def on_done(turn: Turn) -> None:
            self.round_turns.append(turn)
            self.transcript.append(turn)
            self.slot += 1
            self.post(self.next_turn)

        self.start_turn(name, tuple(self.transcript), on_done)

    def end_round(self) -> None:
        self.merge.barrier(RoundFinished(round=self.round, turns=tuple(self.round_turns)))
        self.post(self.next_round)

    def finish(self, reason: Literal["rounds", "moderator", "no_panelists"]) -> None:
        if self.over:
            return
        self.over = True
        self.merge.barrier(
            RoundtableFinished(round=self.round, transcript=self.snapshot(), reason=reason)
        )
        self.merge.end(None)

    def fail(self, error: Exception) -> None:
        if self.over or self.disposed:
            return
        self.over = True
        self.stop_all()
        self.merge.end(error)

    # --- turns

    def request_for(self, name: str, seen: Sequence[Turn]) -> Request:
        seat = self.spec.panel[name]
        messages = context_messages(
            name,
            self.spec.topic,
            seen,
            persona=seat.persona,
            others=[n for n in self.names if n != name],
            instructions=self.spec.instructions,
            cue=self.spec.cue,
        )
        base = seat.template or self.spec.template or Request()
        metadata = {**base.metadata, "roundtable": {"panelist": name, "round": self.round}}
        return replace(base.with_messages(messages), metadata=metadata)

    def start_turn(self, name: str, seen: Sequence[Turn], on_done: Callable[[Turn], None]) -> None:
        run = _Run(name, self.round, on_done)
        lane: Hashable = name if self.spec.mode == "parallel" else "*"
        merge = self.merge
        request = self.request_for(name, seen)
        merge.push(lane, TurnStarted(panelist=name, round=run.round, request=request))
        if self.disposed or self.over:
            return
        self.runs[id(run)] = run
        try:
            source = self.spec.panel[name].provider.stream(request)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot build the call fails
            self.turn_failed(run, lane, exc)
            return
        acc = run.acc
        round_no = run.round

        def on_next(event: Event) -> None:
            if run.done:
                return
            acc.add(event)
            merge.push(lane, PanelDelta(panelist=name, round=round_no, event=event))

        def on_error(error: Exception) -> None:
            if not run.done:
                self.turn_failed(run, lane, error)

        def on_completed() -> None:
            if not run.done:
                self.turn_finished(run, lane)

        timeout = self.spec.turn_timeout
        if timeout is not None:
            run.timer = self.scheduler.schedule_relative(
                timeout, lambda _s, _st: self.turn_timed_out(run, lane, timeout)
            )
        with valve_scope(merge.scope_valve(lane)):
            subscription = source.subscribe(on_next, on_error, on_completed)
        if run.done:
            subscription.dispose()
        else:
            run.subscription = subscription

    def turn_finished(self, run: _Run, lane: Hashable) -> None:
        run.stop()
        self.runs.pop(id(run), None)
        response = run.acc.response()
        self.merge.push(lane, TurnFinished(panelist=run.name, round=run.round, response=response))
        turn = Turn(panelist=run.name, round=run.round, response=response)
        self.post(lambda: run.on_done(turn))

    def turn_failed(self, run: _Run, lane: Hashable, error: Exception) -> None:
        run.stop()
        self.runs.pop(id(run), None)
        partial = error.partial if isinstance(error, StreamInterrupted) else run.acc.response()
        if not partial.text and run.acc.text:
            partial = run.acc.response()  # the partial must never lose text that was shown
        self.failed.add(run.name)
        self.merge.push(
            lane,
            PanelistFailed(panelist=run.name, round=run.round, error=error, partial=partial),
        )
        turn = Turn(panelist=run.name, round=run.round, response=partial, error=error)
        self.post(lambda: run.on_done(turn))

    def turn_timed_out(self, run: _Run, lane: Hashable, timeout: float) -> None:
        if run.done or self.disposed:
            return
        error = TurnTimeout(
            f"{run.name}: turn {run.round} took longer than {timeout}s",
            timeout=timeout,
            panelist=run.name,
            partial=run.acc.response(),
        )
        self.turn_failed(run, lane, error)

    # --- the moderator

    def ask(self, round_no: int, then: Callable[[str | None], None]) -> None:
        moderator = self.spec.moderator
        assert moderator is not None
        if isinstance(moderator, Streamer):
            self.ask_model(moderator, round_no, then)
            return
        answer = moderator(self.snapshot(), round_no)
        if answer is not None and answer not in self.spec.panel:
            raise ConfigError(
                f"the moderator named {answer!r}, who is not on the panel ({', '.join(self.names)})"
            )
        then(answer)

    def ask_model(
        self, moderator: Streamer, round_no: int, then: Callable[[str | None], None]
    ) -> None:
        names = self.eligible()
        messages = moderator_messages(self.snapshot(), round_no, names)
        base = self.spec.template or Request()
        metadata = {**base.metadata, "roundtable": {"moderator": True, "round": round_no}}
        request = replace(base.with_messages(messages), metadata=metadata)

        def answered(reply: str) -> None:
            self.post(lambda: then(pick_speaker(reply, names)))

        run = _Run("moderator", round_no, lambda _turn: None)
        self.asking = run
        source = moderator.stream(request)

        def on_error(error: Exception) -> None:
            if not run.done:
                run.stop()
                self.fail(error)

        def on_completed() -> None:
            if not run.done:
                run.stop()
                answered(run.acc.text)

        timeout = self.spec.turn_timeout
        if timeout is not None:

            def timed_out(_s: Any, _st: Any) -> None:
                if not run.done:
                    run.stop()
                    self.fail(
                        TurnTimeout(
                            f"the moderator took longer than {timeout}s",
                            timeout=timeout,
                            panelist=None,
                            partial=run.acc.response(),
                        )
                    )

            run.timer = self.scheduler.schedule_relative(timeout, timed_out)
        with valve_scope(None):
            subscription = source.subscribe(run.acc.add, on_error, on_completed)
        if run.done:
            subscription.dispose()
        else:
            run.subscription = subscription

    # --- the end

    def stop_all(self) -> None:
        runs = list(self.runs.values())
        self.runs.clear()
        for run in runs:
            run.stop()
        if self.asking is not None:
            self.asking.stop()
            self.asking = None

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        self.stop_all()
        self.merge.dispose()
