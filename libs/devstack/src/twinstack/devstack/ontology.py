"""A synthetic DTDL ontology shaped like the published ones (building, city, energy and
manufacturing ontologies for Azure Digital Twins), for import tests and the registry bench.

What makes real ontologies hard is reproduced on purpose: one file per interface (some with a
UTF-8 byte order mark, as files written on Windows have), DTDL v2 and v3 contexts side by side,
relationship cycles of every length from 1 to 4, ``extends`` chains as deep as DTDL allows spread
over many files, components, interface-level reusable schemas used from other files, semantic
types and units from DTDL's vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

V2 = "dtmi:dtdl:context;2"
V3 = ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"]
CHAIN_LENGTH = 11  # interfaces per extends chain: 10 levels of extends, DTDL's maximum
UNITS = ("degreeCelsius", "kilowatt", "horsepower", "knot", "nanometre", "kilogramPerCubicMetre")
BOM = "\ufeff"


@dataclass(frozen=True)
class OntologyFile:
    name: str
    text: str


def interface_id(index: int) -> str:
    return f"dtmi:org:example:ontology:Thing{index};1"


def part_id(index: int) -> str:
    return f"dtmi:org:example:ontology:Part{index};1"


def status_schema_id(chain: int) -> str:
    return f"dtmi:org:example:ontology:Status{chain};1"


def generate(interfaces: int = 1000, parts: int = 20) -> list[OntologyFile]:
    """``interfaces`` interfaces (plus ``parts`` component interfaces), one file each.

    Interface ``i`` extends ``i - 1`` within chains of :data:`CHAIN_LENGTH`; its relationship
    ``next`` closes a cycle of length ``1 + i % 4`` with its neighbours; the chain's root defines
    an enum schema that every member of the chain (in other files) uses.
    """
    files = []
    for index in range(parts):
        files.append(
            _file(
                f"parts/Part{index}.json",
                {
                    "@context": V2,
                    "@id": part_id(index),
                    "@type": "Interface",
                    "displayName": f"Part {index}",
                    "contents": [
                        {
                            "@type": ["Telemetry", "Temperature"],
                            "name": "temperature",
                            "schema": "double",
                            "unit": "degreeCelsius",
                        }
                    ],
                },
                bom=index % 5 == 0,
            )
        )
    cycle_start = 0
    cycles: dict[int, list[int]] = {}
    while cycle_start < interfaces:
        length = 1 + cycle_start % 4
        members = list(range(cycle_start, min(cycle_start + length, interfaces)))
        for member in members:
            cycles[member] = members
        cycle_start += length
    for index in range(interfaces):
        chain, position = divmod(index, CHAIN_LENGTH)
        members = cycles[index]
        target = members[(members.index(index) + 1) % len(members)]
        unit = UNITS[index % len(UNITS)]
        contents: list[dict[str, Any]] = [
            {
                "@type": "Property",
                "name": f"serial{index}",
                "schema": "string",
                "description": {"en": f"Serial number of thing {index}"},
            },
            {
                "@type": ["Telemetry", "Power"] if unit == "kilowatt" else "Telemetry",
                "name": f"reading{index}",
                "schema": "double",
                "unit": unit,
            },
            {"@type": "Telemetry", "name": f"status{index}", "schema": status_schema_id(chain)},
            {
                "@type": "Relationship",
                "name": f"next{index}",
                "target": interface_id(target),
                "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}],
            },
        ]
        if index % 3 == 0:
            contents.append(
                {"@type": "Component", "name": f"part{index}", "schema": part_id(index % parts)}
            )
        document: dict[str, Any] = {
            "@context": V2 if index % 2 else V3,
            "@id": interface_id(index),
            "@type": "Interface",
            "displayName": {"en": f"Thing {index}"},
            "contents": contents,
        }
        if position:
            document["extends"] = interface_id(index - 1)
        else:
            document["schemas"] = [
                {
                    "@id": status_schema_id(chain),
                    "@type": "Enum",
                    "valueSchema": "string",
                    "enumValues": [
                        {"name": "running", "enumValue": "running"},
                        {"name": "stopped", "enumValue": "stopped"},
                    ],
                }
            ]
        files.append(_file(f"things/chain{chain}/Thing{index}.json", document, bom=index % 7 == 0))
    return files


def _file(name: str, document: dict[str, Any], *, bom: bool) -> OntologyFile:
    text = json.dumps(document, indent=2)
    return OntologyFile(name, BOM + text if bom else text)
