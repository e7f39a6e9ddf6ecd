"""The emulator's samples of JSON schemas (tool-call arguments, ``json_schema`` answers) are valid instances.

Validity is checked by pydantic itself: each schema is what ``model_json_schema()`` writes for a model, and the
sample must load back into that model.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Optional

import pytest

from azml_client.testing._samples import MAX_DEPTH, sample_instance, sample_object

pydantic = pytest.importorskip("pydantic")
BaseModel = pydantic.BaseModel
Field = pydantic.Field


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):  # type: ignore[misc, valid-type]
    street: str
    number: int = Field(ge=10, le=20)
    postcode: str = Field(min_length=5, max_length=5)


class Person(BaseModel):  # type: ignore[misc, valid-type]
    name: str
    age: int = Field(gt=17)
    height: float = Field(le=2.5)
    score: float = Field(gt=3.0, lt=4.0)
    active: bool
    colour: Colour
    size: Literal["S", "M", "L"]
    tags: list[str] = Field(min_length=2)
    home: Address
    former: list[Address]
    nickname: Optional[str]  # noqa: UP045  (pydantic writes anyOf [string, null] either way)
    partner: Optional[Address]  # noqa: UP045
    notes: str = "optional, left out"


class Tree(BaseModel):  # type: ignore[misc, valid-type]
    label: str
    children: list[Tree]


class Chain(BaseModel):  # type: ignore[misc, valid-type]
    name: str
    next: Optional[Chain]  # noqa: UP045


def test_a_pydantic_models_schema_gets_a_valid_instance() -> None:
    sample = sample_instance(Person.model_json_schema())
    person = Person.model_validate(sample)
    assert sample == {
        "name": "x",
        "age": 18,
        "height": 2.5,
        "score": 3.5,
        "active": True,
        "colour": "red",
        "size": "S",
        "tags": ["x", "x"],
        "home": {"street": "x", "number": 10, "postcode": "xxxxx"},
        "former": [{"street": "x", "number": 10, "postcode": "xxxxx"}],
        "nickname": "x",
        "partner": {"street": "x", "number": 10, "postcode": "xxxxx"},
    }
    assert person.notes == "optional, left out"


def test_recursive_schemas_end() -> None:
    sample = sample_instance(Tree.model_json_schema())
    Tree.model_validate(sample)
    depth = 0
    node = sample
    while node["children"]:
        [node] = node["children"]
        depth += 1
    assert 0 < depth <= MAX_DEPTH


def test_optional_recursion_ends_in_null_and_required_recursion_ends() -> None:
    chain = Chain.model_validate(sample_instance(Chain.model_json_schema()))
    links = 1
    while chain.next is not None:
        chain = chain.next
        links += 1
    assert 1 < links <= MAX_DEPTH + 1
    itself = {"$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}}}
    sample = sample_instance({**itself, "$ref": "#/$defs/A"})
    assert isinstance(sample, dict)
    assert "a" in sample


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "date-time"}, "2024-01-01T00:00:00Z"),
        ({"type": "string", "format": "email"}, "x@example.com"),
        ({"type": "string", "maxLength": 0}, ""),
        ({"type": ["null", "integer"]}, 3),
        ({"type": "integer", "minimum": 2.5}, 3),
        ({"type": "integer", "maximum": -1}, -1),
        ({"type": "integer", "exclusiveMaximum": 3}, 2),
        ({"type": "number", "minimum": 7}, 7.0),
        ({"type": "null"}, None),
        ({"const": {"a": 1}}, {"a": 1}),
        ({"enum": [False, True]}, False),
        ({"type": "array"}, []),
        ({"type": "array", "items": {"type": "boolean"}, "maxItems": 0}, []),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}, [3, "x"]),
        ({"anyOf": [{"type": "null"}, {"type": "number"}]}, 3.0),
        (
            {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"required": ["b"]}]},
            {"a": 3, "b": "x"},
        ),
        ({"properties": {"a": {"type": "boolean"}}, "required": ["a", "a"]}, {"a": True}),
        ({"$ref": "#/definitions/A", "definitions": {"A": {"type": "integer"}}}, 3),
        ({"$ref": "#/nowhere"}, "x"),
        ({"$ref": "https://example.com/schema.json"}, "x"),
        (True, "x"),
    ],
)
def test_keywords(schema: Any, expected: Any) -> None:
    assert sample_instance(schema) == expected


def test_tool_arguments_are_always_an_object() -> None:
    assert sample_object({"type": "string"}) == {}
    assert sample_object({}) == {}
    assert sample_object({"type": "object", "properties": {"a": {"type": "string"}}}) == {}
    assert sample_object(Address.model_json_schema()) == {"street": "x", "number": 10, "postcode": "xxxxx"}
