"""``casebridge check`` validates the field mapping against Creatio's ``$metadata``: the
CSDL parsing, the rules, and the check hook against the sandbox (in process and served)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from casebridge.bridge import Bridge
from casebridge.context import PluginContext
from casebridge.plugin import MappedField
from casebridge.secrets import Secret
from casebridge_creatio.client import CreatioClient
from casebridge_creatio.fieldcheck import column_problems
from casebridge_creatio.health import check_operations
from casebridge_creatio.lookups import CASE_LOOKUPS
from casebridge_creatio.metadata import parse_metadata
from casebridge_creatio.operations import CreatioOperations
from casebridge_creatio.sandbox.schema import ENTITIES
from casebridge_creatio.sandbox.wire import metadata_xml
from casebridge_creatio.settings import CreatioSettings
from hypothesis import given
from hypothesis import strategies as st
from plugin_world import creatio_config
from support.plugins import LoopChannel
from test_creatio_plugin_hooks import served_sandbox

pytestmark = pytest.mark.anyio

CREATIO_LIKE = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
 <edmx:DataServices>
  <Schema Namespace="Terrasoft.Configuration.OData" xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EntityType Name="Case">
    <Key><PropertyRef Name="Id"/></Key>
    <Property Name="Id" Type="Edm.Guid" Nullable="false"/>
    <Property Name="Subject" Type="Edm.String"/>
    <Property Name="UsrProductId" Type="Edm.Guid"/>
    <NavigationProperty Name="UsrProduct" Type="Terrasoft.Configuration.OData.Product"/>
    <NavigationProperty Name="CaseFileCollectionByCase"
                        Type="Collection(Terrasoft.Configuration.OData.CaseFile)"/>
   </EntityType>
   <EntityType Name="Product"><Property Name="Name" Type="Edm.String"/></EntityType>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""


def rule(column: str, kind: str = "text", *values: str) -> MappedField:
    return MappedField(column, kind, values or ("x",), "fields.rules[0]")


def test_parse_metadata_reads_the_sandboxs_document() -> None:
    meta = parse_metadata(metadata_xml())
    case = meta.entity("Case")
    assert case is not None
    assert case.columns["Subject"] == "Edm.String" and case.columns["PriorityId"] == "Edm.Guid"
    assert case.lookups["PriorityId"] == "CasePriority"
    assert case.lookups["OwnerId"] == "Contact" and case.lookups["CreatedById"] == "Contact"
    assert "ProductName" not in case.columns
    assert meta.entity("Activity").lookups["MessageTypeId"] == "EmailType"


def test_parse_metadata_without_constraints_follows_creatios_naming() -> None:
    meta = parse_metadata(CREATIO_LIKE)
    case = meta.entity("Case")
    assert case is not None
    assert case.lookups == {"UsrProductId": "Product"}  # the collection is not a lookup
    assert meta.entity("Product") is not None


@pytest.mark.parametrize(
    "document",
    [
        b"not xml at all",
        b"<?xml version='1.0'?><edmx:Edmx xmlns:edmx='x'/>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<x>&b;</x>",
    ],
)
def test_parse_metadata_refuses_what_it_cannot_read_safely(document: bytes) -> None:
    with pytest.raises(ValueError, match=r"\$metadata"):
        parse_metadata(document)


def test_column_problems_name_each_bad_field() -> None:
    meta = parse_metadata(metadata_xml())
    fields = [
        rule("ProductName"),
        rule("Subjct"),
        rule("PriorityId", "text", "High"),
        rule("OwnerId", "text", str(uuid.uuid4())),  # a GUID fits a lookup column as text
        rule("ProductId", "lookup", "X200"),
        rule("PriorityId", "lookup", "High"),
        rule("Notes"),
    ]
    problems, lookups = column_problems(meta, fields, {**CASE_LOOKUPS, "ProductId": "Product"})
    assert problems == [
        "fields.rules[0]: Creatio's Case has no column 'ProductName'",
        "fields.rules[0]: Creatio's Case has no column 'Subjct' (did you mean 'Subject'?)",
        'fields.rules[0]: PriorityId is a lookup column in Creatio; give it kind = "lookup" '
        "and a display value",
        "fields.rules[0]: Creatio's Case has no column 'ProductId' (did you mean 'PriorityId'?)",
    ]
    assert lookups == [(fields[5], "CasePriority")]


def test_column_problems_lookup_entities_must_be_known_and_exist() -> None:
    meta = parse_metadata(CREATIO_LIKE)
    field = rule("UsrProductId", "lookup", "X200")
    problems, _ = column_problems(meta, [field], CASE_LOOKUPS)
    assert problems == [
        "fields.rules[0]: UsrProductId: unknown lookup column; name its entity "
        "in [plugins.creatio] lookup_entities (Creatio says it points at Product)"
    ]
    problems, _ = column_problems(meta, [field], {"UsrProductId": "UsrProduct"})
    assert problems == ["fields.rules[0]: UsrProductId: Creatio has no entity 'UsrProduct'"]
    assert column_problems(meta, [field], {"UsrProductId": "Product"}) == ([], [(field, "Product")])


def bridge_with_fields(root: Path, creatio: dict[str, object]) -> Bridge:
    path = creatio_config(
        root,
        creatio,
        bridge={"plugins": ["ai"]},
        fields={
            "rules": [
                {"column": "ProductName", "value": "Printer X200"},
                {"column": "PriorityId", "value": "Hgih", "kind": "lookup"},
                {"column": "PriorityId", "value": "High", "kind": "lookup", "keywords": ["x"]},
            ]
        },
        plugins={
            "ai": {
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "fields": [
                    {
                        "column": "CategoryId",
                        "kind": "lookup",
                        "description": "the category",
                        "allowed": ["Incident", "Complaint"],
                    },
                    {"column": "ProductNmae", "description": "the product"},
                ],
            }
        },
    )
    return Bridge.from_config(path, plugins={"loop": LoopChannel()})


EXPECTED = [
    "fields.rules[0]: Creatio's Case has no column 'ProductName'",
    "plugins.ai.fields[1]: Creatio's Case has no column 'ProductNmae'",
    "fields.rules[1]: PriorityId: Creatio has no CasePriority named 'Hgih'",
    "plugins.ai.fields[0]: CategoryId: Creatio has no CaseCategory named 'Complaint'",
]


def test_mapped_fields_come_from_the_rules_and_the_plugins_fields(tmp_path) -> None:
    bridge = bridge_with_fields(tmp_path, {"url": "sandbox"})
    found = PluginContext(bridge, "creatio", None).mapped_fields()
    assert [(f.column, f.kind, f.values, f.where) for f in found] == [
        ("ProductName", "text", ("Printer X200",), "fields.rules[0]"),
        ("PriorityId", "lookup", ("Hgih",), "fields.rules[1]"),
        ("PriorityId", "lookup", ("High",), "fields.rules[2]"),
        ("CategoryId", "lookup", ("Incident", "Complaint"), "plugins.ai.fields[0]"),
        ("ProductNmae", "text", (), "plugins.ai.fields[1]"),
    ]


async def test_check_names_every_bad_mapped_field_in_process(tmp_path) -> None:
    bridge = bridge_with_fields(tmp_path, {"url": "sandbox"})
    result = await bridge.hooks.check("creatio")
    assert not result.ok
    assert result.detail.split("; ") == EXPECTED


async def test_check_reads_metadata_from_a_served_creatio(tmp_path) -> None:
    async with served_sandbox() as url:
        settings = {"url": url, "username": "Supervisor", "password": "Supervisor"}
        bridge = bridge_with_fields(tmp_path / "bad", settings)
        result = await bridge.hooks.check("creatio")
        assert not result.ok and result.detail.split("; ") == EXPECTED
        clean = Bridge.from_config(
            creatio_config(
                tmp_path / "ok",
                settings,
                fields={
                    "rules": [
                        {"column": "PriorityId", "value": "High", "kind": "lookup"},
                        {"column": "Notes", "value": "from casebridge"},
                    ]
                },
            ),
            plugins={"loop": LoopChannel()},
        )
        assert (await clean.hooks.check("creatio")).detail == "Active"


def test_sandbox_metadata_describes_exactly_what_the_sandbox_holds() -> None:
    meta = parse_metadata(metadata_xml())
    assert set(meta.entities) == set(ENTITIES)
    for name, entity in ENTITIES.items():
        parsed = meta.entity(name)
        assert parsed is not None
        assert dict(parsed.columns) == {c.name: c.type for c in entity.columns.values()}
        assert dict(parsed.lookups) == {c.name: c.ref for c in entity.columns.values() if c.ref}


names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,20}", fullmatch=True)


@given(
    st.dictionaries(
        names,
        st.dictionaries(
            names,
            st.sampled_from(["Edm.String", "Edm.Guid", "Edm.Int32", "Edm.Boolean"]),
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_parse_metadata_reads_any_entity_and_column_names(
    entities: dict[str, dict[str, str]], constraints: bool
) -> None:
    parts = []
    for entity, columns in entities.items():
        props = "".join(f'<Property Name="{c}" Type="{t}"/>' for c, t in columns.items())
        # Every Guid column "XId" gets a navigation property "X" to the first entity.
        target = next(iter(entities))
        navs = "".join(
            f'<NavigationProperty Name="{c[:-2]}" Type="NS.{target}">'
            + (
                f'<ReferentialConstraint Property="{c}" ReferencedProperty="Id"/>'
                if constraints
                else ""
            )
            + "</NavigationProperty>"
            for c, t in columns.items()
            if t == "Edm.Guid" and c.endswith("Id") and len(c) > 2
        )
        parts.append(f'<EntityType Name="{entity}">{props}{navs}</EntityType>')
    document = (
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        '<edmx:DataServices><Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" '
        f'Namespace="NS">{"".join(parts)}</Schema></edmx:DataServices></edmx:Edmx>'
    )
    meta = parse_metadata(document)
    assert set(meta.entities) == set(entities)
    for entity, columns in entities.items():
        parsed = meta.entities[entity]
        assert dict(parsed.columns) == columns
        assert set(parsed.lookups) == {
            c for c, t in columns.items() if t == "Edm.Guid" and c.endswith("Id") and len(c) > 2
        }


def creatio_answering_metadata(answer: httpx.Response) -> httpx.MockTransport:
    """A Creatio that signs in, has every record asked for, and answers ``$metadata``
    with ``answer``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/AuthService.svc/Login"):
            return httpx.Response(
                200,
                json={"Code": 0, "Message": ""},
                headers=[
                    ("set-cookie", ".ASPXAUTH=a; path=/"),
                    ("set-cookie", "BPMCSRF=c; path=/"),
                ],
            )
        if request.url.path != "/0/odata/$metadata":
            return httpx.Response(200, json={"Id": str(uuid.uuid4()), "value": []})
        assert request.headers["accept"] == "application/xml"
        return answer

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            httpx.Response(
                200, text="<html><body>Sign in</body></html>", headers={"content-type": "text/html"}
            ),
            "Creatio answered with a web page instead of JSON",
        ),
        (
            httpx.Response(
                403, json={"error": {"code": "Forbidden", "message": "No OData access"}}
            ),
            "Creatio refused to read $metadata (HTTP 403): No OData access",
        ),
        (
            httpx.Response(200, content=b"<edmx:Edmx", headers={"content-type": "application/xml"}),
            "cannot check the mapped fields: $metadata is not XML that can be read safely",
        ),
    ],
)
async def test_check_says_when_metadata_cannot_be_read(answer, problem) -> None:
    settings = CreatioSettings(
        url="https://acme.creatio.test",
        username="api",
        password=Secret("pw-never-shown"),
    )
    transport = creatio_answering_metadata(answer)
    async with CreatioClient(settings, transport=transport) as client:
        result = await check_operations(CreatioOperations(client, settings), [rule("ProductName")])
    assert not result.ok and problem in result.detail
    assert "pw-never-shown" not in result.detail
