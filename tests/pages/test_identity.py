"""Reviewer identity in the sidebar (pld.ui.sidebar): with ``[auth]`` in the secrets the reviewer
is the OIDC user (``st.user``), keyed by issuer and subject, and sign-offs say ``oidc``; a typed
name is not used then, and a visitor who is not logged in sees only the login prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from pld import review, review_rows
from pld.ui.escape import literal
from tests.pages.conftest import Populated, unescaped

OpenPage = Callable[..., AppTest]
AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback",
                 "cookie_secret": "not-a-real-secret", "client_id": "pld-studio",
                 "client_secret": "not-a-real-secret",
                 "server_metadata_url": "https://id.example/.well-known/openid-configuration"}}


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


ISSUER = "https://id.bank.example"


def _with_login(at: AppTest, **user: Any) -> AppTest:
    at.secrets.update(AUTH)
    if user.get("is_logged_in"):
        user = {"iss": ISSUER, "sub": "u-1001", **user}
    at.user = user
    return at


def test_logged_in_user_signs_as_oidc_and_cannot_type_a_name(
        open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    # A name typed earlier (session state) must not count once login is configured.
    at = _with_login(open_page("heuristics", task=populated_ws.task, reviewer="ana"),
                     is_logged_in=True, email="carl@bank.example", email_verified=True,
                     name="Carl")
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    assert "reviewer" not in [t.key for t in at.sidebar.text_input]
    assert "Signed in as carl@bank.example" in _texts(at.sidebar.text)
    assert f"Signing as **{literal('carl@bank.example')}** (oidc)" in _texts(at.caption)
    at.button(key=f"h_approve_{hid}").click().run()
    assert not at.exception and not at.error
    with populated_ws.open() as ws:
        row = review_rows.fetch(ws, hid)
        last = review.history(ws, hid)[-1]
    assert (row["status"], row["approved_by"], row["identity_kind"]) == (
        "approved", "carl@bank.example", "oidc")
    assert (last["who"], last["identity_kind"]) == ("carl@bank.example", "oidc")


def test_a_display_name_or_unverified_email_is_never_the_identity(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: the login's "name" or an unverified "email" was the signer, so anyone could
    # call themselves alice at the identity provider.
    for claims in ({"name": "alice"}, {"email": "alice@bank.example", "name": "alice"},
                   {"email": "alice@bank.example", "email_verified": False}):
        at = _with_login(open_page("heuristics", task=populated_ws.task),
                         is_logged_in=True, **claims)
        at.run()
        assert not at.exception
        assert "Signed in as u-1001@id.bank.example" in _texts(at.sidebar.text)


def test_a_login_without_a_subject_names_nobody(open_page: OpenPage,
                                                populated_ws: Populated) -> None:
    at = _with_login(open_page("heuristics", task=populated_ws.task), is_logged_in=True,
                     email="carl@bank.example", email_verified=True)
    at.user = {"is_logged_in": True, "email": "carl@bank.example", "email_verified": True}
    at.run()
    assert not at.exception
    assert "no issuer and subject" in _texts(at.error)
    assert [b.label for b in at.button] == ["Log out"]


PAGES = ["home", "data", "extract", "clusters", "heuristics", "conflicts", "evaluate", "export",
         "calls"]


def test_a_visitor_who_is_not_logged_in_sees_and_can_change_nothing(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: only sign-offs needed a login; anyone could upload, start or cancel paid jobs,
    # build prompts and write exports.
    for name in PAGES:
        at = _with_login(open_page(name, task=populated_ws.task, reviewer="ana"),
                         is_logged_in=False)
        at.run()
        assert not at.exception, name
        assert "log in to see or change anything" in _texts(at.info), name
        assert [b.label for b in at.button] == ["Log in"], name
        assert not at.sidebar.text_input and not at.text_input and not at.selectbox, name
        assert not at.dataframe and not at.code, name


def test_clustering_accepted_by_a_logged_in_user_is_oidc(open_page: OpenPage,
                                                        populated_ws: Populated) -> None:
    at = _with_login(open_page("clusters", task=populated_ws.task),
                     is_logged_in=True, email="carl@bank.example", email_verified=True)
    at.run()
    at.selectbox(key="c_clustering").set_value(populated_ws.proposed_clustering).run()
    at.button(key="c_accept").click().run()
    assert not at.exception and not at.error
    assert "accepted by carl@bank.example (oidc)" in unescaped(_texts(at.success))
    with populated_ws.open() as ws:
        rows = ws.query("SELECT who, identity_kind FROM reviews WHERE entity = 'clustering'")
    assert rows == [{"who": "carl@bank.example", "identity_kind": "oidc"}]


def test_without_auth_the_typed_name_is_self_declared(open_page: OpenPage,
                                                      populated_ws: Populated) -> None:
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana")
    at.user = {"is_logged_in": True, "email": "carl@bank.example"}  # no [auth]: not used
    at.run()
    assert not at.exception
    assert at.sidebar.text_input(key="reviewer").value == "ana"
    assert "Signing as **ana** (self-declared)" in _texts(at.caption)


def test_a_reserved_typed_name_identifies_nobody_and_says_why(open_page: OpenPage,
                                                              populated_ws: Populated) -> None:
    at = open_page("heuristics", task=populated_ws.task, reviewer="pld:resolve").run()
    assert not at.exception
    assert "reserved" in _texts(at.sidebar.error)
    assert "Signing as" not in _texts(at.caption)


def test_the_typed_name_survives_a_reload_through_the_address(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: reloading the page cleared the reviewer name, and with it the identity.
    at = open_page("heuristics", task=populated_ws.task, reviewer="ana")
    at.run()
    assert at.query_params["reviewer"] in ("ana", ["ana"])
    reloaded = open_page("heuristics", task=populated_ws.task)
    reloaded.query_params["reviewer"] = "ana"
    reloaded.run()
    assert reloaded.sidebar.text_input(key="reviewer").value == "ana"
    assert "Nobody is identified" not in _texts(reloaded.warning)


def test_a_comment_typed_under_one_name_is_not_recorded_under_another(
        open_page: OpenPage, populated_ws: Populated) -> None:
    # Before: bob's comment stayed in the box and went into alice's decision.
    hid = populated_ws.heuristic_ids[3]
    at = open_page("heuristics", task=populated_ws.task, reviewer="bob")
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    at.text_input(key=f"h_comment_{hid}_bob").input("bob thinks it is wrong").run()
    at.sidebar.text_input(key="reviewer").input("alice").run()
    assert at.text_input(key=f"h_comment_{hid}_alice").value == ""
    at.button(key=f"h_approve_{hid}").click().run()
    assert not at.exception
    with populated_ws.open() as ws:
        last = review.history(ws, hid)[-1]
    assert (last["who"], last["action"], last["comment"]) == ("alice", "approve", None)
