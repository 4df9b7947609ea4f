"""The fallback's rules on history: what they would have answered to the stored labeled records
of some periods, judged against the labels beside what the model answered to the same records.

A backtest asks "was the fallback worth it?" for the periods it would have been engaged. The
rules are the spec's, compiled as the sidecar compiles them (`celrules.compile_rules`) and tried
in order as it tries them (`RuleSet.evaluate`). A stored record keeps the features the capture
extracted, not the request: `Judge` rebuilds the request the rules read from the features at
their capture pointer (`capture.features`, relative to the row for a batch spec), so a rule
reading `request.features.tenure` under `features: {pointer: /features}` reads the stored value;
a protocol's flattened row is told back first (`request.predict[0]` of an open-inference-v2 row
reads the stored `predict.0`).

What was not captured cannot be replayed, and is counted, never guessed: rules are read before
any record (their `request.…` and `headers` paths, `celreads`), and from the first rule that reads
a header or a part of the request outside the captured features, records its turn comes to are
skipped with that reason (`Blocked`). Records answered by a rule before it are judged. The other
reasons a record is left out are counted too (`SKIP_REASONS`).

Both sides are tallied into metric counters exactly as the service tallies a labeled record
(`metrics.tally` with the spec's threshold), evaluated by `evaluation.evaluate` and compared by
`compare.compare` (b − a with a = the model, b = the rules; `better` means the rules did better).
The two sides answer the same records, so they are not independent samples as `compare` assumes:
the interval of the difference is wider than a paired one would be, never narrower.

CEL (cel-python, lark) is imported by `judge` only: the result types are read by processes that
never compile a rule (the CLI rendering a service's answer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from truthloop.core import capture, compare, metrics, pointer, protocols
from truthloop.core.evaluation import evaluate
from truthloop.core.join import Label
from truthloop.core.rules import FallbackRule, RuleSet
from truthloop.core.spec import CaptureSpec, MonitorSpec, is_drift_key

if TYPE_CHECKING:
    from truthloop.core import celreads

SkipReason = Literal["reads_header", "not_captured", "live_fallback", "vote_only", "invalid_answer"]
SKIP_REASONS: Mapping[SkipReason, str] = {
    "reads_header": "a rule before the one that answers reads a request header (not captured)",
    "not_captured": "a rule before the one that answers reads a part of the request outside "
    "the captured features",
    "live_fallback": "the fallback answered the request live: the record is the rules' answer, "
    "not the model's",
    "vote_only": "labeled by a reviewer's vote, without an actual to judge the rules' answer by",
    "invalid_answer": "the rules' answer is not a prediction of the task",
}
"""Why a record is left out of the comparison, by reason code."""

MAX_JUDGED = 200_000
"""Labeled records the rules are replayed on at most when every rule runs as a closure (a few
microseconds a record)..."""
MAX_JUDGED_CEL = 20_000
"""... and when one runs on cel-python's interpreter (a third of a millisecond a record): beyond,
a uniform sample of the records (`sample_rate`), their intervals as wide as its size makes them."""
SAMPLE_SALT = "backtest:"
"""Prefixed to a prediction ID before it is hashed for the sample: the capture's own sampling
hashes the bare ID, and the two must not be the same draw."""

DEFAULT_METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "mae"}
"""The metric a comparison leads with when no alert the fallback engages on names one."""


class Record(Protocol):
    """A stored labeled record as the store's dataset read gives it (`StoredPrediction`)."""

    @property
    def prediction_id(self) -> str: ...
    @property
    def served_by(self) -> str: ...
    @property
    def prediction(self) -> Any: ...
    @property
    def score(self) -> float | None: ...
    @property
    def features(self) -> Any: ...
    @property
    def label(self) -> Label | None: ...


@dataclass(frozen=True, slots=True)
class Blocked:
    """The first rule that cannot be evaluated on stored records, and why."""

    index: int
    reason: Literal["reads_header", "not_captured"]
    detail: str


