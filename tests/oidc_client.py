"""A downstream app signing a user in to idplex with Authlib, a widely used OpenID Connect client
library that idplex did not write (tests/tests/oidc.rs runs it against a live idplex).

    python oidc_client.py ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI SESSION_COOKIE AUTH_METHOD

The browser is played by `requests` carrying the user's `idplex_session` cookie. Everything a
relying party must check, Authlib checks: discovery, the state, PKCE (S256), the code exchange,
the ID token's signature against the JWKS, its issuer, audience, expiry, nonce and at_hash; then
userinfo with the access token. Prints what it learned as JSON; exits non-zero on any failure.
"""

import json
import sys
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken


def main():
    issuer, client_id, client_secret, redirect_uri, cookie, auth_method = sys.argv[1:7]
    discovery = requests.get(issuer + "/.well-known/openid-configuration", timeout=30).json()
    assert discovery["issuer"] == issuer, discovery
    assert "S256" in discovery["code_challenge_methods_supported"], discovery
    jwks = requests.get(discovery["jwks_uri"], timeout=30).json()

    client = OAuth2Session(
        client_id,
        client_secret,
        scope="openid profile email groups",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    code_verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = client.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )

    # The browser: signed in already, so idplex answers with the code at once.
    answer = requests.get(url, headers={"Cookie": cookie}, allow_redirects=False, timeout=30)
    assert answer.status_code == 303, (answer.status_code, answer.text)
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    returned = parse_qs(urlparse(location).query)
    assert returned["iss"] == [issuer], returned  # RFC 9207

    token = client.fetch_token(
        discovery["token_endpoint"],
        authorization_response=location,
        state=state,
        code_verifier=code_verifier,
    )
    claims = jwt.decode(
        token["id_token"],
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
        },
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)
    header = json.loads(
        __import__("base64").urlsafe_b64decode(token["id_token"].split(".")[0] + "==").decode()
    )

    userinfo = client.get(discovery["userinfo_endpoint"], timeout=30)
    assert userinfo.status_code == 200, (userinfo.status_code, userinfo.text)

    print(
        json.dumps(
            {
                "id_token": dict(claims),
                "id_token_header": header,
                "userinfo": userinfo.json(),
                "token_type": token["token_type"],
                "scope": token.get("scope"),
                "expires_in": token.get("expires_in"),
            }
        )
    )


if __name__ == "__main__":
    main()
