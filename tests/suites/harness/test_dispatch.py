"""What the sweep loop says: nothing left to measure, one line per point off a terminal."""

from __future__ import annotations

import io

from tests.suites.tiny import _point, _sweep_to


def test_a_resume_with_nothing_left_to_measure_says_so(tmp_path):
    points = [_point("ok_runner", "a", 8)]
    _sweep_to(points, tmp_path)
    log = io.StringIO()
    _sweep_to(points, tmp_path, log=log)
    assert "nothing left to measure: all 1 points already have an ok row" in log.getvalue()


def test_off_a_terminal_each_finished_point_is_one_line_and_no_bar_frames(tmp_path):
    points = [_point("ok_runner", "a", 8), _point("raising_runner", "b", 8)]
    log = io.StringIO()  # not a terminal, as stderr redirected to a file is not
    _sweep_to(points, tmp_path, log=log, progress=True)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("tiny [")]
    assert len(lines) == 2
    assert lines[0].startswith("tiny [1/2] a fwd L=8: ok in ")
    assert lines[1].startswith("tiny [2/2] b fwd L=8: error in ")
