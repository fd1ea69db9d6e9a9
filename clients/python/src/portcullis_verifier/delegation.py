"""Delegation (RFC 8693 §4.1, §4.4): who acts on whose behalf, as a token says it.

A token issued by token exchange for a delegation carries the subject in ``sub`` and the party
acting for it in ``act``. A nested ``act`` names the actor before that one::

    {"sub": "user-42", "act": {"sub": "agent-7", "act": {"sub": "gateway"}}}

Here ``agent-7`` is the current actor, calling on behalf of ``user-42``; ``gateway`` delegated
to ``agent-7`` before. RFC 8693 §4.1: access control considers the top-level claims and the
*current* actor only; prior actors are informational. ``may_act`` (§4.4) names who may become
an actor for the subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Actor:
    """One party of an ``act`` chain: its ``sub`` (and ``iss`` when given) and all its claims
    (the ``act`` object without its nested ``act``)."""

    sub: str | None
    iss: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str | None:
        value = self.claims.get("client_id")
        return value if isinstance(value, str) else None


def actor_chain(claims: Mapping[str, Any]) -> list[Actor]:
    """The ``act`` chain, current actor first, then each prior actor; [] without ``act``.

    The claims are those ``TokenVerifier.verify`` returned: it refuses a malformed ``act``.
    Anything not an object ends the chain here.
    """
    chain: list[Actor] = []
    act: Any = claims.get("act")
    while isinstance(act, dict):
        sub, iss = act.get("sub"), act.get("iss")
        chain.append(Actor(
            sub=sub if isinstance(sub, str) else None,
            iss=iss if isinstance(iss, str) else None,
            claims={k: v for k, v in act.items() if k != "act"},
        ))
        act = act.get("act")
    return chain


def may_act(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``may_act`` claim (RFC 8693 §4.4), or None."""
    value = claims.get("may_act")
    return dict(value) if isinstance(value, dict) else None
