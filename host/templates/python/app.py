"""{{title}}: a Gatehouse connector in Python, built for the world
`provider` with componentize-py. It verifies an API token by asking the
provider who the token belongs to: change ME_PATH and `_account` to your
provider's "current user" endpoint (the guide: plugins/README.md in the
Gatehouse repository)."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log, types

ME_PATH = "/user"


def _fail(error):
    raise Err(error)


def _header(response, name):
    return next((v for k, v in response.headers if k.lower() == name), None)


def _get(url):
    """GET through the host, which adds the token (credential_presentation);
    refusals and transport failures become the standard verify errors."""
    try:
        response = http.send(http.Request(method="GET", url=url, headers=[("accept", "application/json")],
                                          body=b"", authenticate=True))
    except Err as e:
        err = e.value
        if isinstance(err, http.Error_Denied):
            _fail(types.VerifyError_EgressDenied(err.value))
        if isinstance(err, http.Error_Timeout):
            _fail(types.VerifyError_UpstreamTimeout())
        _fail(types.VerifyError_UpstreamUnreachable("The provider could not be reached: %s" % (err.value,)))
    if response.status == 401:
        _fail(types.VerifyError_InvalidToken("The provider does not accept this token (HTTP 401)."))
    if response.status == 429:
        retry = _header(response, "retry-after")
        _fail(types.VerifyError_RateLimited(int(retry) if retry and retry.strip().isdigit() else None))
    if not 200 <= response.status <= 299:
        _fail(types.VerifyError_UpstreamError("The provider answered HTTP %d." % response.status))
    try:
        return json.loads(response.body)
    except ValueError:
        _fail(types.VerifyError_UpstreamError("The provider's answer is not JSON; check the base URL."))


def _account(user):
    return types.Account(id=str(user["id"]), username=user["username"], name=user.get("name"),
                         email=None, web_url=None, avatar_url=None)


class Connector(exports.Connector):
    def manifest(self) -> types.ProviderManifest:
        field = lambda key, label, kind: types.Field(key=key, label=label, kind=kind, required=True,  # noqa: E731
                                                     default=None, placeholder=None, help=None)
        return types.ProviderManifest(
            id="{{id}}", name="Connect using {{title}}", vendor="", auth_method=types.AuthMethod.PERSONAL_ACCESS_TOKEN,
            description="Verifies an API token.", notes=[],
            fields=[field("token", "API token", types.FieldKind.SECRET),
                    field("base_url", "Base URL", types.FieldKind.URL)],
            required_scopes=[], required_scopes_rule=types.ScopeRule.ALL_OF, version="0.1.0", oauth=None,
            credential_presentation=types.CredentialPresentation(header="authorization", value="Bearer {token}"),
            actions=[], sync_models=[], inbound_webhook=None)

    def verify(self, credentials) -> types.Verification:
        base_url = dict(credentials).get("base_url")
        if not base_url:
            _fail(types.VerifyError_InvalidInput('The field "base_url" is required.'))
        user = _get(base_url + ME_PATH)
        try:
            account = _account(user)
        except (KeyError, TypeError):
            _fail(types.VerifyError_UpstreamError("The answer does not name a user; check the base URL."))
        log.write(log.Level.DEBUG, "token accepted", [("user", account.username)])
        return types.Verification(account=account, scopes=[], expires_at=None, token_kind="api-token")
