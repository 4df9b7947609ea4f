"""`truthloop demo` tells the whole story, as a newcomer runs it, and leaves nothing behind:
drift seen in the inputs before accuracy falls, the estimate falling before the labels come,
outliers that are not drift, the alert, the fallback, the recovery, and human review (the model
answering "I don't know", a reviewer labeling the queue, the accuracy the reviews estimate), the
metrics per range of tenure worst first, and a second model version compared with the first.

Each run is a real process in its own process group with its own TMPDIR, so a process or a
temporary file it left behind is found. (That the summary is what the metrics API answers, asked
from outside while the services keep running, is tested in-process:
tests/integration/test_demo_run.py.)
"""

from __future__ import annotations

import json
import math
import re
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.processes import Command, children, group_members
from tests.support import readme
from truthloop.demo.summary import clock

DEMO = ["demo", "--plain"]
"""As a newcomer runs it (the defaults), but as lines: what README's sample shows."""
STORY = ["Collecting", "Healthy", "Degraded", "FallbackActive", "Healthy"]
PHASE_EVENT = re.compile(r"^\d\d:\d\d  event  phase (?:\w+ → )?(\w+): ")


@pytest.fixture
def demo_tmp(tmp_path: Path) -> Path:
    """The demo's TMPDIR: whatever it leaves there is a leak."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@pytest.fixture
def commands() -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for command in started:
        command.close()


def in_order(wanted: Sequence[str], seen: Sequence[str]) -> bool:
    rest = iter(seen)
    return all(phase in rest for phase in wanted)


@pytest.mark.e2e  # the whole 40-second story
def test_the_demo_shows_drift_alert_fallback_and_recovery(
    demo_tmp: Path, commands: list[Command]
) -> None:
    demo = Command(DEMO, env={"TMPDIR": str(demo_tmp)})
    commands.append(demo)
    demo.wait_for(r"^truthloop demo: time-lapse 20×: one second is 20 seconds of service", 30)
    workdir = Path(demo.wait_for(r"^  feedback  http://127\.0\.0\.1:\d+  SQLite in (\S+)$", 10)[1])
    assert workdir.parent == demo_tmp
    assert children(demo.process.pid) == [], "the parts run inside the demo's process"
    result = json.loads(demo.wait_for(r"^result (\{.*\})$", 60)[1])
    assert demo.finish(within=30) == 0, "\n".join(demo.errors)
    output = "\n".join(demo.lines)

    phases = [m[1] for line in demo.lines if (m := PHASE_EVENT.match(line))]
    assert in_order(STORY, phases), output
    assert (phases[0], phases[-1]) == ("Collecting", "Healthy")
    assert result["phases"] == phases

    # What the client counted agrees with what the service measured (the result line holds the
    # metrics API's answers): every request answered, captured and labeled.
    requests = result["requests"]
    assert result["answered"] == result["actuals"] == requests > 1000
    assert result["model"]["samples"] == result["model"]["labeled"] == requests
    assert 0 < result["served_by_fallback"] < requests
    assert result["fallback"]["samples"] == result["fallback"]["labeled"]
    assert result["fallback"]["samples"] == result["served_by_fallback"]

    # The compared minute is a drifted one in which the fallback answered every request, and there
    # the rules, written for the drifted world, beat the model beyond both intervals.
    minute = result["minute"]
    assert minute["drifted"] is True
    assert minute["fallback"]["samples"] == minute["model"]["samples"]
    assert minute["fallback"]["accuracy"][1] > minute["model"]["accuracy"][2]

    # The human summary says the same numbers.
    model, fallback = result["model"], result["fallback"]
    assert f"  requests  {requests} sent, {requests} answered" in output
    assert f"  captured  {model['samples']} model records" in output
    assert f"  labeled   {model['labeled']} model, {fallback['labeled']} fallback" in output
    assert f"            fallback {minute['fallback']['accuracy'][0]:.2f} [" in output
    assert f"            model    {minute['model']['accuracy'][0]:.2f} [" in output
    assert "X-Served-By: fallback" in output

    # Drift: the service flagged the inputs (against the reference the demo uploaded) before the
    # labels, 20s late, brought accuracy below the alert's bound; the world drifted three
    # features' distributions and more, so at least the dataset share (half of the four) did.
    drift = result["drift"]
    assert drift["tested"] == 4
    assert len(drift["features"]) >= 2
    assert drift["flagged"] is not None
    assert drift["accuracy_fell"] is not None
    assert drift["flagged"] < drift["accuracy_fell"], output
    assert re.search(
        r"^  drift     flagged \d\d:\d\d, \d\d:\d\d before accuracy fell \(\d\d:\d\d Degraded\)",
        output,
        re.M,
    )
    # The broken meter: its records showed as outliers, all in one window, and that window's
    # features did not drift as a dataset (a few odd records are not a shift of the population).
    outliers = result["outliers"]
    assert outliers["broken"] == 12
    assert outliers["count"] >= outliers["broken"]
    assert outliers["ratio"] > 0
    assert outliers["dataset_drift"] is False, output
    assert f"records outside the reference ({outliers['ratio']:.1%} of the window;" in output
    assert "features drifted): odd records, not a shift" in output

    # The estimate: from the model's scores, calibrated on the uploaded reference, it fell below
    # the alert's bound while the newcomers the model is unsure of came, before the realized
    # accuracy could see them (fewer of their labels sent than minSamples) and before accuracy
    # fell; when churn turned to follow the price (a concept shift) it stood above the bound
    # while the labeled accuracy was below: scores cannot show a change in the truth.
    estimated = result["estimate"]
    assert (estimated["threshold"], estimated["min_samples"]) == (0.8, 20)
    fell = estimated["fell"]
    assert fell is not None, output
    assert fell["estimated"] < estimated["threshold"]
    assert estimated["drifted_labels"] < estimated["min_samples"], output
    assert fell["at"] < drift["accuracy_fell"], output
    turned = estimated["turned"]
    assert turned["estimated"] >= estimated["threshold"] > turned["realized"], output
    assert (
        f"  estimate  accuracy≈{fell['estimated']:.2f} at {clock(fell['at'])}, below 0.8 from the"
        " scores with"
        f" {estimated['drifted_labels']} labels of the drifted world (minSamples 20)"
    ) in output
    assert "concept shift, which it cannot see" in output

    # Human review: the sidecar answered "I don't know" around the threshold and at random, the
    # reviewer labeled a few hundred queued items (each once, so as many as the estimate counts)
    # for every reason, and the accuracy they estimate, weighed by each item's known chance,
    # agrees with the realized one over the run. Its 95% interval misses 1 run in 20 by design,
    # so the test holds it to 3.3 standard errors (1 run in 1,000); the line says which it was.
    assert result["abstained"] > 0
    reviews = result["reviews"]
    assert reviews["labeled"] == model["reviews"] >= 100, output
    assert reviews["leased"] >= reviews["labeled"]
    assert {"abstain", "explore", "random", "borderline"} <= set(reviews["reasons"]), output
    realized = model["accuracy"][0]
    value, lower, upper = model["reviewed"]
    half = (upper - lower) / 2
    assert abs(value - realized) <= half * 3.29 / 1.96, output
    holds = "holds" if lower <= realized <= upper else "misses"
    assert (
        f"  reviewed  accuracy {value:.2f} [{lower:.2f}–{upper:.2f}] from {model['reviews']}"
        f" reviews, which {holds} the labeled {realized:.2f}"
    ) in output
    assert f'  abstained {result["abstained"]} answers "I don\'t know"' in output
    assert math.isfinite(model["estimated"][0])

    # Segments: the model's records per range of tenure, worst first, add up to all of them, and
    # the customers the drift brought (newcomers 18 to 30 months in, the price's newer ones) leave
    # the shorter tenures worse off than the long-standing customers, beyond both intervals.
    segment = result["segment"]
    assert segment["name"] == "tenure"
    values = segment["values"]
    assert {v["name"] for v in values} == {"<12", "[12,24)", ">=24"}, output
    assert sum(v["samples"] for v in values) == model["samples"]
    assert sum(v["labeled"] for v in values) == model["labeled"]
    ranked = [v["accuracy"][0] for v in values]
    assert ranked == sorted(ranked), output
    assert values[-1]["name"] == ">=24", output
    assert values[0]["accuracy"][2] < values[-1]["accuracy"][1], output
    assert "  segment   accuracy by tenure, worst first" in output
    for v in values:
        assert re.search(
            rf"^            {re.escape(v['name'])} +{v['accuracy'][0]:.2f} \[.* on"
            rf" {v['labeled']} labeled$",
            output,
            re.M,
        ), output

    # Versions: v1 and, for about 30% of the customers (each sent to the canary's sidecar), v2;
    # every model record is one version's. The comparison is v2 − v1 with the versions' own
    # accuracies, its interval holds the difference, and the verdict is the interval's side.
    versions = {v["name"]: v for v in result["versions"]}
    assert set(versions) == {"v1", "v2"}, output
    assert versions["v2"]["samples"] == result["canary"]
    assert versions["v1"]["samples"] + versions["v2"]["samples"] == model["samples"]
    assert 0.2 < versions["v2"]["share"] < 0.4
    assert math.isclose(versions["v1"]["share"] + versions["v2"]["share"], 1.0)
    compare = result["compare"]
    assert (compare["a"], compare["b"]) == ("v1", "v2")
    acc = compare["accuracy"]
    assert math.isclose(acc["a"], versions["v1"]["accuracy"][0])
    assert math.isclose(acc["b"], versions["v2"]["accuracy"][0])
    assert math.isclose(acc["difference"], acc["b"] - acc["a"], abs_tol=1e-9)
    assert acc["lower"] <= acc["difference"] <= acc["upper"]
    side = "better" if acc["lower"] > 0 else "worse" if acc["upper"] < 0 else "cant_tell"
    assert acc["verdict"] == side, output
    assert (acc["more_labels"] is not None) == (side == "cant_tell")
    assert len(compare["verdicts"]) >= 5
    assert set(compare["verdicts"].values()) <= {"better", "worse", "cant_tell"}
    assert (
        f"  compare   v2 − v1 accuracy {acc['difference']:+.3f} [{acc['lower']:+.3f} to"
        f" {acc['upper']:+.3f}] (95%): "
    ) in output

    # The backtest of the run replays the live story: the fallback engages once, for the
    # drifted world, and the rules are compared with the model on the episode's labeled records,
    # the live fallback's own answers left out (they are the rules', not the model's).
    replay = result["backtest"]
    assert len(replay["episodes"]) >= 1, output
    assert sum(n for _, _, n in replay["episodes"]) <= replay["predictions"]
    rules = replay["rules"]
    assert rules["compared"] == sum(rules["by_rule"]) > 0
    skipped = {s["reason"]: s["records"] for s in rules["skipped"]}
    assert skipped.get("live_fallback", 0) > 0
    assert rules["records"] == rules["compared"] + rules["no_rule"] + sum(skipped.values())

    # README's sample is this output, abridged: each of its lines is a printed one (numbers and
    # the spaces that pad them aside), so a change of the columns, legend or summary shows there.
    unmatched = [
        line
        for line in readme.demo_sample()
        if not any(readme.shape(line).fullmatch(printed) for printed in demo.lines)
    ]
    assert unmatched == [], output

    assert demo.lines[-1] == f"stopped; {workdir} removed"
    assert group_members(demo.process.pid) == [], "no process of the demo is left running"
    assert list(demo_tmp.iterdir()) == []


def test_ctrl_c_mid_story_stops_everything(demo_tmp: Path, commands: list[Command]) -> None:
    demo = Command(DEMO, env={"TMPDIR": str(demo_tmp)})
    commands.append(demo)
    workdir = Path(demo.wait_for(r"SQLite in (\S+)$", 30)[1])
    demo.wait_for(r"phase Collecting → Healthy", 30)
    demo.process.send_signal(signal.SIGINT)
    assert demo.finish(within=30) == 130
    assert demo.lines[-2:] == ["interrupted: stopping everything", f"stopped; {workdir} removed"]
    assert group_members(demo.process.pid) == []
    assert list(demo_tmp.iterdir()) == []
