"""Notification channels as the API takes and shows them (GET/POST /api/v1/channels)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.channels import KINDS, MAX_ADDRESSES, NAME, URL
from orchestrator.config import MAIL_ADDRESS
from orchestrator.schemas.common import Request, Response, Stamp

Address = Annotated[str, StringConstraints(pattern=f"^{MAIL_ADDRESS.pattern}$")]
Url = Annotated[str, StringConstraints(pattern=URL.pattern, max_length=2000)]
OPTIONAL = ("email", "slack", "webhook", "secret")


def _one_kind(schema: dict[str, Any]) -> None:
    """What the model's check adds, in the document: exactly one of email, slack or webhook, a secret only
    with a webhook, and no nulls (a field given is given a value)."""
    for name in OPTIONAL:
        field = schema["properties"][name]
        [kept] = [choice for choice in field.pop("anyOf") if choice.get("type") != "null"]
        field.update(kept)
        field.pop("default", None)
    others = {kind: [{"required": [k]} for k in KINDS if k != kind] for kind in KINDS}
    schema["oneOf"] = [
        {"required": ["email"], "not": {"anyOf": [*others["email"], {"required": ["secret"]}]}},
        {"required": ["slack"], "not": {"anyOf": [*others["slack"], {"required": ["secret"]}]}},
        {"required": ["webhook"], "not": {"anyOf": others["webhook"]}},
    ]


class ChannelBody(Request):
    """One of `email`, `slack` or `webhook`; `secret` signs a webhook's posts."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_kind)

    name: str = Field(pattern=NAME.pattern, description="letters, digits, _ . -; the name runbooks' notify rules use")
    email: list[Address] | None = Field(
        default=None, min_length=1, max_length=MAX_ADDRESSES, description="mail addresses"
    )
    slack: Url | None = Field(default=None, description="a Slack incoming-webhook URL")
    webhook: Url | None = Field(default=None, description="a URL that receives signed JSON posts")
    secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="the webhook's HMAC-SHA256 signing secret"
    )

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if nulls := [k for k in OPTIONAL if k in data and data[k] is None]:
            raise PydanticCustomError("null", "must not be null", {"at": nulls[0]})
        given = [k for k in KINDS if k in data]
        if len(given) != 1:
            raise PydanticCustomError("one_kind", "give exactly one of email, slack or webhook", {"at": "email"})
        if "secret" in data and given != ["webhook"]:
            raise PydanticCustomError("secret", "only a webhook channel has a secret", {"at": "secret"})
        return data


class Channel(Response):
    name: str
    kind: Literal["email", "slack", "webhook"]
    target: str = Field(description="the addresses, or the scheme and host of the URL: never its path or secret")
    created_by: str | None = None
    created_at: Stamp


class ChannelList(Response):
    items: list[Channel]