@dataclass(frozen=True, slots=True)
class Judge:
    """A spec's rules ready to replay on stored records (`judge`)."""

    task: str
    threshold: float
    rules: RuleSet
    """The rules before the first blocked one, compiled as the sidecar compiles them."""
    captured: tuple[str, ...] | None
    """The pointer tokens of the captured features (None: no features are captured)."""
    count: int
    """How many rules the spec has."""
    blocked: Blocked | None
    capture: CaptureSpec
    """Whose features are replayed: a protocol's flattened row is told back (`protocols.row`)."""

    def request(self, features: Any) -> Any:
        """The request (or batch row) as far as it was captured: `features` at its pointer, in
        objects (arrays for index tokens, the other elements null)."""
        value = protocols.row(self.capture, features)
        for token in reversed(self.captured or ()):
            if pointer.is_index(token):
                items: list[Any] = [None] * int(token)
                items.append(value)
                value = items
            else:
                value = {token: value}
        return value


def judge(spec: MonitorSpec) -> Judge:
    """The spec's fallback rules compiled and read for what they need (RuleCompileError for a
    rule that does not compile: a parsed spec's do)."""
    from truthloop.core import celreads, celrules  # CEL: loaded by a backtest with rules only

    written = spec.fallback.rules
    features = spec.capture.features
    captured = (
        None if features is None or features.pointer is None else pointer.parse(features.pointer)
    )
    blocked = _blocked(written, captured, celreads.reads)
    usable = written if blocked is None else written[: blocked.index]
    return Judge(
        spec.task,
        spec.threshold,
        celrules.compile_rules(usable),
        captured,
        len(written),
        blocked,
        spec.capture,
    )


def _blocked(
    written: Iterable[FallbackRule],
    captured: tuple[str, ...] | None,
    reads: Callable[[str], tuple[celreads.Read, ...]],
) -> Blocked | None:
    """The first rule reading what was not captured (`reads`: `celreads.reads`)."""
    for index, rule in enumerate(written):
        for name, source in (("when", rule.when), ("prediction", rule.prediction)):
            if source is None:
                continue
            for read in reads(source):
                where = f"rules[{index}].{name} reads {read}"
                if read.root == "headers":
                    return Blocked(index, "reads_header", f"{where}: headers are not captured")
                if captured is None:
                    return Blocked(index, "not_captured", f"{where}: no features are captured")
                if not _inside(read.path, captured):
                    shown = pointer.render(captured)
                    message = f"{where}: only the features at {shown} are captured"
                    return Blocked(index, "not_captured", message)
    return None


def _inside(path: celreads.Path, captured: tuple[str, ...]) -> bool:
    """Whether a read of `path` stays within the captured subtree, as `Judge.request` rebuilds
    it: an index token is an array's, read by an integer index; any other an object's key."""
    if len(path) < len(captured):
        return False
    for step, token in zip(path, captured, strict=False):
        if pointer.is_index(token):
            if type(step) is not int or step != int(token):
                return False
        elif step != token:
            return False
    return True


def sample_rate(judge: Judge, records: int) -> float:
    """The share of `records` (the episodes' predictions, at least their labeled records) to
    replay the rules on: all of them up to `MAX_JUDGED` (`MAX_JUDGED_CEL` when a rule runs on
    cel-python), that many of them beyond."""
    most = MAX_JUDGED_CEL if any(judge.rules.uses_cel_runner) else MAX_JUDGED
    return 1.0 if records <= most else most / records


