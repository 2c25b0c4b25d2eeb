from __future__ import annotations

import pytest

from embbench.config.options import ServerOptions
from embbench.servers import admission
from embbench.servers.admission import Admission, Limits, Overloaded


def test_limits_derive_from_the_options() -> None:
    assert Limits.of(ServerOptions()) == Limits(requests=512, inputs=2048, tokens=262_144)
    small = Limits.of(ServerOptions(max_concurrent_requests=4, max_batch_size=8))
    assert small == Limits(requests=4, inputs=512, tokens=262_144)
    # The input bound is never below the request cap.
    assert Limits.of(ServerOptions(max_concurrent_requests=5000)).inputs == 5000


def test_requests_beyond_the_cap_are_refused_and_slots_come_back() -> None:
    gate = Admission(Limits(requests=2, inputs=100, tokens=1000))
    with gate.admit(), gate.admit():
        with pytest.raises(Overloaded), gate.admit():
            pass
        assert gate.stats()["requests_in_flight"] == 2
    with gate.admit():
        assert gate.requests == 1
    assert gate.stats() == {
        "requests_in_flight": 0,
        "inputs_in_flight": 0,
        "tokens_in_flight": 0,
        "rejected": 1,
        "dropped": 0,
    }


def test_inputs_and_tokens_are_bounded_but_one_request_alone_passes() -> None:
    gate = Admission(Limits(requests=10, inputs=64, tokens=1000))
    with gate.admit() as alone:
        alone.charge(inputs=200, tokens=5000)  # over both bounds, but nothing else in flight
    with gate.admit() as first:
        first.charge(inputs=60, tokens=900)
        with gate.admit() as second:
            with pytest.raises(Overloaded, match="inputs"):
                second.charge(inputs=5)
            second.charge(inputs=4)
            with pytest.raises(Overloaded, match="tokens"):
                second.charge(tokens=101)
            second.charge(tokens=100)
            assert (gate.inputs, gate.tokens) == (64, 1000)
        assert (gate.inputs, gate.tokens) == (60, 900)
    assert (gate.inputs, gate.tokens, gate.rejected) == (0, 0, 2)


def test_the_current_request_is_charged_without_passing_its_ticket() -> None:
    gate = Admission(Limits(requests=10, inputs=64, tokens=1000))
    admission.charge(inputs=1000)  # no admitted request here (a warm-up, a test): no-op
    with gate.admit() as ticket:
        admission.charge(inputs=3, tokens=30)
        assert (ticket.inputs, ticket.tokens) == (3, 30)
    assert admission.current_ticket.get() is None
