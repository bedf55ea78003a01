"""Ports handed out for a stack's servers: never the same one twice in one process."""

from __future__ import annotations

import itertools

import pytest

from ops import procs


def _draws(monkeypatch: pytest.MonkeyPatch, *ports: int) -> None:
    """``random.randrange`` in :mod:`ops.procs` answers ``ports`` in turn, then the last one forever."""
    seq = itertools.chain(ports, itertools.repeat(ports[-1]))
    monkeypatch.setattr(procs.random, "randrange", lambda *_a: next(seq))
    monkeypatch.setattr(procs, "_handed_out", set())
    monkeypatch.setattr(procs, "_ephemeral_low", lambda: 32768)
    monkeypatch.setattr(procs, "_bindable", lambda *_a: True, raising=False)  # whatever this machine runs


def test_a_port_handed_out_is_not_handed_out_again_before_its_server_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI: a secured stack's Kafka controller and its query worker both drew 21220; nothing listened on
    # it yet when the second was drawn, so the bind test alone let it through.
    _draws(monkeypatch, 21220, 21220, 21221)
    first, second = procs.free_port(), procs.free_port()
    assert first == 21220
    assert second == 21221


def test_the_port_above_a_pair_is_taken_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _draws(monkeypatch, 24000, 24001, 24003)
    assert procs.free_port_pair() == 24000
    assert procs.free_port() == 24003


def test_a_pair_whose_upper_port_was_handed_out_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    _draws(monkeypatch, 25001, 25000, 25004)
    assert procs.free_port() == 25001
    assert procs.free_port_pair() == 25004