@dataclass(slots=True)
class Tally:
    """The model's and the rules' answers to records, accumulated chunk by chunk (`add`); with
    a `rate` below 1, only the records a uniform draw from their prediction ID keeps."""

    judge: Judge
    rate: float = 1.0
    model: dict[str, float] = field(default_factory=dict)
    rules: dict[str, float] = field(default_factory=dict)
    records: int = 0
    """Labeled records read."""
    no_rule: int = 0
    """Records no rule answered: the sidecar asks the model then (fail-open)."""
    by_rule: Counter[int] = field(default_factory=Counter)
    skipped: Counter[SkipReason] = field(default_factory=Counter)
    sampled_out: int = 0
    """Records the sample left out (`rate`)."""

    def add(self, records: Iterable[Record]) -> None:
        judge, rate = self.judge, self.rate
        for record in records:
            self.records += 1
            if rate < 1.0 and capture.uniform(SAMPLE_SALT + record.prediction_id) >= rate:
                self.sampled_out += 1
                continue
            label = record.label
            if record.served_by != "model":
                self.skipped["live_fallback"] += 1
                continue
            if label is None or label.value is None:
                self.skipped["vote_only"] += 1
                continue
            decision = judge.rules.evaluate(judge.request(record.features), {})
            if decision is None:
                if judge.blocked is not None:
                    self.skipped[judge.blocked.reason] += 1
                else:
                    self.no_rule += 1
                continue
            try:
                metrics.tally(
                    self.rules,
                    judge.task,
                    decision.value,
                    label.value,
                    threshold=judge.threshold,
                )
            except metrics.LabelError:
                self.skipped["invalid_answer"] += 1
                continue
            metrics.tally(
                self.model,
                judge.task,
                record.prediction,
                label.value,
                score=record.score,
                threshold=judge.threshold,
            )
            self.by_rule[decision.rule_index] += 1


@dataclass(frozen=True, slots=True)
class Skipped:
    """Records left out of the comparison for one reason, and what it means here (the blocking
    rule's own words for `reads_header` and `not_captured`)."""

    reason: SkipReason
    records: int
    detail: str


@dataclass(frozen=True, slots=True)
class RulesVsModel:
    """The rules against the model on the records both were judged on (`result`): every metric
    of each side with its interval, and of their difference (`compare.Difference`, rules − model:
    `better` means the rules did better)."""

    metric: str
    """The metric to lead with (`difference`)."""
    records: int
    """Labeled records read."""
    compared: int
    """Records both sides were judged on."""
    no_rule: int
    by_rule: tuple[int, ...]
    """Records each rule answered, by rule index."""
    skipped: tuple[Skipped, ...]
    sample: float
    """The share of the records the rules were replayed on (1: all; `sample_rate`)."""
    sampled_out: int
    model: Mapping[str, metrics.Estimate]
    rules: Mapping[str, metrics.Estimate]
    differences: Mapping[str, compare.Difference]

    @property
    def difference(self) -> compare.Difference | None:
        return self.differences.get(self.metric)


def result(tally: Tally, spec: MonitorSpec) -> RulesVsModel:
    """What `tally` found, each side evaluated as the service evaluates a window."""
    model = evaluate(spec.task, tally.model, spec.metrics.cost)
    rules = evaluate(spec.task, tally.rules, spec.metrics.cost)
    blocked = tally.judge.blocked
    return RulesVsModel(
        metric=lead_metric(spec),
        records=tally.records,
        compared=model.labeled,
        no_rule=tally.no_rule,
        by_rule=tuple(tally.by_rule[i] for i in range(tally.judge.count)),
        skipped=tuple(
            Skipped(
                reason,
                n,
                blocked.detail
                if blocked is not None and blocked.reason == reason
                else SKIP_REASONS[reason],
            )
            for reason, n in sorted(tally.skipped.items())
        ),
        sample=tally.rate,
        sampled_out=tally.sampled_out,
        model=model.metrics,
        rules=rules.metrics,
        differences=compare.compare(model, rules),
    )


def lead_metric(spec: MonitorSpec) -> str:
    """The metric of the first alert the fallback engages on that reads a labeled metric of the
    model (realized, estimated or auto), else the task's usual one (`DEFAULT_METRIC`)."""
    engaged = set(spec.fallback.engage_on)
    for alert in spec.alerts:
        if (
            alert.name in engaged
            and alert.feature is None
            and alert.source != "reviewed"
            and metrics.direction(alert.metric) is not None
            and not is_drift_key(alert.metric)
        ):
            return alert.metric
    return DEFAULT_METRIC[spec.task]
