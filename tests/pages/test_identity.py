"""Reviewer identity in the sidebar (pld.ui.sidebar): with ``[auth]`` in the secrets the reviewer
is the OIDC user (``st.user``) and sign-offs say ``oidc``; a typed name is not used then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from pld import review
from tests.pages.conftest import Populated

OpenPage = Callable[..., AppTest]
AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback",
                 "cookie_secret": "not-a-real-secret", "client_id": "pld-studio",
                 "client_secret": "not-a-real-secret",
                 "server_metadata_url": "https://id.example/.well-known/openid-configuration"}}


def _texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def _with_login(at: AppTest, **user: Any) -> AppTest:
    at.secrets.update(AUTH)
    at.user = user
    return at


def test_logged_in_user_signs_as_oidc_and_cannot_type_a_name(
        open_page: OpenPage, populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    # A name typed earlier (session state) must not count once login is configured.
    at = _with_login(open_page("heuristics", task=populated_ws.task, reviewer="ana"),
                     is_logged_in=True, email="carl@bank.example", name="Carl")
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    assert "reviewer" not in [t.key for t in at.sidebar.text_input]
    assert "Signed in as **carl@bank.example**" in _texts(at.sidebar.markdown)
    assert "Signing as **carl@bank.example** (oidc)" in _texts(at.caption)
    at.button(key=f"h_approve_{hid}").click().run()
    assert not at.exception and not at.error
    with populated_ws.open() as ws:
        row = review.fetch(ws, hid)
        last = review.history(ws, hid)[-1]
    assert (row["status"], row["approved_by"], row["identity_kind"]) == (
        "approved", "carl@bank.example", "oidc")
    assert (last["who"], last["identity_kind"]) == ("carl@bank.example", "oidc")


def test_a_user_without_email_signs_with_their_name(open_page: OpenPage,
                                                    populated_ws: Populated) -> None:
    at = _with_login(open_page("heuristics", task=populated_ws.task),
                     is_logged_in=True, name="Dana")
    at.run()
    assert not at.exception
    assert "Signed in as **Dana**" in _texts(at.sidebar.markdown)


def test_logged_out_user_is_asked_to_log_in_and_cannot_act(open_page: OpenPage,
                                                           populated_ws: Populated) -> None:
    hid = populated_ws.heuristic_ids[3]
    at = _with_login(open_page("heuristics", task=populated_ws.task, reviewer="ana"),
                     is_logged_in=False)
    at.run()
    at.selectbox(key="h_selected").set_value(hid).run()
    assert not at.exception
    assert [b.label for b in at.sidebar.button] == ["Log in to review"]
    assert "Nobody is identified" in _texts(at.warning)
    assert at.button(key=f"h_approve_{hid}").disabled
    assert at.button(key=f"h_reject_{hid}").disabled


def test_clustering_accepted_by_a_logged_in_user_is_oidc(open_page: OpenPage,
                                                        populated_ws: Populated) -> None:
    at = _with_login(open_page("clusters", task=populated_ws.task),
                     is_logged_in=True, email="carl@bank.example")
    at.run()
    at.selectbox(key="c_clustering").set_value(populated_ws.proposed_clustering).run()
    at.button(key="c_accept").click().run()
    assert not at.exception and not at.error
    assert "accepted by carl@bank.example (oidc)" in _texts(at.success)
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
