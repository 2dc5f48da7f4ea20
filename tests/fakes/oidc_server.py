"""A fake OpenID Connect provider on 127.0.0.1, for Streamlit's ``st.login`` in the browser test.

It speaks the parts of OIDC that Authlib (Streamlit's login client) uses: discovery
(``/.well-known/openid-configuration``), the authorization endpoint (which "logs in" at once as
:attr:`FakeOIDC.user` and redirects back with a code), the token endpoint (an RS256-signed ID
token carrying the nonce, issuer and audience Authlib checks) and the key set (``/jwks``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "pld-studio-test"
CLIENT_SECRET = "not-a-real-secret"


class FakeOIDC:
    """``with FakeOIDC(user={...}) as idp:``; ``idp.issuer``; ``idp.logins`` counts codes."""

    def __init__(self, user: dict[str, Any]) -> None:
        self.user = user
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self._codes: dict[str, dict[str, Any]] = {}
        self.logins = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"]}

    def _authorize(self, query: dict[str, str]) -> str:
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"nonce": query.get("nonce"), "client_id": query.get("client_id")}
        self.logins += 1
        back = {"code": code, "state": query.get("state", "")}
        return f"{query['redirect_uri']}?{urlencode(back)}"

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None:
            return {"error": "invalid_grant"}
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": grant["client_id"] or CLIENT_ID, "iat": now,
                  "exp": now + 600, **self.user}
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)
        return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                "expires_in": 600, "id_token": id_token}

    def __enter__(self) -> FakeOIDC:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, idp.metadata())
                elif url.path == "/jwks":
                    self._json(200, {"keys": [idp.key.as_dict(private=False)]})
                elif url.path == "/authorize":
                    self.send_response(302)
                    self.send_header("Location", idp._authorize(query))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(size).decode()).items()}
                if urlsplit(self.path).path == "/token":
                    reply = idp._token(form)
                    self._json(400 if "error" in reply else 200, reply)
                else:
                    self._json(404, {"error": "not_found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
