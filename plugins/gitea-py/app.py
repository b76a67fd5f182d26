"""Gitea / Forgejo access-token connector for Gatehouse, in Python.

Built from ../../wit (gatehouse:plugin@0.3.0, world `provider`) alone with
componentize-py (see README.md here); it shows that a connector needs
nothing from the host's source code.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log, types


def _fail(error):
    raise Err(error)


def _get(url, headers):
    try:
        # `authenticate` stays off: verify sets its own header from the
        # credentials it is given.
        return http.send(http.Request(method="GET", url=url, headers=headers, body=b"", authenticate=False))
    except Err as e:
        err = e.value
        if isinstance(err, http.Error_Denied):
            _fail(types.VerifyError_EgressDenied(err.value))
        if isinstance(err, http.Error_Timeout):
            _fail(types.VerifyError_UpstreamTimeout())
        if isinstance(err, http.Error_TooLarge):
            _fail(types.VerifyError_UpstreamError("The answer is larger than the host allows"))
        if isinstance(err, http.Error_InvalidRequest):
            _fail(types.VerifyError_InvalidInput(err.value))
        _fail(types.VerifyError_UpstreamUnreachable("Gitea could not be reached: " + str(err.value)))


def _header(response, name):
    for key, value in response.headers:
        if key.lower() == name:
            return value
    return None


class Connector(exports.Connector):
    def manifest(self) -> types.ProviderManifest:
        return types.ProviderManifest(
            id="gitea-token",
            name="Connect using a Gitea / Forgejo access token",
            vendor="Gitea",
            auth_method=types.AuthMethod.PERSONAL_ACCESS_TOKEN,
            description="Verifies a Gitea or Forgejo access token with GET /api/v1/user.",
            notes=["Create the token under Settings > Applications with the read:user scope."],
            fields=[
                types.Field(key="token", label="Access token", kind=types.FieldKind.SECRET,
                            required=True, default=None, placeholder=None, help=None),
                types.Field(key="base_url", label="Gitea base URL", kind=types.FieldKind.URL,
                            required=True, default=None, placeholder="https://gitea.example.com",
                            help="The address of your Gitea or Forgejo instance."),
            ],
            required_scopes=[],
            required_scopes_rule=types.ScopeRule.ALL_OF,
            version="0.3.0",
            oauth=None,
            # How the host presents the stored token on authenticated
            # requests (gatehouse:plugin@0.3.0).
            credential_presentation=types.CredentialPresentation(header="authorization", value="token {token}"),
            actions=[],
            sync_models=[],
        )

    def verify(self, credentials) -> types.Verification:
        values = dict(credentials)
        token = values.get("token", "").strip()
        base = values.get("base_url", "").rstrip("/")
        if not token or not base:
            _fail(types.VerifyError_InvalidInput("Both the token and the base URL are required."))
        response = _get(base + "/api/v1/user", [("authorization", "token " + token), ("accept", "application/json")])
        if response.status == 401:
            _fail(types.VerifyError_InvalidToken("Gitea does not accept this token (401)"))
        if response.status == 403:
            _fail(types.VerifyError_InsufficientScope(types.ScopeProblem(
                account=None, scopes=[], missing_scopes=["read:user"],
                detail="The token lacks the read:user scope; create one under Settings > Applications.")))
        if response.status == 429:
            retry = _header(response, "retry-after")
            _fail(types.VerifyError_RateLimited(int(retry) if retry and retry.isdigit() else None))
        if response.status >= 500:
            _fail(types.VerifyError_UpstreamError("Gitea answered %d (server error)" % response.status))
        if response.status != 200:
            _fail(types.VerifyError_UpstreamError("Gitea answered an unexpected %d; check the base URL" % response.status))
        try:
            user = json.loads(response.body)
            account = types.Account(
                id=str(user["id"]), username=user["login"], name=user.get("full_name") or None,
                email=user.get("email") or None, web_url=user.get("html_url"), avatar_url=user.get("avatar_url"))
        except (ValueError, KeyError, TypeError):
            _fail(types.VerifyError_UpstreamError("The answer is not Gitea API JSON; check the base URL"))
        log.write(log.Level.INFO, "verified", [("user", account.username)])
        return types.Verification(account=account, scopes=[], expires_at=None, token_kind="access_token")
