"""Gitea / Forgejo access-token connector for Gatehouse, in Python.

Built from ../../wit (gatehouse:plugin@0.4.0) alone with componentize-py
(see README.md here); it shows that a connector needs nothing from the
host's source code.

Built for the world `full`, it also exports `syncs`, with one full sync
model, `repos`. `full` exports `oauth` and `actions` too; this connector has
neither, so its manifest declares none and those functions answer
`unsupported` (the host uses an optional export only when the manifest
declares it). Built for the world `provider`, the bindings have no `Syncs`,
`Oauth` or `Actions` protocol: the classes below are then left out and the
manifest lists no sync model, so the same file still builds a verifying
connector.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log, types

# Whether the world being built exports `syncs` (see the module docstring).
HAS_SYNCS = hasattr(exports, "Syncs")

# Repositories per request. Gitea caps `limit` at its MAX_RESPONSE_ITEMS
# (50 by default); the `Link` header, not the page length, says whether
# another page follows, so a lower cap does not end a run early.
REPOS_PER_PAGE = 50

REPO_SCHEMA = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Repo",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "full_name": {"type": "string"},
        "html_url": {"type": "string"},
        "private": {"type": "boolean"},
        "updated_at": {"type": ["string", "null"]},
    },
    "required": ["id", "full_name", "html_url", "private", "updated_at"],
    "additionalProperties": False,
})


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
            # requests (gatehouse:plugin@0.4.0).
            credential_presentation=types.CredentialPresentation(header="authorization", value="token {token}"),
            actions=[],
            sync_models=[types.SyncModel(
                name="repos",
                description="The repositories the account can read; every run reads all of them, so repositories "
                            "deleted or no longer visible are removed.",
                record_schema=REPO_SCHEMA,
                default_interval_seconds=3600,
                incremental=False,
            )] if HAS_SYNCS else [],
            inbound_webhook=None,
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


# ---- syncs ----------------------------------------------------------------


def _provider_get(url):
    """GET url with the stored token, presented by the host; transport
    failures become provider errors."""
    try:
        request = http.Request(method="GET", url=url, headers=[("accept", "application/json")], body=b"",
                               authenticate=True)
        return http.send(request)
    except Err as e:
        err = e.value
        if isinstance(err, http.Error_Denied):
            _fail(types.ProviderError_EgressDenied(err.value))
        if isinstance(err, http.Error_Timeout):
            _fail(types.ProviderError_UpstreamTimeout())
        if isinstance(err, http.Error_TooLarge):
            _fail(types.ProviderError_UpstreamError("Gitea's answer is larger than the host allows."))
        if isinstance(err, http.Error_InvalidRequest):
            _fail(types.ProviderError_InvalidInput("The request could not be built: " + str(err.value)))
        _fail(types.ProviderError_UpstreamUnreachable("Gitea could not be reached: " + str(err.value)))


def _refusal(response):
    """The provider error for a non-2xx answer."""
    status = response.status
    if status == 401:
        return types.ProviderError_Unauthorized("Gitea does not accept the connection's token (401); reconnect.")
    if status == 403:
        return types.ProviderError_Forbidden("The account may not list repositories (403).")
    if status == 404:
        return types.ProviderError_NotFound("Gitea has no /api/v1/user/repos here (404); check the base URL.")
    if status == 429:
        retry = _header(response, "retry-after")
        return types.ProviderError_RateLimited(int(retry) if retry and retry.strip().isdigit() else None)
    if status in (400, 422):
        return types.ProviderError_InvalidInput("Gitea refused the request (%d)." % status)
    return types.ProviderError_UpstreamError("Gitea answered %d." % status)


def _has_next_link(link):
    """Whether a Link header lists a rel="next" entry."""
    for entry in link.split(","):
        for param in entry.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return True
    return False


def _repos_page(checkpoint, connection):
    """One page of the full `repos` model: checkpoint {"page": N} within a
    run, none at its end (so the next run reads everything again and the
    host removes the repositories it did not see)."""
    page = 1
    if checkpoint is not None:
        try:
            page = int(json.loads(checkpoint)["page"])
        except (ValueError, KeyError, TypeError):
            page = 0
        if page < 1:
            _fail(types.ProviderError_InvalidInput(
                'The checkpoint of the sync model "repos" is unusable; reset the sync to read everything again.'))
    base = connection.base_url.rstrip("/")
    response = _provider_get("%s/api/v1/user/repos?page=%d&limit=%d" % (base, page, REPOS_PER_PAGE))
    if not 200 <= response.status < 300:
        _fail(_refusal(response))
    try:
        rows = json.loads(response.body)
        records = [types.SyncRecord(id=str(r["id"]), data=json.dumps({
            "id": r["id"],
            "full_name": r["full_name"],
            "html_url": r["html_url"],
            "private": bool(r["private"]),
            "updated_at": r.get("updated_at"),
        })) for r in rows]
    except (ValueError, KeyError, TypeError):
        _fail(types.ProviderError_UpstreamError("The answer is not Gitea's repository list; check the base URL."))
    link = _header(response, "link")
    # Gitea sends `Link` with rel="next" while pages follow; without the
    # header (a proxy may drop it), a full page means there may be more.
    more = _has_next_link(link) if link is not None else len(rows) == REPOS_PER_PAGE
    if more:
        return types.SyncPage(records=records, deleted=[], checkpoint=json.dumps({"page": page + 1}), has_more=True)
    return types.SyncPage(records=records, deleted=[], checkpoint=None, has_more=False)


if HAS_SYNCS:
    class Syncs(exports.Syncs):
        def run(self, model, checkpoint, run_started_at, connection) -> types.SyncPage:
            # `repos` is a full model: every run reads everything, so it does
            # not need `run_started_at`.
            if model == "repos":
                return _repos_page(checkpoint, connection)
            _fail(types.ProviderError_Unsupported("This connector has no sync model named %r." % model))

    class Oauth(exports.Oauth):
        """The world `full` exports oauth; the manifest declares none."""

        def authorize_url(self, base_url, client_id, redirect_uri, state, code_challenge) -> str:
            _fail(types.OauthError_Unsupported())

        def exchange_code(self, base_url, client, code, code_verifier) -> types.TokenGrant:
            _fail(types.OauthError_Unsupported())

        def refresh_token(self, base_url, client, refresh_token) -> types.TokenGrant:
            _fail(types.OauthError_Unsupported())

    class Actions(exports.Actions):
        """The world `full` exports actions; the manifest lists none."""

        def run(self, name, input, connection) -> str:
            _fail(types.ProviderError_Unsupported("This connector has no action named %r." % name))
