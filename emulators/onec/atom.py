"""Atom XML, 1C's default answer format when neither `$format=json` nor an
`Accept: application/json` header asks for JSON. Built from the JSON shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from emulators.onec.metadata import METADATA_NS

ATOM = "http://www.w3.org/2005/Atom"
DATA_NS = "http://schemas.microsoft.com/ado/2007/08/dataservices"
SCHEME = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def error_xml(code: str, message: str) -> str:
    return (
        f'{_HEAD}<m:error xmlns:m="{METADATA_NS}"><m:code>{escape(code)}</m:code>'
        f'<m:message xml:lang="ru">{escape(message)}</m:message></m:error>'
    )


def feed_xml(root: str, entity_set: str, items: Iterable[Mapping[str, Any]], updated: str) -> str:
    entries = "".join(_entry(root, entity_set, item, updated) for item in items)
    return (
        f'{_HEAD}<feed xmlns="{ATOM}" xmlns:d="{DATA_NS}" xmlns:m="{METADATA_NS}"'
        f" xml:base={quoteattr(root)}><id>{escape(root + entity_set)}</id>"
        f'<title type="text">{escape(entity_set)}</title><updated>{updated}</updated>'
        f"{entries}</feed>"
    )


def entry_xml(root: str, entity_set: str, item: Mapping[str, Any], updated: str) -> str:
    body = _entry(root, entity_set, item, updated)
    return body.replace(
        "<entry>",
        f'{_HEAD}<entry xmlns="{ATOM}" xmlns:d="{DATA_NS}" xmlns:m="{METADATA_NS}"'
        f" xml:base={quoteattr(root)}>",
        1,
    )


def _entry(root: str, entity_set: str, item: Mapping[str, Any], updated: str) -> str:
    ref = item.get("Ref_Key")
    ident = f"{root}{entity_set}(guid'{ref}')" if ref else root + entity_set
    return (
        f"<entry><id>{escape(ident)}</id>"
        f'<category term={quoteattr("StandardODATA." + entity_set)} scheme="{SCHEME}"/>'
        f'<title type="text"/><updated>{updated}</updated><author/>'
        f'<content type="application/xml"><m:properties>{_properties(item)}</m:properties>'
        f"</content></entry>"
    )


def _properties(item: Mapping[str, Any]) -> str:
    parts = []
    for name, value in item.items():
        if "@" in name or name.startswith("odata.") or isinstance(value, Mapping):
            continue
        if isinstance(value, list):
            rows = "".join(
                f'<d:element m:type="StandardODATA.RowType">{_properties(row)}</d:element>'
                for row in value
                if isinstance(row, Mapping)
            )
            parts.append(f'<d:{name} m:type="Collection(StandardODATA.RowType)">{rows}</d:{name}>')
        elif isinstance(value, bool):
            parts.append(f"<d:{name}>{'true' if value else 'false'}</d:{name}>")
        elif value is None:
            parts.append(f'<d:{name} m:null="true"/>')
        else:
            parts.append(f"<d:{name}>{escape(str(value))}</d:{name}>")
    return "".join(parts)
