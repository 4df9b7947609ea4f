"""Two operators, one Lease: the holder handles monitors, both serve webhooks, and a stopped or
killed holder is replaced. Against the mock apiserver and the real feedback service; operators in
threads (a clean stop releases the Lease) or as processes (SIGKILL releases nothing)."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import kmock

from tests.support.feedback import monitor_body, record
from tests.support.operator_harness import Command, World, WorldFactory
from tests.support.pods import SELECTED_POD, review
from tests.support.waiting import eventually
from truthloop.operator.settings import LeaseSettings

pytest_plugins = ["tests.support.operator_fixtures"]

LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")


async def injects(webhook_url: str, namespace: str = "ml") -> bool:
    """Whether the webhook server at `webhook_url` gives a selected pod the sidecar."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{webhook_url}/inject-pods", json=review(SELECTED_POD, namespace=namespace)
        ) as response,
    ):
        answer = await response.json(content_type=None)
    return response.status == 200 and "patch" in answer["response"]


async def labeled(world: World, count: int, namespace: str = "ml") -> None:
    """`count` predictions with their actuals, so the status has something new to show."""
    ts = world.clock.now - 5
    ids = [f"{namespace}-{count}-{i}" for i in range(count)]
    await world.service.predictions(
        [{**record(i, 1, ts=ts), "monitor": f"{namespace}/churn"} for i in ids]
    )
    await world.service.feedback(
        *({"monitor": f"{namespace}/churn", "prediction_id": i, "actual": 1} for i in ids)
    )
    await world.service.tick()


def holder(world: World, namespace: str = "truthloop", name: str = "truthloop-operator") -> str:
    return str(world.api.object(LEASES, namespace, name)["spec"].get("holderIdentity") or "")


async def test_one_replica_handles_monitors_and_both_serve_webhooks(
    start_world: WorldFactory,
) -> None:
    world = await start_world()
    leader = world.operator
    assert leader is not None
    await eventually(lambda: leader.leading, "the first operator leads")
    follower = await world.add_replica()
    await world.create(monitor_body())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    await labeled(world, 4)
    await eventually(lambda: world.status().get("labeled") == 4, "4 labeled")
    assert await injects(follower.webhook_url)
    assert await injects(leader.webhook_url)
    assert holder(world) == leader.runtime.elector.identity
    assert not follower.leading
    for name in (
        "truthloop_operator_reconciles_total",
        "truthloop_operator_status_patches_total",
    ):
        assert leader.metric(name) > 0
        assert follower.metric(name) == 0, name
    assert not follower.runtime.supervisor.workers
    assert set(follower.runtime.supervisor.bodies) == {"ml/churn"}


async def test_a_clean_stop_hands_over_at_once(start_world: WorldFactory) -> None:
    """The Lease lasts 30 s, so only its release explains a takeover within the deadline."""
    long = LeaseSettings(duration=30, renew_deadline=20.0, retry_period=0.2)
    world = await start_world(lease=long)
    leader = world.operator
    assert leader is not None
    await eventually(lambda: leader.leading, "the first operator leads")
    follower = await world.add_replica(lease=long)
    await world.create(monitor_body())
    await eventually(lambda: world.status().get("phase") == "Collecting", "phase Collecting")
    await leader.stop()
    await eventually(lambda: follower.leading, "the second takes over", within=10)
    assert holder(world) == follower.runtime.elector.identity
    await labeled(world, 3)
    await eventually(lambda: world.status().get("labeled") == 3, "the new leader's status")
    await eventually(
        lambda: follower.metric("truthloop_operator_status_patches_total"), "counted as its own"
    )
    assert (
        world.api.object(LEASES, "truthloop", "truthloop-operator")["spec"]["leaseTransitions"] == 1
    )


async def test_a_leader_cut_off_stops_before_another_takes_over(
    start_world: WorldFactory,
) -> None:
    """The leader's renewals fail (503): it stops handling monitors at its renew deadline
    (1.4 s), before the follower may take the Lease (2 s after it last changed); the two never
    lead at once. When the leader is reachable again it follows."""
    world = await start_world()
    leader = world.operator
    assert leader is not None
    await eventually(lambda: leader.leading, "the first operator leads")
    follower = await world.add_replica()
    await world.create(monitor_body())
    await eventually(lambda: leader.runtime.supervisor.workers, "the leader's loop")
    identity = leader.runtime.elector.identity
    world.api.refusing = lambda method, path, body: (
        method == "PUT"
        and "/leases/" in path
        and (body.get("spec") or {}).get("holderIdentity") == identity
    )
    both: list[bool] = []

    def handed_over() -> bool:
        both.append(leader.leading and follower.leading)
        return follower.leading and not leader.leading

    await eventually(handed_over, "the follower leads, the leader no more", within=15)
    assert not any(both), "both led at once"
    assert not leader.runtime.supervisor.workers
    assert follower.runtime.supervisor.workers
    world.api.refusing = None
    await eventually(
        lambda: holder(world) == follower.runtime.elector.identity, "the follower's Lease"
    )
    assert not leader.leading


async def test_a_killed_leader_is_replaced_once_its_lease_expires(
    start_world: WorldFactory, tmp_path: Path
) -> None:
    """Two `truthloop operator` processes on a Lease of their own (2 s); SIGKILL releases
    nothing, so the other takes over once the Lease has not changed for 2 s."""
    world = await start_world(namespaces=("ml",))  # the commands alone serve "team"
    flags = ("--namespace", "team", "--lease-name", "team", "--lease-duration", "2")
    commands = [await world.start_command(tmp_path, *flags) for _ in range(2)]
    try:
        await eventually(lambda: _leaders(commands), "one of the commands leads", within=30)
        await world.create(monitor_body(namespace="team"))
        await eventually(
            lambda: world.status("team", "churn").get("phase") == "Collecting", "served"
        )
        [leader] = await _leaders(commands)
        [survivor] = [c for c in commands if c is not leader]
        killed = holder(world, name="team")
        leader.process.send_signal(signal.SIGKILL)
        await leader.process.wait()
        await eventually(survivor.leads, "the survivor takes over", within=15)
        assert holder(world, name="team") not in ("", killed)
        assert await injects(survivor.webhook_url, "team")
        await labeled(world, 5, "team")
        await eventually(
            lambda: world.status("team", "churn").get("labeled") == 5, "the status moves on"
        )
    finally:
        codes = [await command.stop() for command in commands]
    assert codes[commands.index(survivor)] == 0, survivor.log.read_text()[-2000:]


async def _leaders(commands: list[Command]) -> list[Command]:
    return [c for c in commands if await c.leads()]
