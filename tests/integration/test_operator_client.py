"""The operator's feedback-service client: the calls it makes and what its errors mean."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.fake_feedback import FakeFeedback
from tests.support.ports import free_port
from truthloop.operator.client import FeedbackClient, NotRegistered, Rejected, Unavailable
from truthloop.operator.settings import FeedbackSettings

BODY = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "churn", "namespace": "ml", "generation": 2, "uid": "u-1",
                 "managedFields": [{"manager": "kubectl"}]},
    "spec": {"selector": {"matchLabels": {"app": "churn"}}},
    "status": {"phase": "Healthy"},
}  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[FakeFeedback]:
    async with FakeFeedback(token="s3cret") as service:
        yield service


@pytest.fixture
async def client(fake: FakeFeedback) -> AsyncIterator[FeedbackClient]:
    async with FeedbackClient(FeedbackSettings(url=fake.url, token="s3cret", timeout=1)) as c:
        yield c


async def test_register_read_follow_and_delete(fake: FakeFeedback, client: FeedbackClient) -> None:
    await client.register(BODY)
    assert fake.monitors["ml/churn"] == {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": "churn", "namespace": "ml", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": "churn"}}},
    }
    view = await client.view("ml/churn")
    assert view.status.phase == "Collecting"
    assert await client.keys() == ["ml/churn"]
    version = view.status.state_version
    follow = asyncio.ensure_future(client.state("ml/churn", version, wait=5))
    fake.set_state("ml/churn", phase="FallbackActive")
    state = await asyncio.wait_for(follow, 5)
    assert state.phase == "FallbackActive"
    assert state.version == version + 1
    await client.delete("ml/churn")
    assert fake.monitors == {}
    await client.delete("ml/churn")  # already gone: still deleted


async def test_a_service_in_trouble_is_unavailable(
    fake: FakeFeedback, client: FeedbackClient
) -> None:
    fake.fail(503, retry_after="7")
    with pytest.raises(Unavailable) as caught:
        await client.register(BODY)
    assert caught.value.delay == 7.0
    assert isinstance(caught.value, ConnectionError)
    fake.fail(429)
    with pytest.raises(Unavailable):
        await client.keys()
    fake.stall = 0.4
    async with FeedbackClient(FeedbackSettings(url=fake.url, timeout=0.1)) as impatient:
        with pytest.raises(Unavailable, match="TimeoutError"):
            await impatient.keys()


async def test_nothing_listening_is_unavailable() -> None:
    settings = FeedbackSettings(url=f"http://127.0.0.1:{free_port()}", timeout=1)
    async with FeedbackClient(settings) as client:
        with pytest.raises(Unavailable, match="ClientConnectorError"):
            await client.register(BODY)


async def test_a_refusal_is_rejected_with_the_services_details(
    fake: FakeFeedback, client: FeedbackClient
) -> None:
    fake.fail(400)
    with pytest.raises(Rejected) as caught:
        await client.register(BODY)
    assert caught.value.status == 400
    assert caught.value.details == ("spec.x: no",)
    assert isinstance(caught.value, ValueError)
    assert "spec.x: no" in str(caught.value)
    with pytest.raises(NotRegistered):
        await client.view("ml/unknown")


async def test_a_namespace_token_is_registered_by_its_hash(
    fake: FakeFeedback, client: FeedbackClient
) -> None:
    await client.register_token("ml", "ab" * 32)
    assert fake.tokens == {"ml": "ab" * 32}
    assert fake.calls("PUT", "/v1/tokens/{namespace}")[0].authorization == "Bearer s3cret"


async def test_writes_carry_the_token(fake: FakeFeedback) -> None:
    async with FeedbackClient(FeedbackSettings(url=fake.url, token="wrong")) as client:
        with pytest.raises(Rejected) as caught:
            await client.register(BODY)
    assert caught.value.status == 401


async def test_an_answer_that_is_not_the_calls_shape_is_rejected(
    fake: FakeFeedback, client: FeedbackClient
) -> None:
    await client.register(BODY)
    fake.fail(200)  # a 200 whose body is an error, not a monitor
    with pytest.raises(Rejected, match=r"the answer is not what the call expects: .*`metadata`"):
        await client.view("ml/churn")
    assert (await client.view("ml/churn")).metadata.name == "churn"
