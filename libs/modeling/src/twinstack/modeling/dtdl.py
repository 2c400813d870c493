"""DTDL v2 and v3 interfaces converted to the twinstack model language.

A whole ontology (every interface of a request, in any number of files and in any order) is
converted at once: interface-level ``schemas`` defined in one file can be used by another, and
``extends``, component schemas and relationship targets are ids that the registry resolves
over the whole request. What has no twinstack equivalent is reported as a note with its path,
never dropped silently. docs/models.md has the mapping table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from twinstack.modeling.units import UnitError, dimensions_of
from twinstack.modeling.violations import FieldViolation

DTDL_CONTEXTS = frozenset({"dtmi:dtdl:context;2", "dtmi:dtdl:context;3"})
_EXTENSION_CONTEXT = re.compile(r"dtmi:dtdl:extension:[A-Za-z]+;[12]")

PRIMITIVE_SCHEMAS: dict[str, str] = {
    "boolean": "boolean",
    "double": "double",
    "float": "double",
    "decimal": "double",
    "integer": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "unsignedByte": "integer",
    "unsignedShort": "integer",
    "unsignedInteger": "integer",
    "unsignedLong": "integer",
    "string": "string",
    "uuid": "string",
    "dateTime": "timestamp",
}
# DTDL schemas kept as strings in their ISO 8601 / base64 text form.
TEXT_SCHEMAS = frozenset({"date", "time", "duration", "bytes"})
GEOSPATIAL = frozenset(
    {"point", "lineString", "polygon", "multiPoint", "multiLineString", "multiPolygon"}
)

# DTDL unit names -> pint unit strings.
UNITS: dict[str, str] = {
    "degreeCelsius": "degC",
    "degreeFahrenheit": "degF",
    "kelvin": "K",
    "pascal": "Pa",
    "kilopascal": "kPa",
    "bar": "bar",
    "poundPerSquareInch": "psi",
    "millimetresOfMercury": "mmHg",
    "metre": "m",
    "centimetre": "cm",
    "millimetre": "mm",
    "kilometre": "km",
    "metrePerSecond": "m/s",
    "kilometrePerHour": "km/h",
    "milePerHour": "mph",
    "metrePerSecondSquared": "m/s^2",
    "litre": "L",
    "millilitre": "mL",
    "cubicMetre": "m^3",
    "litrePerSecond": "L/s",
    "litrePerHour": "L/h",
    "cubicMetrePerSecond": "m^3/s",
    "cubicMetrePerHour": "m^3/h",
    "gram": "g",
    "kilogram": "kg",
    "milligram": "mg",
    "tonne": "t",
    "newton": "N",
    "joule": "J",
    "kilojoule": "kJ",
    "watt": "W",
    "kilowatt": "kW",
    "megawatt": "MW",
    "wattHour": "Wh",
    "kilowattHour": "kWh",
    "megawattHour": "MWh",
    "volt": "V",
    "millivolt": "mV",
    "ampere": "A",
    "milliampere": "mA",
    "ohm": "ohm",
    "hertz": "Hz",
    "kilohertz": "kHz",
    "revolutionPerMinute": "rpm",
    "radianPerSecond": "rad/s",
    "second": "s",
    "millisecond": "ms",
    "minute": "min",
    "hour": "h",
    "day": "day",
    "percent": "percent",
    "radian": "rad",
    "degreeOfArc": "deg",
    "lux": "lx",
    "decibel": "dB",
    "litrePerKilometre": "L/km",
    "kilometrePerLitre": "km/L",
    "metrePerHour": "m/h",
    "gramPerCubicMetre": "g/m^3",
    "milligramPerLitre": "mg/L",
}

_CONTENT_KINDS = ("Property", "Telemetry", "Command", "Relationship", "Component")
# JSON-LD lets a document name a DTDL property by its full IRI instead of its term, as some
# published ontologies do ("dtmi:dtdl:property:schema;2" for "schema").
_EXPANDED_TERM = re.compile(r"dtmi:dtdl:property:([A-Za-z]+);[234]")


def compact_terms(document: Any) -> Any:
    """``document`` with DTDL property IRIs used as keys replaced by their terms (a copy,
    made without recursion)."""

    def compacted_key(key: Any) -> Any:
        match = _EXPANDED_TERM.fullmatch(key) if isinstance(key, str) else None
        return match.group(1) if match else key

    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(document, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, Mapping):
            copy: dict[Any, Any] = {}
            for key, value in item.items():
                copy[compacted_key(key)] = None
                stack.append((value, copy, compacted_key(key)))
            parent[slot] = copy
        elif isinstance(item, list):
            items: list[Any] = [None] * len(item)
            stack.extend((value, items, index) for index, value in enumerate(item))
            parent[slot] = items
        else:
            parent[slot] = item
    return root[0]


_CAMEL_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_POWERS = {"square": "^2", "cubic": "^3"}
_POWER_SUFFIXES = {"squared": "^2", "cubed": "^3"}


# Bounded: unit names come from callers.
@functools.lru_cache(maxsize=4096)
def pint_unit(dtdl_unit: str) -> str | None:
    """A DTDL unit name (``kilogramPerCubicMetre``, ``horsepower``) as a unit string pint
    reads (``kilogram/metre^3``), or None if pint does not know it.

    The table above covers the common units with their conventional symbols; this reads the rest
    of DTDL's unit vocabulary, which names units in camel case from SI words.
    """
    words = [w.lower() for w in _CAMEL_WORDS.findall(dtdl_unit)]
    if not words or "".join(words) != dtdl_unit.lower():
        return None
    parts: list[tuple[str, ...]] = []  # words of one unit and its power, or ("/",)
    power = ""
    unit_word: list[str] = []

    def flush() -> None:
        nonlocal power
        if unit_word:
            parts.append((*tuple(unit_word), power))
            unit_word.clear()
            power = ""

    for word in words:
        if word == "per":
            flush()
            parts.append(("/",))
        elif word in _POWERS:
            flush()
            power = _POWERS[word]
        elif word in _POWER_SUFFIXES and unit_word:
            power = _POWER_SUFFIXES[word]
            flush()
        else:
            unit_word.append(word)
    flush()
    # pint names some units with several words (kilowatt_hour); others are products (newton
    # metre): try the first reading, then the second.
    for joiner in ("_", "*"):
        text = ""
        for part in parts:
            word = "/" if part == ("/",) else joiner.join(part[:-1]) + part[-1]
            text += word if word == "/" or not text or text.endswith("/") else "*" + word
        try:
            dimensions_of(text)
        except UnitError:
            continue
        return text
    return None


def _text(value: Any) -> str:
    """DTDL strings may be localised maps ({"en": ...}); English or the first one is kept."""
    if isinstance(value, Mapping):
        return str(value.get("en") or next(iter(value.values()), ""))
    return value if isinstance(value, str) else ""


def _types(element: Mapping[str, Any]) -> list[str]:
    kind = element.get("@type", [])
    return [kind] if isinstance(kind, str) else [k for k in kind if isinstance(k, str)]


class SchemaBudgetError(ValueError):
    """The DTDL schemas of a batch expand to more nodes than allowed.

    Named schemas are expanded where they are used, so a small ontology whose schemas refer to
    each other many times could expand exponentially; the converter counts what it builds.
    """

    def __init__(self, max_schema_nodes: int, path: str) -> None:
        super().__init__(
            f"the DTDL schemas of the request expand to more than {max_schema_nodes} schema nodes"
        )
        self.max_schema_nodes = max_schema_nodes
        self.violation = FieldViolation(path, "schema expansion budget exhausted here")


class _Converter:
    def __init__(self, max_schema_nodes: int, max_notes: int) -> None:
        self.notes: list[tuple[str, str]] = []
        self.notes_left_out = 0
        self.schemas: dict[str, tuple[Mapping[str, Any], str]] = {}
        self.interfaces: list[tuple[Mapping[str, Any], str]] = []
        self._max_schema_nodes = max_schema_nodes
        self._max_notes = max_notes
        self._schema_nodes = 0

    def note(self, path: str, message: str) -> None:
        if len(self.notes) < self._max_notes:
            self.notes.append((path, message))
        else:
            self.notes_left_out += 1

    def _count_schema_node(self, path: str) -> None:
        # Named schemas are expanded where they are used, so a small ontology whose schemas
        # refer to each other many times could expand exponentially: count what is built.
        self._schema_nodes += 1
        if self._schema_nodes > self._max_schema_nodes:
            raise SchemaBudgetError(self._max_schema_nodes, path)

    def collect(self, document: Any, path: str) -> None:
        """Finds interfaces (top-level and inline) and reusable schemas, in any order.

        Inline interfaces are followed with an explicit stack: a document may nest them as deep
        as its JSON parsed."""
        stack: list[tuple[Any, str]] = [(document, path)]
        while stack:
            item, where = stack.pop()
            found: list[tuple[Any, str]] = []
            if isinstance(item, list):
                found = [(element, f"{where}[{index}]") for index, element in enumerate(item)]
            elif not isinstance(item, Mapping) or "Interface" not in _types(item):
                self.note(where, "not a DTDL Interface; skipped")
            else:
                found = self._interface_found(item, where)
            stack.extend(reversed(found))

    def _interface_found(self, document: Mapping[str, Any], path: str) -> list[tuple[Any, str]]:
        """Takes in one interface and its schemas; the inline interfaces it holds."""
        self._check_context(document, path)
        self.interfaces.append((document, path))
        for index, schema in enumerate(document.get("schemas", []) or []):
            if isinstance(schema, Mapping) and isinstance(schema.get("@id"), str):
                self.schemas[schema["@id"]] = (schema, f"{path}.schemas[{index}]")
        inline = [
            (parent, f"{path}.extends[{index}]")
            for index, parent in enumerate(_as_list(document.get("extends")))
            if isinstance(parent, Mapping)
        ]
        for index, content in enumerate(document.get("contents", []) or []):
            schema = content.get("schema") if isinstance(content, Mapping) else None
            if isinstance(schema, Mapping) and "Interface" in _types(schema):
                inline.append((schema, f"{path}.contents[{index}].schema"))
        return inline

    def _check_context(self, document: Mapping[str, Any], path: str) -> None:
        contexts = _as_list(document.get("@context"))
        if not contexts:
            return  # an inline interface inherits its parent's context
        for context in contexts:
            if context not in DTDL_CONTEXTS and not (
                isinstance(context, str) and _EXTENSION_CONTEXT.fullmatch(context)
            ):
                self.note(f"{path}.@context", f"unknown context {context!r}; read as DTDL v3")

    def interface(self, element: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        model_id = element.get("@id")
        if not isinstance(model_id, str):
            self.note(path, "an interface without @id cannot be stored; skipped")
            return None
        document: dict[str, Any] = {"id": model_id}
        if element.get("displayName"):
            document["displayName"] = _text(element["displayName"])
        description = self._description(element, path)
        if description:
            document["description"] = description
        parents = []
        for parent in _as_list(element.get("extends")):
            parent_id = parent.get("@id") if isinstance(parent, Mapping) else parent
            if isinstance(parent_id, str):
                parents.append(parent_id)
        if parents:
            document["extends"] = parents
        for index, content in enumerate(element.get("contents", []) or []):
            self._content(document, content, f"{path}.contents[{index}]")
        return document

    def _content(self, document: dict[str, Any], content: Any, path: str) -> None:
        if not isinstance(content, Mapping) or not isinstance(content.get("name"), str):
            self.note(path, "a content without a name; skipped")
            return
        name = content["name"]
        kinds = _types(content)
        kind = next((k for k in kinds if k in _CONTENT_KINDS), None)
        if kind is None:
            self.note(path, f"unknown content type {kinds}; skipped")
            return
        for semantic in kinds:
            if semantic not in (kind, "Historized") and kind in ("Property", "Telemetry"):
                self.note(f"{path}.@type", f"semantic type {semantic!r} is not kept (its unit is)")
        description = self._description(content, path)
        display_name = _text(content.get("displayName"))
        if description and display_name:
            # The model language gives an element one text: the description wins.
            self.note(f"{path}.displayName", f"displayName not kept: {display_name!r}")
        description = description or display_name
        if kind == "Property":
            prop = self._field(content, path, telemetry=False)
            if prop is not None:
                prop["writable"] = bool(content.get("writable", False))
                document.setdefault("properties", {})[name] = _described(prop, description)
        elif kind == "Telemetry":
            field = self._field(content, path, telemetry=True)
            if field is not None:
                document.setdefault("telemetry", {})[name] = _described(field, description)
        elif kind == "Command":
            document.setdefault("commands", {})[name] = _described(
                self._command(content, path), description
            )
        elif kind == "Relationship":
            document.setdefault("relationships", {})[name] = _described(
                self._relationship(content, path), description
            )
        else:
            schema = content.get("schema")
            target = schema.get("@id") if isinstance(schema, Mapping) else schema
            if not isinstance(target, str):
                self.note(f"{path}.schema", "a component needs an interface id; skipped")
                return
            document.setdefault("components", {})[name] = _described({"model": target}, description)

    def _description(self, element: Mapping[str, Any], path: str) -> str:
        """``description``, or ``comment`` when there is none; a comment beside a description
        is reported, since the model language has one text per element."""
        description = _text(element.get("description"))
        comment = _text(element.get("comment"))
        if description and comment:
            self.note(f"{path}.comment", f"comment not kept (the description is): {comment!r}")
        return description or comment

    def _dropped_texts(self, element: Mapping[str, Any], path: str) -> None:
        """Notes for texts on schema parts, which the model language does not carry."""
        for key in ("displayName", "description", "comment"):
            text = _text(element.get(key))
            if text:
                self.note(f"{path}.{key}", f"{key} of a schema part is not kept: {text!r}")

    def _field(
        self, content: Mapping[str, Any], path: str, telemetry: bool
    ) -> dict[str, Any] | None:
        schema = self.schema(content.get("schema"), f"{path}.schema")
        if schema is None:
            return None
        if telemetry and not (
            (isinstance(schema, str) and schema != "timestamp")
            or (isinstance(schema, Mapping) and "enum" in schema)
        ):
            self.note(
                f"{path}.schema",
                "telemetry of a complex schema has no time series "
                "equivalent (one field per series); skipped",
            )
            return None
        field: dict[str, Any] = {"schema": schema}
        unit = content.get("unit")
        if isinstance(unit, str):
            mapped = UNITS.get(unit) or pint_unit(unit)
            if mapped is not None:
                field["unit"] = mapped
            else:
                self.note(f"{path}.unit", f"unit {unit!r} has no mapping; dropped")
        return field

    def _command(self, content: Mapping[str, Any], path: str) -> dict[str, Any]:
        command: dict[str, Any] = {}
        for part in ("request", "response"):
            payload = content.get(part)
            if isinstance(payload, Mapping):
                schema = self.schema(payload.get("schema"), f"{path}.{part}.schema")
                if schema is not None:
                    command[part] = schema
        if "commandType" in content:
            self.note(f"{path}.commandType", "commandType (DTDL v2, deprecated) is not kept")
        return command

    def _relationship(self, content: Mapping[str, Any], path: str) -> dict[str, Any]:
        relationship: dict[str, Any] = {}
        if isinstance(content.get("target"), str):
            relationship["target"] = content["target"]
        for key in ("minMultiplicity", "maxMultiplicity"):
            if isinstance(content.get(key), int):
                relationship[key] = content[key]
        if content.get("writable") is not None:
            self.note(f"{path}.writable", "relationships are always writable in twinstack")
        properties: dict[str, Any] = {}
        for index, prop in enumerate(content.get("properties", []) or []):
            prop_path = f"{path}.properties[{index}]"
            if isinstance(prop, Mapping) and isinstance(prop.get("name"), str):
                converted = self._field(prop, prop_path, telemetry=False)
                if converted is not None:
                    properties[prop["name"]] = converted
        if properties:
            relationship["properties"] = properties
        return relationship

    def schema(self, schema: Any, path: str, depth: int = 0) -> Any:
        """A DTDL schema as a model-language schema; None (with a note) if it has none."""
        self._count_schema_node(path)
        if depth > 8:
            self.note(path, "schema nested too deep; skipped")
            return None
        if isinstance(schema, str):
            if schema in PRIMITIVE_SCHEMAS:
                return PRIMITIVE_SCHEMAS[schema]
            if schema in TEXT_SCHEMAS:
                self.note(path, f"{schema} is kept as its ISO 8601 / base64 string")
                return "string"
            if schema in GEOSPATIAL:
                self.note(path, f"{schema} is kept as a GeoJSON object of type and coordinates")
                return {"object": {"type": "string", "coordinates": {"array": "double"}}}
            if schema in self.schemas:
                definition, _ = self.schemas[schema]
                return self.schema(definition, path, depth + 1)
            self.note(path, f"unknown schema {schema!r}; skipped")
            return None
        if not isinstance(schema, Mapping):
            self.note(path, "a schema must be a name or an object; skipped")
            return None
        kinds = _types(schema)
        if "Enum" in kinds:
            entries = [v for v in schema.get("enumValues", []) or [] if isinstance(v, Mapping)]
            values = [v.get("enumValue") for v in entries]
            if not values:
                self.note(path, "an enum without values; skipped")
                return None
            renamed = {
                str(v.get("name")): v.get("enumValue")
                for v in entries
                if v.get("name") is not None and v.get("name") != v.get("enumValue")
            }
            if renamed:
                self.note(
                    f"{path}.enumValues",
                    f"enum value names are not kept, their values are: {renamed}",
                )
            for index, entry in enumerate(entries):
                self._dropped_texts(entry, f"{path}.enumValues[{index}]")
            return {"enum": values}
        if "Array" in kinds:
            items = self.schema(schema.get("elementSchema"), f"{path}.elementSchema", depth + 1)
            return None if items is None else {"array": items}
        if "Map" in kinds:
            value = schema.get("mapValue")
            inner = value.get("schema") if isinstance(value, Mapping) else None
            items = self.schema(inner, f"{path}.mapValue.schema", depth + 1)
            return None if items is None else {"map": items}
        if "Object" in kinds:
            fields: dict[str, Any] = {}
            for index, field in enumerate(schema.get("fields", []) or []):
                field_path = f"{path}.fields[{index}]"
                if isinstance(field, Mapping) and isinstance(field.get("name"), str):
                    self._dropped_texts(field, field_path)
                    converted = self.schema(field.get("schema"), f"{field_path}.schema", depth + 1)
                    if converted is not None:
                        fields[field["name"]] = converted
            return {"object": fields}
        self.note(path, f"unknown schema type {kinds}; skipped")
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _described(element: dict[str, Any], description: str) -> dict[str, Any]:
    if description:
        element["description"] = description
    return element


def convert_dtdl(
    sources: Sequence[tuple[Any, str]],
    *,
    max_schema_nodes: int = 1_000_000,
    max_notes: int = 10_000,
) -> tuple[list[tuple[dict[str, Any], str]], list[tuple[str, str]]]:
    """Converts DTDL documents (each with its origin, e.g. a file name).

    Returns model-language documents with the path of the interface each came from, and the
    notes on what could not be mapped (the first ``max_notes``, then one that counts the rest).

    Raises:
        SchemaBudgetError: the schemas expand to more than ``max_schema_nodes`` nodes.
    """
    converter = _Converter(max_schema_nodes, max_notes)
    for document, origin in sources:
        converter.collect(compact_terms(document), origin)
    converted = []
    for interface, path in converter.interfaces:
        document = converter.interface(interface, path)
        if document is not None:
            converted.append((document, path))
    notes = converter.notes
    if converter.notes_left_out:
        notes.append(("", f"{converter.notes_left_out} more notes left out"))
    return converted, notes
