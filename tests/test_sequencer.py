"""The per-owner sequencer on its own: every decision the hub takes, without sockets,
tasks or a database."""

from __future__ import annotations

from server.changes import Logged
from server.sequencer import RECENT, LogStep, Sequencer, Verdict


def msg(seq: int) -> str:
    return f"m{seq}"


def ev(seq: int) -> Logged:
    """Event ``seq`` with the count ``seq`` (any count will do; it travels along)."""
    return Logged(seq, seq, msg(seq))


def live(at: int) -> Sequencer:
    """A sequencer whose first connection's view was at ``at``."""
    seq = Sequencer()
    assert seq.start_from(at) == []
    return seq


def test_nothing_is_delivered_before_the_first_view() -> None:
    seq = Sequencer()
    assert seq.offer(1, 1, msg(1)) is Verdict.EARLY
    assert seq.offer(3, 3, msg(3)) is Verdict.EARLY
    assert seq.delivered is None and seq.seen_max == 3


def test_an_early_seq_past_the_first_view_calls_for_a_log_read() -> None:
    seq = Sequencer()
    seq.offer(5, 5, msg(5))
    seq.start_from(3)
    assert seq.behind(3), "seq 5 arrived while the view (at 3) was read"
    assert not live(5).behind(5)


def test_the_next_seq_is_delivered_and_remembered() -> None:
    seq = live(4)
    assert seq.offer(5, 5, msg(5)) is Verdict.DELIVER
    assert seq.delivered == 5
    assert list(seq.recent) == [ev(5)]


def test_a_seq_at_or_below_delivered_is_a_duplicate() -> None:
    seq = live(4)
    seq.offer(5, 5, msg(5))
    for dup in (5, 4, 1):
        assert seq.offer(dup, dup, msg(dup)) is Verdict.DUPLICATE
    assert seq.delivered == 5 and len(seq.recent) == 1


def test_a_single_missing_seq_is_a_gap_and_nothing_advances() -> None:
    seq = live(4)
    assert seq.offer(6, 6, msg(6)) is Verdict.GAP
    assert seq.delivered == 4 and seq.seen_max == 6
    assert seq.behind(4)


def test_the_log_fills_a_gap_in_order_once() -> None:
    seq = live(4)
    seq.offer(6, 6, msg(6))
    steps = seq.take_log([ev(5), ev(6)])
    assert steps == [LogStep(5, 5, msg(5), lost=False), LogStep(6, 6, msg(6), lost=False)]
    assert seq.delivered == 6
    assert seq.take_log([ev(5), ev(6)]) == [], "a second read adds nothing"
    assert seq.offer(6, 6, msg(6)) is Verdict.DUPLICATE
    assert seq.offer(7, 7, msg(7)) is Verdict.DELIVER


def test_a_log_read_skips_what_arrived_live_while_it_ran() -> None:
    seq = live(4)
    assert seq.offer(6, 6, msg(6)) is Verdict.GAP  # a log read after 4 starts
    assert seq.take_log([ev(5)]) == [LogStep(5, 5, msg(5), lost=False)]
    assert seq.offer(6, 6, msg(6)) is Verdict.DELIVER  # 6 again, now in order
    steps = seq.take_log([ev(5), ev(6), ev(7)])  # a read that overlaps
    assert steps == [LogStep(7, 7, msg(7), lost=False)]
    assert seq.offer(7, 7, msg(7)) is Verdict.DUPLICATE


def test_rows_that_skip_a_seq_mean_the_log_lost_it() -> None:
    seq = live(4)
    steps = seq.take_log([ev(8), ev(9)])
    assert steps == [LogStep(8, 8, msg(8), lost=True), LogStep(9, 9, msg(9), lost=False)]
    assert seq.delivered == 9


def test_the_log_before_any_view_is_ignored() -> None:
    seq = Sequencer()
    assert seq.take_log([ev(1)]) == []
    assert seq.delivered is None


def test_a_view_at_or_past_delivered_fits() -> None:
    seq = live(10)
    assert seq.fits(10) and seq.fits(12)
    assert Sequencer().fits(0), "the first view always fits"


def test_a_view_behind_delivered_fits_while_recent_holds_every_later_event() -> None:
    seq = live(10)
    for n in range(11, 14):
        seq.offer(n, n, msg(n))
    assert seq.fits(10) and seq.fits(12)
    assert seq.start_from(10) == [ev(11), ev(12), ev(13)]
    assert seq.start_from(12) == [ev(13)]
    assert seq.start_from(13) == []


def test_a_view_older_than_recent_does_not_fit_and_must_be_read_again() -> None:
    seq = live(0)
    for n in range(1, RECENT + 5):
        seq.offer(n, n, msg(n))
    oldest = seq.recent[0].seq
    assert oldest == 5
    assert seq.fits(oldest - 1), "recent starts right after this view"
    assert not seq.fits(oldest - 2), "the event after this view is no longer kept"
    assert not seq.fits(0)


def test_a_later_view_sets_no_new_start_and_is_caught_up_to() -> None:
    seq = live(3)
    # A second connection's view is newer than what the first was given: its seqs
    # 4..6 must still reach the first connection, through the log.
    assert seq.start_from(6) == []
    assert seq.delivered == 3
    assert seq.behind(6)


def test_behind_compares_with_the_database() -> None:
    seq = live(7)
    assert not seq.behind(7)
    assert seq.behind(8)
    assert not Sequencer().behind(100), "nothing is delivered yet: the join reads it"
