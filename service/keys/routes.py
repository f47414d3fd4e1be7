"""HTTP routes of /api-keys (the `admin` scope)."""

from datetime import UTC, datetime

from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, SkipValidation

from service.auth import key_cache_of
from service.errors import FieldError, InvalidInput
from service.inputs import validated
from service.keys import repository
from service.keys.schemas import ApiKey, ApiKeyCreate, NewApiKey
from service.keys.scopes import Scope
from service.openapi import problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, ApiKeyId, Limit, db_of


class ApiKeyController(Controller):
    path = "/api-keys"
    tags = ("api-keys",)

    @post(
        operation_id="CreateApiKey",
        description=(
            "Mints a key and answers it with its `Location`. The answer's `key` is the only time the "
            "key is shown: the service keeps a hash of it. Not idempotent: each call mints a new key."
        ),
        summary="Create an API key (shown once)",
        required_scope=Scope.ADMIN,
        responses=problem_responses(422),
    )
    async def create(
        self, request: AnyRequest, data: JSONBody[SkipValidation[ApiKeyCreate]]
    ) -> Response[NewApiKey]:
        new = validated(data, ApiKeyCreate)
        if new.expires_at is not None and new.expires_at <= datetime.now(UTC):
            raise InvalidInput([FieldError(field="expires_at", message="must be in the future")])
        key = await repository.create_key(db_of(request), new=new)
        return Response(key, status_code=201, headers={"Location": f"/api-keys/{key.id}"})

    @get(
        operation_id="ListApiKeys",
        description=(
            "Answers one keyset page of API keys ordered by id ascending, revoked and expired ones "
            "included. No key is ever shown, only its `prefix`."
        ),
        summary="List API keys, a keyset page at a time",
        required_scope=Scope.ADMIN,
        responses=problem_responses(422),
    )
    async def list(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Page[ApiKey]:
        return await repository.list_keys(db_of(request), after=after, limit=limit)

    @get(
        "/{key_id:str}",
        operation_id="GetApiKey",
        description="Answers one API key by id, without the key. Safe and idempotent.",
        summary="Get an API key",
        required_scope=Scope.ADMIN,
        responses=problem_responses(404, 422),
    )
    async def get(self, request: AnyRequest, key_id: ApiKeyId) -> ApiKey:
        return await repository.get_key(db_of(request), key_id=key_id)

    @delete(
        "/{key_id:str}",
        operation_id="RevokeApiKey",
        description=(
            "Revokes the key: every worker and replica refuses it within 5 s (this one at once). The "
            "record stays, with `revoked_at` set. Idempotent: revoking again answers 204 and changes nothing."
        ),
        summary="Revoke an API key",
        required_scope=Scope.ADMIN,
        responses=problem_responses(404, 422),
    )
    async def revoke(self, request: AnyRequest, key_id: ApiKeyId) -> None:
        digest = await repository.revoke_key(db_of(request), key_id=key_id)
        key_cache_of(request).forget(digest)
