from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.json_schema import SkipJsonSchema

from order_api.platform.db import Page, PageQuery
from order_api.platform.fields import EmailAddress, PartialUpdate, SearchText, SingleLine
from order_api.users.models import Role
from order_api.users.password_policy import GivenPassword, NewPassword


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailAddress = Field(examples=["ada@example.com"])
    password: NewPassword = Field(examples=["correct horse battery staple"])
    full_name: SingleLine = Field(examples=["Ada Lovelace"])


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserPage(Page[UserRead]):
    pass


class OwnProfileUpdate(PartialUpdate):
    # The rule below, in the schema's words, so clients and fuzzers see it too.
    model_config = ConfigDict(
        json_schema_extra={
            "dependentRequired": {"email": ["current_password"], "password": ["current_password"]}
        }
    )

    full_name: SingleLine | SkipJsonSchema[None] = None
    email: EmailAddress | SkipJsonSchema[None] = None
    password: NewPassword | SkipJsonSchema[None] = None
    current_password: GivenPassword | SkipJsonSchema[None] = Field(
        default=None, description="Required, and checked, when `email` or `password` changes."
    )

    @model_validator(mode="after")
    def current_password_for_credentials(self) -> OwnProfileUpdate:
        changes_credentials = self.email is not None or self.password is not None
        if changes_credentials and self.current_password is None:
            raise ValueError("current_password is required to change the e-mail or password")
        return self


class UserUpdate(PartialUpdate):
    """What an admin may change on any account (passwords stay their owner's business)."""

    full_name: SingleLine | SkipJsonSchema[None] = None
    email: EmailAddress | SkipJsonSchema[None] = None
    role: Role | SkipJsonSchema[None] = None
    is_active: StrictBool | SkipJsonSchema[None] = None


class UserQuery(PageQuery):
    email: SearchText | None = Field(default=None, description="Part of the e-mail address.")
    role: Role | None = None
    is_active: bool | None = None
