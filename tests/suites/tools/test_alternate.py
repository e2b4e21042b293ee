"""suites.tools.alternate: a child process times our layer; without the peer it says how
to install it."""

from __future__ import annotations

import builtins

from suites.tools import alternate


def test_a_child_times_our_layer(capsys):
    assert alternate.main(["--threads", "1", "--child", "ours", "128"]) == 0
    assert float(capsys.readouterr().out.strip()) > 0


def test_a_child_times_the_sdpa_layer(capsys):
    assert alternate.main(["--threads", "1", "--child", "sdpa", "128"]) == 0
    assert float(capsys.readouterr().out.strip()) > 0


def test_against_sdpa_alternates_and_gives_each_lengths_median(monkeypatch, capsys):
    calls = []

    def measure(which, seq_len, threads):
        calls.append(which)
        return {"ours": 2.0, "sdpa": 4.0}[which] * (len(calls) if which == "ours" else 1)

    monkeypatch.setattr(alternate, "_measure", measure)
    assert alternate.main(["--against", "sdpa", "--lengths", "64", "--rounds", "3"]) == 0
    assert calls == ["ours", "sdpa"] * 3
    # ours/sdpa over the rounds: 2/4, 6/4, 10/4
    assert "L=64: median ours / sdpa 1.500 (range 0.500-2.500, 3 rounds)" in capsys.readouterr().out


def test_without_reformer_pytorch_it_names_the_extra(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_peer(name, *args, **kwargs):
        if name == "reformer_pytorch":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peer)
    assert alternate.main(["--lengths", "128"]) == 2
    assert "[peers]" in capsys.readouterr().err
