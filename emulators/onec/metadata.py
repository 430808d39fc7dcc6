"""The service document and `$metadata` (CSDL v3, in 1C's style) of the published sets.

1C's style: Namespace StandardODATA, every property Nullable="true" but keys, tabular parts
as Collection(<Set>_<Part>_RowType), associations named <Type>_<Field> with roles
Begin/End and no AssociationSet, Post/Unpost as bindable FunctionImports without EntitySet.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from emulators.onec.schema import EDM_TYPES, EntityType, Prop, Table

EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
METADATA_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
EDM = "http://schemas.microsoft.com/ado/2009/11/edm"


def service_document_xml(root: str, sets: Iterable[str]) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<service xmlns="http://www.w3.org/2007/app" xmlns:atom="http://www.w3.org/2005/Atom"'
        f" xml:base={quoteattr(root)}>",
        "<workspace><atom:title>Default</atom:title>",
    ]
    for name in sets:
        title = f"<atom:title>{name}</atom:title>"
        lines.append(f"<collection href={quoteattr(name)}>{title}</collection>")
    lines.append("</workspace></service>")
    return "\n".join(lines)


def service_document_json(root: str, sets: Iterable[str]) -> dict[str, object]:
    return {
        "odata.metadata": root,  # the service root itself (onec-real.md)
        "value": [{"name": name, "url": name} for name in sets],
    }


def all_sets(types: Iterable[EntityType], published: set[str]) -> list[str]:
    """Published sets plus the row sets of their tabular parts."""
    names = []
    for etype in types:
        if etype.name in published:
            names.append(etype.name)
            names.extend(f"{etype.name}_{table.name}" for table in etype.tables)
    return names


def csdl(types: Iterable[EntityType], published: set[str]) -> str:
    shown = [t for t in types if t.name in published]
    body: list[str] = []
    associations: list[str] = []
    functions: list[str] = []
    for etype in shown:
        body.append(_entity_type(etype, published, associations))
        for table in etype.tables:
            body.append(_row_type(etype, table))
            body.append(_row_entity(etype, table))
        if etype.postable:
            for name in ("Post", "Unpost"):
                functions.append(_function(name, etype, posting=name == "Post"))
        if etype.kind == "Task":
            functions.append(_function("ExecuteTask", etype, posting=False))
    container = [
        '<EntityContainer Name="EnterpriseV8" m:IsDefaultEntityContainer="true">',
        *(
            f"<EntitySet Name={quoteattr(name)} EntityType={quoteattr('StandardODATA.' + name)}/>"
            for name in all_sets(shown, published)
        ),
        *functions,
        "</EntityContainer>",
    ]
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<edmx:Edmx xmlns:edmx="{EDMX}" Version="1.0">',
            f'<edmx:DataServices xmlns:m="{METADATA_NS}" m:DataServiceVersion="3.0">',
            f'<Schema xmlns="{EDM}" Namespace="StandardODATA">',
            *body,
            *associations,
            *container,
            "</Schema>",
            "</edmx:DataServices>",
            "</edmx:Edmx>",
        ]
    )


def _property(prop: Prop, key: bool = False) -> list[str]:
    nullable = "false" if key else "true"
    # Real $metadata has no MaxLength facets (onec-real.md).
    lines = [
        f'<Property Name={quoteattr(prop.name)} Type="{EDM_TYPES[prop.type]}"'
        f' Nullable="{nullable}"/>'
    ]
    if prop.type == "composite":
        lines.append(
            f'<Property Name={quoteattr(prop.name + "_Type")} Type="Edm.String" Nullable="true"/>'
        )
    return lines


def _entity_type(etype: EntityType, published: set[str], associations: list[str]) -> str:
    keys = ("Ref_Key",) if etype.has_ref else ("Period", *etype.dimensions)
    lines = [f'<EntityType Name={quoteattr(etype.name)} OpenType="true">', "<Key>"]
    lines += [f"<PropertyRef Name={quoteattr(k)}/>" for k in keys]
    lines.append("</Key>")
    for prop in etype.all_props():
        lines += _property(prop, key=prop.name in keys)
    for table in etype.tables:
        row_type = f"StandardODATA.{etype.name}_{table.name}_RowType"
        lines.append(
            f'<Property Name={quoteattr(table.name)} Type="Collection({row_type})"'
            ' Nullable="true"/>'
        )
    for prop in etype.all_props():
        if prop.type == "ref" and prop.name != "Ref_Key" and prop.target in published:
            relation = f"{etype.name}_{prop.nav_name}"
            lines.append(
                f"<NavigationProperty Name={quoteattr(prop.nav_name)}"
                f" Relationship={quoteattr('StandardODATA.' + relation)}"
                ' FromRole="Begin" ToRole="End"/>'
            )
            associations.append(
                f"<Association Name={quoteattr(relation)}>"
                f'<End Role="Begin" Type={quoteattr("StandardODATA." + etype.name)}'
                ' Multiplicity="*"/>'
                f'<End Role="End" Type={quoteattr("StandardODATA." + str(prop.target))}'
                ' Multiplicity="0..1"/></Association>'
            )
    lines.append("</EntityType>")
    return "\n".join(lines)


def _row_type(etype: EntityType, table: Table) -> str:
    lines = [
        f"<ComplexType Name={quoteattr(f'{etype.name}_{table.name}_RowType')}>",
        '<Property Name="LineNumber" Type="Edm.Int64" Nullable="true"/>',
    ]
    for prop in table.props:
        lines += _property(prop)
    lines.append("</ComplexType>")
    return "\n".join(lines)


def _row_entity(etype: EntityType, table: Table) -> str:
    lines = [
        f'<EntityType Name={quoteattr(f"{etype.name}_{table.name}")} OpenType="true">',
        '<Key><PropertyRef Name="Ref_Key"/><PropertyRef Name="LineNumber"/></Key>',
        '<Property Name="Ref_Key" Type="Edm.Guid" Nullable="false"/>',
        '<Property Name="LineNumber" Type="Edm.Int64" Nullable="false"/>',
    ]
    for prop in table.props:
        lines += _property(prop)
    lines.append("</EntityType>")
    return "\n".join(lines)


def _function(name: str, etype: EntityType, *, posting: bool) -> str:
    lines = [
        f'<FunctionImport Name="{name}" IsBindable="true" IsSideEffecting="true">',
        f'<Parameter Name="bindingParameter" Type={quoteattr("StandardODATA." + etype.name)}/>',
    ]
    if posting:
        lines.append('<Parameter Name="PostingModeOperational" Type="Edm.Boolean"/>')
    lines.append("</FunctionImport>")
    return "\n".join(lines)
