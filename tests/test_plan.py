"""Chunk planning and work stealing keep the file tiled by block-aligned spans."""

from __future__ import annotations

import itertools

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from downloader.engine.plan import DIGEST_SIZE, Plan, Span, repair, served_blocks, served_bytes
from storage import ChunkRecord

B = 1024  # a small block keeps the arithmetic readable


def fresh(size: int, connections: int = 4) -> Plan:
    return Plan.fresh(
        size, connections=connections, block=B, min_chunk=4 * B, max_chunk=16 * B, min_steal=2 * B
    )


def write(span: Span, nbytes: int) -> None:
    """Pretend the owner wrote ``nbytes`` more (whole blocks, or up to the end)."""
    length = min(nbytes, span.end - (span.start + span.done))
    span.done += length
    span.digests += b"d" * DIGEST_SIZE * (-(-length // B))
    span.pos = span.start + span.done


def test_a_fresh_plan_tiles_the_file_with_block_aligned_chunks() -> None:
    plan = fresh(100 * B + 7)
    spans = plan.spans
    assert spans[0].start == 0 and spans[-1].end == 100 * B + 7
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert all(s.start % B == 0 for s in spans)


def test_spans_are_handed_out_in_file_order() -> None:
    plan = fresh(64 * B)
    taken = [plan.acquire(w).start for w in range(3)]
    assert taken == sorted(taken) and taken[0] == 0


def test_an_idle_worker_steals_half_of_the_largest_remaining_range() -> None:
    plan = Plan(64 * B, B, [Span(0, 64 * B)], min_steal=2 * B)
    first = plan.acquire(0)
    write(first, 10 * B)
    stolen = plan.acquire(1)
    assert stolen is not None and stolen.owner == 1
    assert stolen.start == 37 * B and stolen.end == 64 * B and first.end == 37 * B


def test_nothing_is_stolen_below_the_minimum() -> None:
    plan = Plan(4 * B, B, [Span(0, 4 * B)], min_steal=2 * B)
    write(plan.acquire(0), 3 * B)
    assert plan.acquire(1) is None


def test_prefix_is_the_contiguous_written_start() -> None:
    plan = Plan(8 * B, B, [Span(0, 4 * B), Span(4 * B, 8 * B)], min_steal=2 * B)
    a, b = plan.acquire(0), plan.acquire(1)
    write(b, 4 * B)
    assert plan.prefix() == 0
    write(a, 2 * B)
    assert plan.prefix() == 2 * B
    write(a, 2 * B)
    assert plan.prefix() == 8 * B and plan.finished


def test_repair_refetches_only_bad_blocks_and_keeps_good_ones() -> None:
    digests = b"".join(bytes([i]) * DIGEST_SIZE for i in range(6))
    chunk = ChunkRecord(1, 0, 10 * B, 6 * B, digests)
    fixed = repair([chunk], {2 * B, 4 * B}, B)
    assert fixed == [
        ChunkRecord(1, 0, 2 * B, 2 * B, digests[: 2 * DIGEST_SIZE]),
        ChunkRecord(1, 2 * B, 3 * B),
        ChunkRecord(1, 3 * B, 4 * B, B, digests[3 * DIGEST_SIZE : 4 * DIGEST_SIZE]),
        ChunkRecord(1, 4 * B, 5 * B),
        ChunkRecord(1, 5 * B, 6 * B, B, digests[5 * DIGEST_SIZE :]),
        ChunkRecord(1, 6 * B, 10 * B),
    ]
    assert Plan.from_chunks(10 * B, B, fixed, 2 * B).written == 4 * B


def test_inconsistent_ledger_chunks_are_refused() -> None:
    try:
        Plan.from_chunks(10 * B, B, [ChunkRecord(1, 0, 4 * B), ChunkRecord(1, 5 * B, 10 * B)], B)
    except ValueError as e:
        assert "gap" in str(e)
    else:
        raise AssertionError("a gap was accepted")


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=300 * B),
    steps=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["acquire", "write", "release"])),
        max_size=120,
    ),
)
def test_any_interleaving_keeps_spans_tiled_aligned_and_owned_once(size, steps) -> None:
    plan = fresh(size, connections=3)
    held: dict[int, Span] = {}
    for worker, action in steps:
        if action == "acquire" and worker not in held:
            span = plan.acquire(worker)
            if span is not None:
                held[worker] = span
        elif action == "write" and worker in held:
            write(held[worker], 3 * B)
            if held[worker].finished:
                plan.release(held.pop(worker))
        elif action == "release" and worker in held:
            plan.release(held.pop(worker))
        spans = plan.spans
        assert spans[0].start == 0 and spans[-1].end == size
        assert all(a.end == b.start for a, b in itertools.pairwise(spans))
        assert all(s.start % B == 0 and s.start <= s.start + s.done <= s.end for s in spans)
        assert all(len(s.digests) == DIGEST_SIZE * -(-s.done // B) for s in spans)
        owners = [s.owner for s in spans if s.owner is not None]
        assert len(owners) == len(set(owners))
    # Draining with one worker always finishes the file.
    for span in held.values():
        plan.release(span)
    while (span := plan.acquire(99)) is not None:
        write(span, size)
        plan.release(span)
    assert plan.finished and plan.prefix() == size


def test_a_slow_spans_rest_is_cut_at_the_next_block_past_what_it_received() -> None:
    plan = Plan(16 * B, B, [Span(0, 16 * B)], min_steal=2 * B)
    slow = plan.acquire(0)
    write(slow, 3 * B)
    slow.pos = 3 * B + 10  # received, not yet written
    rest = plan.split(slow, slow.pos, 1)
    assert (slow.end, rest.start, rest.end, rest.owner) == (4 * B, 4 * B, 16 * B, 1)
    assert [s.start for s in plan.spans] == [0, 4 * B]


def test_a_shadow_that_finishes_first_stands_for_the_spans_tail_digest_for_digest() -> None:
    plan = Plan(4 * B + 100, B, [Span(0, 4 * B + 100)], min_steal=2 * B)
    slow = plan.acquire(0)
    write(slow, 2 * B)
    slow.done += 50  # half a block written, not yet digested
    shadow = plan.shadow(slow)
    assert (shadow.start, shadow.end) == (2 * B, 4 * B + 100)
    shadow.done, shadow.digests = shadow.end - shadow.start, bytearray(b"s" * DIGEST_SIZE * 3)
    plan.release(slow, 0)
    assert plan.adopt(slow, shadow) == 4 * B + 100 - (2 * B + 50)
    assert slow.finished and plan.finished
    assert bytes(slow.digests) == b"d" * 2 * DIGEST_SIZE + b"s" * 3 * DIGEST_SIZE
    [record] = plan.records(1)
    Plan.from_chunks(plan.size, B, [record], 2 * B)  # what the ledger gets is consistent


def test_a_shadow_from_elsewhere_than_a_digested_block_is_refused() -> None:
    plan = Plan(4 * B, B, [Span(0, 4 * B)], min_steal=2 * B)
    span = plan.acquire(0)
    write(span, B)
    early = Span(2 * B, 4 * B, done=2 * B, digests=bytearray(b"s" * 2 * DIGEST_SIZE))
    try:
        plan.adopt(span, early)
    except ValueError:
        return
    raise AssertionError("a shadow past the digested blocks was adopted")


def test_release_by_a_worker_that_no_longer_owns_the_span_changes_nothing() -> None:
    plan = Plan(4 * B, B, [Span(0, 4 * B)], min_steal=2 * B)
    span = plan.acquire(0)
    span.owner = 7  # handed to another connection meanwhile
    plan.release(span, 0)
    assert span.owner == 7


# --- who served which bytes ------------------------------------------------------------------


def served(span: Span, nbytes: int, url: str) -> None:
    """``url`` served and wrote ``nbytes`` more of ``span``."""
    span.served(span.start + span.done, url)
    write(span, nbytes)


def test_sources_follow_a_span_through_its_record_and_back() -> None:
    plan = fresh(64 * B)
    span = plan.acquire(0)
    assert span is not None
    served(span, 2 * B, "http://a/f")
    served(span, B, "http://a/f")  # the same source goes on: one run
    served(span, B, "http://b/f")
    record = span.record(1, B)
    assert record.sources == ((span.start, "http://a/f"), (span.start + 3 * B, "http://b/f"))
    assert served_bytes([record]) == {"http://a/f": 3 * B, "http://b/f": B}
    assert served_blocks([record], B)["http://b/f"] == {span.start + 3 * B}
    again = Plan.from_chunks(64 * B, B, plan.records(1), 2 * B)
    assert again.spans[0].sources == list(record.sources)


def test_a_record_names_only_sources_of_durable_blocks() -> None:
    span = Span(0, 8 * B)
    served(span, 2 * B, "http://a/f")
    span.served(2 * B, "http://b/f")
    span.done += B // 2  # half a block from b: not digested, not durable
    assert span.record(1, B).sources == ((0, "http://a/f"),)


def test_a_split_leaves_the_sources_with_the_bytes_before_the_cut() -> None:
    plan = fresh(64 * B, connections=1)
    span = plan.acquire(0)
    assert span is not None
    served(span, 2 * B, "http://a/f")
    rest = plan.split(span, span.start + 2 * B, 1)
    assert rest is not None and rest.sources == []
    assert span.record(1, B).sources == ((span.start, "http://a/f"),)


def test_an_adopted_shadow_brings_its_own_sources() -> None:
    plan = fresh(16 * B, connections=1)
    span = plan.acquire(0)
    assert span is not None
    served(span, 2 * B, "http://slow/f")
    shadow = plan.shadow(span)
    served(shadow, shadow.end - shadow.start, "http://fast/f")
    plan.adopt(span, shadow)
    record = span.record(1, B)
    assert record.sources == ((span.start, "http://slow/f"), (shadow.start, "http://fast/f"))
    assert served_bytes([record]) == {
        "http://slow/f": 2 * B,
        "http://fast/f": span.end - shadow.start,
    }


def test_repair_cuts_the_sources_with_the_chunk() -> None:
    chunk = ChunkRecord(
        1, 0, 8 * B, 8 * B, bytes(8 * DIGEST_SIZE), ((0, "http://a/f"), (4 * B, "http://b/f"))
    )
    fixed = repair([chunk], {2 * B, 5 * B}, B)
    sources = {(c.start, c.end): c.sources for c in fixed}
    assert sources[(0, 2 * B)] == ((0, "http://a/f"),)
    assert sources[(2 * B, 3 * B)] == ()  # to fetch again: nobody served it yet
    assert sources[(3 * B, 5 * B)] == ((3 * B, "http://a/f"), (4 * B, "http://b/f"))
    assert sources[(6 * B, 8 * B)] == ((6 * B, "http://b/f"),)
    assert served_bytes(fixed) == {"http://a/f": 3 * B, "http://b/f": 3 * B}


def test_a_checkpoint_records_the_partial_block_with_the_digest_of_its_prefix() -> None:
    span = Span(0, 4 * B)
    data = bytes(range(256)) * 8  # 2 KiB: one whole block and half of the next
    span.hasher.update(data[:B])
    span.digests += span.hasher.digest()
    span.hasher.reset()
    span.hasher.update(data[B : B + B // 2])
    span.done = B + B // 2
    span.wrote(B)
    record = span.record(1, B)
    assert record.done == B + B // 2
    assert record.xxh3[DIGEST_SIZE:] == xxhash.xxh3_64_digest(data[B : B + B // 2])
    span.tail = b""  # no digest vouches for the partial block: only whole blocks count
    assert span.record(1, B).done == B


def test_a_recorded_partial_block_comes_back_unseeded_and_can_be_dropped() -> None:
    digests = bytes(range(3 * DIGEST_SIZE))
    plan = Plan.from_chunks(8 * B, B, [ChunkRecord(1, 0, 8 * B, 2 * B + 5, digests)], B)
    [span] = plan.spans
    assert not span.seeded and span.tail == digests[2 * DIGEST_SIZE :]
    assert span.digests == digests[: 2 * DIGEST_SIZE] and plan.written == 2 * B + 5
    assert span.record(1, B) == ChunkRecord(1, 0, 8 * B, 2 * B + 5, digests)
    assert plan.drop_tail(span) == 5
    assert span.seeded and span.record(1, B) == ChunkRecord(1, 0, 8 * B, 2 * B, digests[:16])


def test_repair_of_a_bad_partial_block_refetches_it_without_overlap() -> None:
    digests = bytes(range(3 * DIGEST_SIZE))
    chunk = ChunkRecord(1, 0, 8 * B, 2 * B + 5, digests)
    fixed = repair([chunk], {2 * B}, B)
    assert fixed == [
        ChunkRecord(1, 0, 2 * B, 2 * B, digests[: 2 * DIGEST_SIZE]),
        ChunkRecord(1, 2 * B, 3 * B),
        ChunkRecord(1, 3 * B, 8 * B),
    ]
    Plan.from_chunks(8 * B, B, fixed, B)  # tiles the file


def test_repair_before_a_good_partial_block_keeps_it_with_the_unfinished_rest() -> None:
    digests = bytes(range(4 * DIGEST_SIZE))
    chunk = ChunkRecord(1, 0, 8 * B, 3 * B + 5, digests)
    fixed = repair([chunk], {B}, B)
    assert fixed == [
        ChunkRecord(1, 0, B, B, digests[:DIGEST_SIZE]),
        ChunkRecord(1, B, 2 * B),
        ChunkRecord(1, 2 * B, 8 * B, B + 5, digests[2 * DIGEST_SIZE :]),
    ]
    plan = Plan.from_chunks(8 * B, B, fixed, B)
    assert plan.written == 2 * B + 5 and not plan.spans[-1].seeded
