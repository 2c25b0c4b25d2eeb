"""Admission control: how much work a server process takes on before it answers 429.

As TEI's `--max-concurrent-requests`, a request beyond the cap is refused at once (429 with
Retry-After) rather than queued for longer than any client waits. Three bounds, per process,
all derived from the server options:

- requests in flight (being tokenised, queued or computed): `max_concurrent_requests`;
- inputs in flight: 64 full batches of rows (64 x `max_batch_size`, 2048 by default), or the
  request cap if that is larger: a client cannot fill the cap with 64-input requests;
- tokens in flight: 16 full forward passes (16 x `max_batch_tokens`, 262,144 by default), which
  is what long inputs run into first (1024 inputs of 256 tokens).

A request larger than the input or token bound on its own is still admitted when nothing else is
in flight, so no valid request is refused for ever. Everything here runs on the event loop.
Per-worker and preload run one Admission per worker process, each with the whole cap: sharing it
out would refuse requests below the cap whenever the kernel hands one worker more connections
than the other (it gives each to whichever accepts first), so W workers hold up to W x the cap.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from embbench.config.options import ServerOptions

RETRY_AFTER_S = 1
QUEUED_BATCHES_OF_ROWS = 64
QUEUED_BATCHES_OF_TOKENS = 16


class Overloaded(Exception):
    """Admitting this request would go over one of the bounds."""


@dataclass(frozen=True)
class Limits:
    requests: int
    inputs: int
    tokens: int

    @classmethod
    def of(cls, options: ServerOptions) -> Limits:
        requests = options.max_concurrent_requests
        return cls(
            requests=requests,
            inputs=max(requests, QUEUED_BATCHES_OF_ROWS * options.max_batch_size),
            tokens=QUEUED_BATCHES_OF_TOKENS * options.max_batch_tokens,
        )


class Ticket:
    """One admitted request; holds its share of the bounds until it leaves. The context manager
    Admission.admit returns: a class, since @contextmanager's generator machinery was a fifth of
    the Python the API spent per request (cProfile of the layers alone)."""

    __slots__ = ("_token", "admission", "inputs", "tokens")

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.inputs = 0
        self.tokens = 0
        self._token: contextvars.Token[Ticket | None] | None = None

    def charge(self, *, inputs: int = 0, tokens: int = 0) -> None:
        """Count the request's inputs (once parsed) and tokens (once tokenised)."""
        self.admission.charge(self, inputs, tokens)

    def __enter__(self) -> Ticket:
        admission = self.admission
        if admission.requests >= admission.limits.requests:
            admission.rejected += 1
            raise Overloaded(f"{admission.requests} requests in flight; retry later")
        admission.requests += 1
        self._token = current_ticket.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            current_ticket.reset(self._token)
            self._token = None
        admission = self.admission
        admission.requests -= 1
        admission.inputs -= self.inputs
        admission.tokens -= self.tokens


# The ticket of the request this task serves: the HTTP layer admits a request (guard.py) and the
# API charges its inputs and tokens once it knows them, without passing the ticket through.
current_ticket: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "current_ticket", default=None
)


def charge(*, inputs: int = 0, tokens: int = 0) -> None:
    """Charge the current request's ticket, if it was admitted (Overloaded beyond a bound)."""
    ticket = current_ticket.get()
    if ticket is not None:
        ticket.charge(inputs=inputs, tokens=tokens)


class Admission:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests = 0
        self.inputs = 0
        self.tokens = 0
        self.rejected = 0
        self.dropped = 0  # admitted, then cancelled because the client went away (guard.py)

    def admit(self) -> Ticket:
        """A request slot to hold in a `with` (Overloaded on entry if none is free), as the
        current ticket."""
        return Ticket(self)

    def charge(self, ticket: Ticket, inputs: int, tokens: int) -> None:
        # Another request's share in flight is what may refuse this one: alone, it passes.
        over_inputs = self.inputs > ticket.inputs and self.inputs + inputs > self.limits.inputs
        over_tokens = self.tokens > ticket.tokens and self.tokens + tokens > self.limits.tokens
        if over_inputs or over_tokens:
            self.rejected += 1
            what = "inputs" if over_inputs else "tokens"
            queued = self.inputs if over_inputs else self.tokens
            raise Overloaded(f"{queued} {what} in flight; retry later")
        ticket.inputs += inputs
        ticket.tokens += tokens
        self.inputs += inputs
        self.tokens += tokens

    def stats(self) -> dict[str, int]:
        return {
            "requests_in_flight": self.requests,
            "inputs_in_flight": self.inputs,
            "tokens_in_flight": self.tokens,
            "rejected": self.rejected,
            "dropped": self.dropped,
        }
