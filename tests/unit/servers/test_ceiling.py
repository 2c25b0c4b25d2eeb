"""The batches the offline ceiling's "reachable" figure runs: what a batched server would form."""

from __future__ import annotations

from embbench.servers.ceiling import arrival_batches


def flat(batches: list[list[int]]) -> list[int]:
    return sorted(i for batch in batches for i in batch)


def test_every_input_once_in_batches_within_the_limits() -> None:
    lengths = [24, 30, 250, 18, 120, 26, 256, 40, 22, 64] * 5
    batches = arrival_batches(lengths, window=8, max_batch_size=4, batch_tokens=256, spread=2.0)
    assert flat(batches) == list(range(len(lengths)))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert len(batch) <= 4
        assert len(batch) == 1 or padded <= 256  # the oldest goes alone when it is over


def test_only_what_is_waiting_can_share_a_batch() -> None:
    # Ten short inputs then a long one, then ten short: with a window of 3 no batch spans more
    # than 3 consecutive arrivals, whatever sorting would have allowed.
    lengths = [20] * 10 + [200] + [20] * 10
    batches = arrival_batches(lengths, window=3, max_batch_size=32, batch_tokens=1000, spread=2.0)
    assert all(max(batch) - min(batch) < 3 for batch in batches)
    assert [200] in [[lengths[i] for i in batch] for batch in batches]


def test_a_larger_window_lets_batches_grow() -> None:
    lengths = [20] * 40
    small = arrival_batches(lengths, window=1, max_batch_size=32, batch_tokens=256, spread=2.0)
    large = arrival_batches(lengths, window=40, max_batch_size=32, batch_tokens=256, spread=2.0)
    assert [len(b) for b in small] == [1] * 40
    assert [len(b) for b in large] == [12, 12, 12, 4]  # 12 x 20 = 240 <= 256


def test_a_server_is_judged_against_the_higher_ceiling_figure() -> None:
    from embbench.results.ceilings import Ceiling, best_rate

    sorted_only = Ceiling.from_json({"sentences_per_s": 300.0})
    assert best_rate(sorted_only) == (300.0, "sorted")
    higher = Ceiling.from_json({"sentences_per_s": 300.0, "reachable": {"sentences_per_s": 480.0}})
    assert best_rate(higher) == (480.0, "reachable")
    lower = Ceiling.from_json({"sentences_per_s": 300.0, "reachable": {"sentences_per_s": 250.0}})
    assert best_rate(lower) == (300.0, "sorted")
    rate, figure = best_rate(Ceiling())
    assert rate != rate and figure == "sorted"  # nan: nothing measured
