"""suites.tools.alternate: a child process times our layer; without the peer it says how
to install it."""

from __future__ import annotations

import builtins

from suites.tools import alternate


def test_a_child_times_our_layer(capsys):
    assert alternate.main(["--threads", "1", "--child", "ours", "128"]) == 0
    assert float(capsys.readouterr().out.strip()) > 0


def test_without_reformer_pytorch_it_names_the_extra(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_peer(name, *args, **kwargs):
        if name == "reformer_pytorch":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peer)
    assert alternate.main(["--lengths", "128"]) == 2
    assert "[peers]" in capsys.readouterr().err
