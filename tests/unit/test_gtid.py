from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drengine import gtid


def test_parse_render_round_trip() -> None:
    assert gtid.render(gtid.parse("1-2-5, 0-1-100")) == "0-1-100,1-2-5"


def test_junk_is_refused() -> None:
    with pytest.raises(ValueError):
        gtid.parse("0-1-x")


def test_covers_and_missing() -> None:
    a, b = gtid.parse("0-1-100,1-1-5"), gtid.parse("0-1-90,1-1-7")
    assert not gtid.covers(a, b)
    assert gtid.missing(a, b) == {1: 2}
    assert gtid.missing(b, a) == {0: 10}


@given(st.dictionaries(st.integers(0, 5), st.integers(1, 10**6), min_size=1))
def test_a_position_covers_itself(seqs: dict[int, int]) -> None:
    pos = gtid.parse(",".join(f"{d}-1-{s}" for d, s in seqs.items()))
    assert gtid.covers(pos, pos)
    assert gtid.missing(pos, pos) == {}
