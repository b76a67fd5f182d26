"""A walk through the API with a client generated from the served OpenAPI
document by openapi-python-client (tests/e2e/conformance.rs generates it
and runs this). Every answer must parse into the generated models: a field
the document gets wrong (a null where it says string, a status it does not
list) fails here as it would in a strict client.

Environment: GATEHOUSE_URL, GATEHOUSE_API_KEY, GITLAB_URL, GITLAB_TOKEN.
"""

import os
import sys
import uuid

from gatehouse_client import AuthenticatedClient
from gatehouse_client.api.integrations import (
    delete_api_v1_integrations_id,
    get_api_v1_integrations,
    get_api_v1_integrations_id,
    post_api_v1_integrations,
)
from gatehouse_client.api.meta import get_api_v1_health
from gatehouse_client.api.providers import (
    get_api_v1_providers,
    get_api_v1_providers_provider_id,
    post_api_v1_providers_provider_id_verify,
)
from gatehouse_client.models import (
    ConnectRequest,
    ConnectRequestCredentials,
    Health,
    Integration,
    IntegrationList,
    Problem,
    ProviderList,
    ProviderManifest,
    Status,
    VerificationResult,
    VerifyRequest,
    VerifyRequestCredentials,
)


def expect(response, status, model):
    """The answer has this status and parsed into this generated model."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"expected {status} {model.__name__}, got {response.status_code} "
            f"{type(response.parsed).__name__}: {response.content[:500]!r}"
        )
    return response.parsed


def main():
    client = AuthenticatedClient(
        base_url=os.environ["GATEHOUSE_URL"],
        token=os.environ["GATEHOUSE_API_KEY"],
        raise_on_unexpected_status=True,
    )
    credentials = {"token": os.environ["GITLAB_TOKEN"], "base_url": os.environ["GITLAB_URL"]}

    health = expect(get_api_v1_health.sync_detailed(client=client), 200, Health)
    assert health.status == "ok"

    providers = expect(get_api_v1_providers.sync_detailed(client=client), 200, ProviderList)
    ids = [p.id for p in providers.providers]
    assert "gitlab-pat" in ids and "gitlab-oauth" in ids, ids
    manifest = expect(get_api_v1_providers_provider_id.sync_detailed("gitlab-pat", client=client), 200, ProviderManifest)
    assert [f.key for f in manifest.fields] == ["token", "base_url"], manifest.fields

    body = VerifyRequest(credentials=VerifyRequestCredentials.from_dict(credentials))
    verdict = expect(
        post_api_v1_providers_provider_id_verify.sync_detailed("gitlab-pat", client=client, body=body),
        200,
        VerificationResult,
    )
    assert verdict.valid and verdict.account.username == "walker", verdict

    wrong = VerifyRequest(credentials=VerifyRequestCredentials.from_dict({**credentials, "token": "glpat-wrong"}))
    refused = expect(
        post_api_v1_providers_provider_id_verify.sync_detailed("gitlab-pat", client=client, body=wrong),
        200,
        VerificationResult,
    )
    assert not refused.valid and refused.error.code == "invalid_token", refused

    connect = ConnectRequest(
        provider="gitlab-pat", credentials=ConnectRequestCredentials.from_dict(credentials), label="walk"
    )
    created = expect(post_api_v1_integrations.sync_detailed(client=client, body=connect), 201, Integration)
    assert created.status == Status.CONNECTED and created.label == "walk", created

    listed = expect(get_api_v1_integrations.sync_detailed(client=client), 200, IntegrationList)
    assert [i.id for i in listed.integrations] == [created.id], listed

    missing = expect(get_api_v1_integrations_id.sync_detailed(uuid.uuid4(), client=client), 404, Problem)
    assert missing.code == "not_found" and missing.detail, missing

    gone = delete_api_v1_integrations_id.sync_detailed(created.id, client=client)
    assert gone.status_code == 204, gone
    expect(get_api_v1_integrations_id.sync_detailed(created.id, client=client), 404, Problem)
    print("walked: health, providers, provider, verify (valid, refused), connect, list, a 404 problem, disconnect")


if __name__ == "__main__":
    main()
