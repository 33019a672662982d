"""The JSON Schema of the config (`newsmon schema`): well formed, current, and in step with the
loader.

jsonschema is not a dependency, so the checks use `check`, a validator of exactly the keywords
the schema uses; `test_schema_uses_only_known_keywords` fails the day the schema grows one it
does not understand. Where jsonschema happens to be installed, it checks the same files too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import main
from monitor.config import Settings
from monitor.configschema import json_schema, schema_text, starter_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "newsmon.schema.json"

_ANNOTATIONS = {"$schema", "$defs", "title", "description", "default", "examples"}
_ASSERTIONS = {
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "anyOf",
    "enum",
    "pattern",
    "minLength",
    "minItems",
    "exclusiveMinimum",
    "minimum",
    "maximum",
}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def check(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = "$") -> list[str]:
    """The places where `value` breaks `schema` (empty when it is valid)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return check(root["$defs"][name], value, root, at)
    if "anyOf" in schema:
        failed = [check(branch, value, root, at) for branch in schema["anyOf"]]
        if not all(failed):
            return []
        # The branch of the value's own type says most ("unknown key" rather than "not null").
        near = [problems for problems in failed if not problems[0].startswith(f"{at}: not ")]
        return near[0] if len(near) == 1 else [f"{at}: matches no allowed form"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: not one of {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return [f"{at}: not {kind}"]
    problems: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{at}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{at}: does not match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            problems.append(f"{at}: too small")
        if "minimum" in schema and not value >= schema["minimum"]:
            problems.append(f"{at}: too small")
        if "maximum" in schema and not value <= schema["maximum"]:
            problems.append(f"{at}: too large")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{at}: too few items")
        for i, item in enumerate(value):
            problems += check(schema.get("items", {}), item, root, f"{at}[{i}]")
    if isinstance(value, dict):
        problems += [f"{at}.{k}: required" for k in schema.get("required", ()) if k not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if "propertyNames" in schema:
                problems += check(schema["propertyNames"], key, root, f"{at}.{key} (name)")
            if key in properties:
                problems += check(properties[key], item, root, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{at}.{key}: unknown key")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += check(schema["additionalProperties"], item, root, f"{at}.{key}")
    return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _subschemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema object within `schema`, itself included."""
    found = [schema]
    for key in ("items", "additionalProperties", "propertyNames"):
        if isinstance(schema.get(key), dict):
            found += _subschemas(schema[key])
    for child in [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]:
        found += _subschemas(child)
    for child in schema.get("$defs", {}).values():
        found += _subschemas(child)
    return found


def _data(text: str) -> Any:
    return yaml.safe_load(text)


# --- the schema itself -----------------------------------------------------------------------


def test_schema_uses_only_known_keywords_and_every_ref_resolves() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    for sub in _subschemas(schema):
        unknown = set(sub) - _ANNOTATIONS - _ASSERTIONS
        assert not unknown, f"keywords `check` does not know: {unknown} in {sub}"
        if "$ref" in sub:
            assert sub["$ref"].startswith("#/$defs/")
            assert sub["$ref"].removeprefix("#/$defs/") in schema["$defs"]
        if "pattern" in sub:
            re.compile(sub["pattern"])
        if "type" in sub:
            assert sub["type"] in (*_TYPES, "integer", "number")
        if sub.get("type") == "object" and "properties" in sub:
            assert sub["additionalProperties"] is False, sub.get("title")
            assert set(sub.get("required", ())) <= set(sub["properties"])


def test_schema_covers_every_setting_with_titles_and_descriptions() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(Settings.model_fields)
    for section in [schema, *schema["$defs"].values()]:
        for name, field in section["properties"].items():
            assert field.get("title"), name
            assert field.get("description"), f"{section['title']}.{name} has no docstring"

    def forms(field: dict[str, Any]) -> list[dict[str, Any]]:
        return field.get("anyOf", [field])

    props = schema["properties"]
    assert {"type": "array", "items": {"$ref": "#/$defs/FeedSettings"}} in forms(props["feeds"])
    assert {"type": "array", "items": {"$ref": "#/$defs/RuleSettings"}} in forms(props["rules"])
    channels = forms(props["channels"])[0]
    assert channels["type"] == "object"
    assert channels["additionalProperties"] == {"$ref": "#/$defs/ChannelSettings"}
    # Durations and sizes are what a user writes, not ISO 8601 or bare integers.
    timeout = schema["$defs"]["HttpSettings"]["properties"]["timeout"]
    assert timeout["default"] == "30s"
    assert any(f.get("type") == "string" and "pattern" in f for f in timeout["anyOf"])
    max_body = schema["$defs"]["HttpSettings"]["properties"]["max_body"]
    assert any(f.get("type") == "string" and "pattern" in f for f in max_body["anyOf"])
    assert schema["$defs"]["PollingSettings"]["properties"]["backlog_window"]["default"] == "1d"


def test_shipped_schema_is_current() -> None:
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert shipped == json_schema(), (
        "config/newsmon.schema.json is stale; regenerate it: "
        "python -m monitor schema -o config/newsmon.schema.json"
    )
    assert SHIPPED.read_text(encoding="utf-8") == schema_text()


# --- the schema against real files and the loader --------------------------------------------


def test_repo_config_and_starter_validate_and_point_at_the_schema() -> None:
    schema = json_schema()
    repo_config = (REPO / "config" / "newsmon.yaml").read_text(encoding="utf-8")
    for text in (repo_config, starter_config()):
        assert text.splitlines()[0] == "# yaml-language-server: $schema=newsmon.schema.json"
        assert check(schema, _data(text), schema) == []


def test_with_jsonschema_when_installed() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    repo_config = (REPO / "config" / "newsmon.yaml").read_text(encoding="utf-8")
    for text in (repo_config, starter_config()):
        assert list(validator.iter_errors(_data(text))) == []
    assert list(validator.iter_errors({"feeds": [{"name": "x", "url": "http://a", "bad": 1}]}))


@pytest.mark.parametrize(
    "data",
    [
        {"databse": "sqlite:///x.db"},
        {"http": {"timeout": "5s", "retries": 3}},
        {"polling": {"intervall": "5m"}},
        {"feeds": [{"name": "a", "url": "https://a.example/feed", "tag": ["x"]}]},
        {"channels": {"desk": {"url": "console://", "digets": "0 8 * * *"}}},
        {"rules": [{"name": "r", "query": "x", "channel": ["desk"]}]},
    ],
)
def test_unknown_keys_are_refused_at_every_level(data: dict[str, Any]) -> None:
    schema = json_schema()
    problems = check(schema, data, schema)
    assert problems and all("unknown key" in p for p in problems), problems


# Samples the loader takes, then samples it refuses; the schema must say the same of each.
DURATIONS = ["90s", "5m", "24h", "7d", "1h30m", " 2h ", "1.5h", "45", 90, 0.5]
DURATIONS += ["", "5 minutes", "5M", "1m1h", "-1s", 0, -3, True, "s"]
SIZES = ["15MB", "512KiB", "1gib", "2 kb", "100", 1024]
SIZES += ["15 M", "MB", "1.5B", 0, -1, "x"]


@pytest.mark.parametrize("value", DURATIONS)
def test_durations_agree_with_the_loader(value: Any) -> None:
    schema = json_schema()
    data = {"polling": {"interval": value}}
    try:
        Settings.model_validate(data)
        loads = True
    except ValueError:
        loads = False
    assert (check(schema, data, schema) == []) == loads


@pytest.mark.parametrize("value", SIZES)
def test_sizes_agree_with_the_loader(value: Any) -> None:
    schema = json_schema()
    data = {"http": {"max_body": value}}
    try:
        Settings.model_validate(data)
        loads = True
    except ValueError:
        loads = False
    # "1.5B" is refused by the loader (not whole bytes) and allowed by the pattern: a schema
    # cannot do arithmetic. Every other sample must agree.
    if value == "1.5B":
        assert not loads and check(schema, data, schema) == []
        return
    assert (check(schema, data, schema) == []) == loads


def test_empty_sections_are_allowed_as_the_loader_allows_them() -> None:
    schema = json_schema()
    data = _data("channels:\nrules:\nfeeds:\nhttp:\n")
    Settings.model_validate(data)
    assert check(schema, data, schema) == []
    assert check(schema, {"feeds": [{"name": "a"}]}, schema) == ["$.feeds[0].url: required"]


# --- the command --------------------------------------------------------------------------------


def test_schema_command_prints_and_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()
    target = tmp_path / "out.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == schema_text()
    assert main(["schema", "-o", str(tmp_path / "missing" / "out.json")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_init_writes_the_schema_beside_the_config(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "cfg")]) == 0
    assert (tmp_path / "cfg" / "newsmon.schema.json").read_text(encoding="utf-8") == schema_text()
