"""RFC 8693 delegation: the act chain and may_act, as a view sees them."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import Keys, claims, sign
from helpers import server as make_server
from portcullis_verifier import Actor, TokenError, actor_chain, may_act
from portcullis_verifier.core import Principal
from webapps import FRAMEWORKS, make_web

CHAIN = {"sub": "agent-7", "client_id": "agent-app",
         "act": {"sub": "gateway", "iss": "https://other-as.example.test",
                 "act": {"sub": "scheduler"}}}


def test_actor_chain() -> None:
    chain = actor_chain({"sub": "user-42", "act": CHAIN})
    assert [a.sub for a in chain] == ["agent-7", "gateway", "scheduler"]
    assert chain[0] == Actor(sub="agent-7", claims={"sub": "agent-7", "client_id": "agent-app"})
    assert chain[0].client_id == "agent-app"
    assert chain[1].iss == "https://other-as.example.test"
    assert actor_chain({"sub": "x"}) == []
    assert actor_chain({"act": {"client_id": "no-sub"}})[0].sub is None


def test_principal_exposes_delegation() -> None:
    p = Principal(claims={"sub": "user-42", "act": CHAIN,
                          "may_act": {"sub": "agent-7"}})
    assert p.delegated and p.actor_sub == "agent-7"
    assert p.actor is not None and p.actor.sub == "agent-7"
    assert p.actor_subs == ["agent-7", "gateway", "scheduler"]
    assert p.may_act == {"sub": "agent-7"}
    direct = Principal(claims={"sub": "svc"})
    assert not direct.delegated and direct.actor is None and direct.actor_subs == []
    assert direct.may_act is None and may_act({"may_act": "x"}) is None


@pytest.mark.parametrize("act", ["agent", ["agent"], 1, {"sub": 5},
                                 {"sub": "a", "act": "b"}, {"sub": "a", "act": {"sub": []}}])
def test_malformed_act_is_refused(keys: Keys, act: Any) -> None:
    server = make_server(keys)
    with pytest.raises(TokenError, match="act claim is malformed"):
        server.verifier.verify(sign(keys, claims(act=act)))


def test_deep_act_is_refused(keys: Keys) -> None:
    act: dict[str, Any] = {"sub": "a0"}
    for i in range(1, 20):
        act = {"sub": f"a{i}", "act": act}
    with pytest.raises(TokenError, match="act"):
        make_server(keys).verifier.verify(sign(keys, claims(act=act)))


def test_malformed_may_act_is_refused(keys: Keys) -> None:
    with pytest.raises(TokenError, match="may_act"):
        make_server(keys).verifier.verify(sign(keys, claims(may_act="agent")))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_views_see_the_actor(framework: str, keys: Keys) -> None:
    web = make_web(framework, keys)
    token = sign(keys, claims(sub="user-42", act=CHAIN, may_act={"sub": "agent-7"}))
    r = web.call("GET", "/v1/models", [("Authorization", f"Bearer {token}")])
    assert r.status == 200, r.body
    assert r.body["sub"] == "user-42"
    assert r.body["actor"] == "agent-7"
    assert r.body["actor_chain"] == ["agent-7", "gateway", "scheduler"]
    assert r.body["delegated"] is True and r.body["may_act"] == {"sub": "agent-7"}
    r = web.call("GET", "/v1/models",
                 [("Authorization", f"Bearer {sign(keys, claims(act='agent'))}")])
    assert r.status == 401 and r.body["error"] == "invalid_token"
