"""RequestGuard's handling of a client that goes away, with our protocol's hook and without it
(under another ASGI server, a watcher task reads http.disconnect). The real servers and sockets
are in tests/integration/test_hostile.py; here the ASGI messages are driven by hand."""

from __future__ import annotations

import asyncio
from typing import Any

from embbench.servers.admission import Admission, Limits
from embbench.servers.guard import DISCONNECT_HOOK, HOOK_SUPPORTED, RequestGuard

BODY = {"type": "http.request", "body": b'{"text": "a"}', "more_body": False}


class Client:
    """One request's ASGI side: the body, then http.disconnect once `leave` is called."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.body_read = asyncio.Event()
        self._body_given = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_given:
            self._body_given = True
            return BODY
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def guard_and_app(answer: asyncio.Event) -> tuple[RequestGuard, Admission, list[str]]:
    """A guard in front of an app that reads the body, then waits for `answer` to reply."""
    admission = Admission(Limits(requests=4, inputs=100, tokens=1000))
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen.append("body")
        await answer.wait()  # the model's turn
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        seen.append("answered")

    return RequestGuard(app, admission), admission, seen


def scope(hooked: bool) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    if hooked:
        base[HOOK_SUPPORTED] = True
    return base


async def _leaves_while_waiting(hooked: bool) -> None:
    answer = asyncio.Event()
    guard, admission, seen = guard_and_app(answer)
    client = Client()
    request = scope(hooked)
    task = asyncio.create_task(guard(request, client.receive, client.send))
    await asyncio.sleep(0.01)
    assert seen == ["body"]
    if hooked:
        request[DISCONNECT_HOOK]()  # what protocol.py's connection_lost does
    else:
        client.gone.set()  # what uvicorn answers to receive() once the client is gone
    await asyncio.wait_for(task, 1)  # ends, and not with CancelledError
    assert seen == ["body"] and client.sent == []
    assert admission.dropped == 1 and admission.requests == 0
    assert DISCONNECT_HOOK not in request


def test_a_client_gone_while_its_request_waits_is_dropped_with_the_protocols_hook() -> None:
    asyncio.run(_leaves_while_waiting(hooked=True))


def test_a_client_gone_while_its_request_waits_is_dropped_under_another_server() -> None:
    asyncio.run(_leaves_while_waiting(hooked=False))


def test_a_request_that_has_begun_its_answer_is_not_cancelled() -> None:
    async def scenario() -> None:
        answer = asyncio.Event()
        guard, admission, seen = guard_and_app(answer)
        client = Client()
        request = scope(hooked=True)
        sending = asyncio.Event()
        release = asyncio.Event()

        async def slow_send(message: dict[str, Any]) -> None:
            client.sent.append(message)
            sending.set()
            await release.wait()  # the reply is on its way when the client goes

        task = asyncio.create_task(guard(request, client.receive, slow_send))
        await asyncio.sleep(0.01)
        answer.set()
        await sending.wait()
        request[DISCONNECT_HOOK]()
        release.set()
        await asyncio.wait_for(task, 1)
        assert seen == ["body", "answered"] and admission.dropped == 0

    asyncio.run(scenario())


def test_an_answered_request_leaves_no_hook_behind() -> None:
    async def scenario() -> None:
        answer = asyncio.Event()
        answer.set()
        guard, admission, seen = guard_and_app(answer)
        client = Client()
        request = scope(hooked=True)
        await guard(request, client.receive, client.send)
        assert seen == ["body", "answered"] and client.sent[0]["status"] == 200
        assert DISCONNECT_HOOK not in request and admission.requests == 0

    asyncio.run(scenario())
