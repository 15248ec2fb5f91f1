"""Quantity limits, each written once: they come from settings (MAX_QUANTITY, MAX_RESTOCK) and are bound
to a model field with `AtMost("max_quantity")`: the field's model enforces it (LimitedModel) and the
OpenAPI document states it (service_common.openapi), both from the running app's settings. (The body
size is the MAX_BODY_BYTES setting, enforced by the server and by service_common.parsing.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from flask import current_app
from pydantic import BaseModel, model_validator

from service_common.domain import InvalidError


@dataclass(frozen=True)
class AtMost:
    """Marks a field (Annotated[int, AtMost("max_quantity")]) as bounded by the named setting; on a list
    field, its length is bounded."""

    setting: str


def bounds(model: type[BaseModel]) -> dict[str, str]:
    """Field name → the setting that bounds it, for every AtMost field of a model."""
    return {
        name: meta.setting
        for name, field in model.model_fields.items()
        for meta in field.metadata
        if isinstance(meta, AtMost)
    }


class LimitedModel(BaseModel):
    """A request model whose AtMost fields are held to the app's settings once the schema is satisfied
    (so a request that breaks the schema is answered the schema's errors, as before)."""

    # (Package, model name) → field → setting, for every subclass with an AtMost field: what each
    # service's document states. Keyed by package: both services may be loaded in one process (the fast
    # tests), and each has its own models, some of the same name.
    bounded: ClassVar[dict[tuple[str, str], dict[str, str]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = bounds(cls)
        key = (cls.__module__.split(".")[0], cls.__name__)
        # A document names models by class name, so two bounded models of one service may not share one.
        if fields and LimitedModel.bounded.setdefault(key, fields) != fields:
            raise TypeError(f"two request models named {cls.__name__} with different limits")

    @model_validator(mode="after")
    def _within_settings(self) -> Self:
        settings = current_app.config["SETTINGS"]
        for name, setting in bounds(type(self)).items():
            value: Any = getattr(self, name)
            limit: int = getattr(settings, setting)
            if isinstance(value, list):  # a list's bound is on its length (MAX_LINES)
                value = len(value)
            if value is not None and value > limit:
                # Not a ValueError: pydantic would fold it into its own errors; this one is ours to answer.
                raise InvalidError(f"{name}: must be at most {limit}")
        return self
