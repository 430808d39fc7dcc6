"""The standard.odata endpoint of the emulated base: authentication, 1C sessions, routing
of `<Set>`, `<Set>(key)`, `/$count`, `/Post`, `/Unpost`, `/ExecuteTask`, `/SliceLast()`,
property paths, `$metadata` and the service document, in JSON or (by default) Atom.

Query strings are decoded by hand: `+` stays a plus, as in 1C.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from emulators.onec import atom
from emulators.onec.codec import Encoder, Selection
from emulators.onec.errors import (
    ODataFault,
    bad_guid,
    not_found,
    unknown_segment,
    unknown_set,
)
from emulators.onec.filter_lang import Guid, RowShape, number_literal, typed_literal
from emulators.onec.metadata import (
    all_sets,
    csdl,
    service_document_json,
    service_document_xml,
)
from emulators.onec.query import compile_filter, order, page, selection
from emulators.onec.schema import EntityType
from emulators.onec.state import OneCBase

SESSION_COOKIE = "ibsession"
IIS_QUERY_LIMIT = 2048
IIS_404 = (
    "<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>"
    "<body><h2>404 - File or directory not found.</h2></body></html>"
)
ACTIONS = ("Post", "Unpost", "ExecuteTask")


@dataclass(frozen=True)
class Publication:
    base: str
    user: str
    password: str


@dataclass(frozen=True)
class Format:
    json: bool
    links: bool  # minimalmetadata/fullmetadata: odata.metadata and navigation links


@dataclass(frozen=True)
class Target:
    """What a path names: an object set, a register or the rows of a tabular part."""

    name: str
    etype: EntityType
    table: str | None = None

    @property
    def shape(self) -> EntityType | RowShape:
        if self.table is None:
            return self.etype
        table = self.etype.table(self.table)
        assert table is not None
        return RowShape(self.etype, table)


async def handle(request: Request, rest: str) -> Response:
    base: OneCBase = request.app.state.base
    publication: Publication = request.app.state.publication
    base.requests += 1
    params = query_params(request.scope.get("query_string", b""))
    fmt = negotiate(params, request.headers.get("accept", ""))
    raw_query = request.scope.get("query_string", b"")
    if b"+" in request.scope.get("raw_path", b"") or (
        base.faults.iis and len(raw_query) > IIS_QUERY_LIMIT
    ):
        # IIS refuses a `+` in the path, and a query string over 2 048 bytes, with an HTML
        # 404 before 1C sees the request (onec.md §1, onec-real.md).
        return Response(IIS_404, 404, media_type="text/html")
    user = authenticate(request.headers.get("authorization", ""), publication)
    if user is None:
        return Response(b"", 401, headers={"WWW-Authenticate": 'Basic realm="1C:Enterprise"'})
    try:
        new_cookie, per_call = open_session(request, base, user)
    except ODataFault as fault:
        return error_response(fault, fmt)
    try:
        response = await dispatch(request, base, rest, params, fmt, root_url(request, publication))
    except ODataFault as fault:
        response = error_response(fault, fmt)
    finally:
        if per_call:
            base.end_call_session()
    if new_cookie:
        response.set_cookie(SESSION_COOKIE, new_cookie, path="/", httponly=True)
    return response


def open_session(request: Request, base: OneCBase, user: str) -> tuple[str | None, bool]:
    """(cookie to set, whether this call has a session of its own that ends with it)."""
    mode = request.headers.get("ibsession", "").strip().lower()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and base.use_session(cookie) is not None:
        if mode == "finish":
            base.close_session(cookie)
        return None, False
    if mode == "start" or (cookie and mode != "finish"):
        # An expired or unknown cookie gets a fresh session (a guess; see the fact sheet §5).
        return base.open_session(user).id, False
    base.begin_call_session()
    return None, True


def authenticate(header: str, publication: Publication) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None  # a cp1251 login never matches: 1C wants UTF-8
    ok_user = secrets.compare_digest(user.encode(), publication.user.encode())
    ok_password = secrets.compare_digest(password.encode(), publication.password.encode())
    return user if sep and ok_user and ok_password else None


def query_params(raw: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in raw.decode("utf-8", "replace").split("&"):
        if part:
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
    return params


def negotiate(params: Mapping[str, str], accept: str) -> Format:
    wanted = params.get("$format", "").lower()
    if not wanted and "json" in accept.lower():
        wanted = accept.lower()
    is_json = wanted == "json" or "application/json" in wanted
    return Format(json=is_json, links="nometadata" not in wanted)


def root_url(request: Request, publication: Publication) -> str:
    host = request.headers.get("host", "localhost")
    return f"{request.url.scheme}://{host}/{publication.base}/odata/standard.odata/"


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- responses ----------------------------------------------------------------------------


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(
        body,
        status,
        headers={"Content-Type": "application/json;charset=utf-8", "DataServiceVersion": "3.0;"},
    )


def xml_response(text: str, status: int = 200, kind: str = "atom+xml") -> Response:
    return Response(
        text.encode("utf-8"), status, headers={"Content-Type": f"application/{kind};charset=utf-8"}
    )


def error_response(fault: ODataFault, fmt: Format) -> Response:
    if fmt.json:
        return json_response(
            {
                "odata.error": {
                    "code": fault.code,
                    "message": {"lang": "ru", "value": fault.message},
                }
            },
            fault.status,
        )
    return xml_response(atom.error_xml(fault.code, fault.message), fault.status, "xml")


def entity_response(
    fmt: Format, root: str, set_name: str, data: dict[str, Any], status: int = 200
) -> Response:
    if not fmt.json:
        return xml_response(atom.entry_xml(root, set_name, data, now_stamp()), status)
    if fmt.links:
        data = {"odata.metadata": f"{root}$metadata#{set_name}/@Element", **data}
    return json_response(data, status)


# -- routing ------------------------------------------------------------------------------


async def dispatch(
    request: Request, base: OneCBase, rest: str, params: dict[str, str], fmt: Format, root: str
) -> Response:
    method = request.method.upper()
    segments = split_path(rest)
    if not segments:
        sets = all_sets(base.types.values(), base.published)
        if fmt.json:
            return json_response(service_document_json(root, sets))
        return xml_response(service_document_xml(root, sets), kind="atomsvc+xml")
    if segments == ["$metadata"]:
        return xml_response(csdl(base.types.values(), base.published), kind="xml")
    name, key_text = split_key(segments[0])
    target = find_target(base, name)
    tail = segments[1:]
    if key_text is None:
        return await collection_call(request, base, target, tail, params, fmt, root)
    key = parse_key(key_text)
    if tail and tail[0] in ACTIONS and len(tail) == 1:
        if method != "POST":
            raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")
        return action(base, target, key, tail[0], params)
    if target.table is not None or not target.etype.has_ref:
        return row_call(base, target, key, tail, method, params, fmt, root)
    ref = key.get("Ref_Key")
    if not isinstance(ref, str) or len(key) != 1:
        raise ODataFault(400, "7", "Не указана часть ключа Ref_Key")
    if tail:
        if method != "GET":
            raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")
        return property_path(base, target, ref, tail, fmt, root)
    if method == "GET":
        sel = selection(
            target.shape, base.model, params.get("$select"), params.get("$expand"), single=True
        )
        obj = base.get(target.name, ref)
        return entity_response(fmt, root, target.name, encode(base, fmt, target, obj, sel))
    if method in ("PATCH", "MERGE", "PUT"):
        body = await body_of(request)
        obj = base.update(
            target.name,
            ref,
            body,
            load_mode=load_mode(request),
            if_match=request.headers.get("if-match"),
        )
        return entity_response(fmt, root, target.name, encode(base, fmt, target, obj, None))
    if method == "DELETE":
        base.delete(target.name, ref)
        return Response(status_code=204)
    raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")


async def collection_call(
    request: Request,
    base: OneCBase,
    target: Target,
    tail: list[str],
    params: dict[str, str],
    fmt: Format,
    root: str,
) -> Response:
    method = request.method.upper()
    if tail == ["$count"] and method == "GET":
        count = len(filtered(base, target, params))
        return Response(
            ("\ufeff" + str(count)).encode("utf-8"),
            headers={"Content-Type": "text/plain;charset=utf-8"},
        )
    if tail and re.fullmatch(r"SliceLast(\(.*\))?", tail[0], re.S) and len(tail) == 1:
        return slice_last(base, target, tail[0], params, fmt, root)
    if tail:
        raise unknown_segment(tail[0])
    if method == "POST":
        if target.table is not None:
            raise ODataFault(400, "13", "Cоздание строк табличной части напрямую не поддерживается")
        obj = base.create(target.name, await body_of(request), load_mode=load_mode(request))
        data = encode(base, fmt, target, obj, None)
        response = entity_response(fmt, root, target.name, data, 201)
        # 1C sends raw UTF-8 in Location (not percent-encoded).
        location = f"{root}{target.name}(guid'{obj['Ref_Key']}')"
        response.raw_headers.append((b"location", location.encode("utf-8")))
        return response
    if method != "GET":
        raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")
    items = filtered(base, target, params)
    if params.get("$orderby"):
        items = order(items, params["$orderby"], target.shape, base.model)
    total = len(items)
    if params.get("$inlinecount") != "allpages":  # with it, $top/$skip are ignored (ITS 17.4)
        items = page(items, params.get("$top"), params.get("$skip"))
    sel = selection(target.shape, base.model, params.get("$select"), params.get("$expand"))
    values = [encode(base, fmt, target, item, sel) for item in items]
    return collection_response(
        fmt, root, target.name, values, total if params.get("$inlinecount") == "allpages" else None
    )


def collection_response(
    fmt: Format, root: str, name: str, values: list[dict[str, Any]], total: int | None = None
) -> Response:
    if not fmt.json:
        return xml_response(atom.feed_xml(root, name, values, now_stamp()))
    data: dict[str, Any] = {}
    if fmt.links:
        data["odata.metadata"] = f"{root}$metadata#{name}"
    if total is not None:
        data["odata.count"] = str(total)
    data["value"] = values
    return json_response(data)


def filtered(base: OneCBase, target: Target, params: Mapping[str, str]) -> list[dict[str, Any]]:
    if target.table is not None:
        items = [{"Ref_Key": ref, **row} for ref, row in base.rows(target.etype.name, target.table)]
    else:
        items = base.all(target.etype.name)
    text = params.get("$filter")
    if text:
        predicate = compile_filter(text, target.shape, base.model)
        items = [item for item in items if predicate(item)]
    return items


def encode(
    base: OneCBase, fmt: Format, target: Target, item: Mapping[str, Any], sel: Selection | None
) -> dict[str, Any]:
    encoder = Encoder(base.lookup, links=fmt.links and fmt.json)
    if target.table is not None:
        table = target.etype.table(target.table)
        assert table is not None
        fields = None if sel is None else sel.props
        return encoder.row(target.etype, table, item["Ref_Key"], item, fields)
    canonical = f"{target.name}(guid'{item['Ref_Key']}')" if target.etype.has_ref else None
    return encoder.object(target.etype, item, sel, canonical)


def action(
    base: OneCBase, target: Target, key: dict[str, Any], name: str, params: Mapping[str, str]
) -> Response:
    ref = key.get("Ref_Key")
    if target.table is not None or not isinstance(ref, str):
        raise unknown_segment(name)
    if name == "Post":
        operational = params.get("PostingModeOperational", "false").lower() == "true"
        base.post(target.name, ref, operational=operational)
    elif name == "Unpost":
        base.unpost(target.name, ref)
    else:
        base.execute_task(target.name, ref)
    return Response(status_code=200)


def row_call(
    base: OneCBase,
    target: Target,
    key: dict[str, Any],
    tail: list[str],
    method: str,
    params: Mapping[str, str],
    fmt: Format,
    root: str,
) -> Response:
    if target.table is None:
        raise ODataFault(400, "0", "Чтение записи регистра по ключу не поддерживается эмулятором")
    if method != "GET" or tail:
        raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")
    ref, line = key.get("Ref_Key"), key.get("LineNumber")
    if not isinstance(ref, str) or not isinstance(line, int):
        raise ODataFault(400, "7", "Не указана часть ключа")
    obj = base.get(target.etype.name, ref)
    rows = [r for r in obj[target.table] if r["LineNumber"] == line]
    if not rows:
        raise not_found(target.name)
    sel = selection(target.shape, base.model, params.get("$select"), None, single=True)
    data = encode(base, fmt, target, {"Ref_Key": ref, **rows[0]}, sel)
    return entity_response(fmt, root, target.name, data)


def property_path(
    base: OneCBase, target: Target, ref: str, tail: list[str], fmt: Format, root: str
) -> Response:
    """`Set(guid'…')/Field` → {"value": …}; `Set(guid'…')/Nav` → the referenced object."""
    obj = base.get(target.name, ref)
    etype = target.etype
    for index, segment in enumerate(tail):
        prop = etype.prop(segment)
        if prop is not None and index == len(tail) - 1:
            encoder = Encoder(base.lookup, links=False)
            value = encoder.object(etype, obj, Selection(props={segment}, tables={}))[segment]
            return json_response({"odata.metadata": f"{root}$metadata#Edm", "value": value})
        nav = etype.nav(segment)
        if nav is None or nav.target is None:
            raise unknown_segment(segment)
        found = base.lookup(nav.target, obj[nav.name])
        if found is None:
            raise not_found(nav.target)
        etype, obj = found
    nav_target = Target(etype.name, etype)
    return entity_response(fmt, root, etype.name, encode(base, fmt, nav_target, obj, None))


def slice_last(
    base: OneCBase, target: Target, segment: str, params: Mapping[str, str], fmt: Format, root: str
) -> Response:
    if target.etype.has_ref or target.table is not None:
        raise unknown_segment(segment)
    args = dict(params)
    inner = segment[len("SliceLast") :].strip("()")
    if inner:
        for part in split_top(inner, ","):
            name, _, value = part.partition("=")
            args[name.strip()] = value.strip()
    period = None
    if args.get("Period"):
        period = typed_literal(args["Period"]) if "'" in args["Period"] else None
    records = base.slice_last(target.etype.name, period)
    condition = args.get("Condition", "")
    if condition.startswith("'") and condition.endswith("'"):
        condition = condition[1:-1].replace("''", "'")
    if condition:
        predicate = compile_filter(condition, target.etype, base.model)
        records = [r for r in records if predicate(r)]
    sel = selection(target.etype, base.model, params.get("$select"), None)
    values = [encode(base, fmt, target, r, sel) for r in records]
    return collection_response(fmt, root, f"{target.name}_SliceLast", values)


# -- path parsing -------------------------------------------------------------------------


def find_target(base: OneCBase, name: str) -> Target:
    name = name.removesuffix("_RecordType") if name.startswith("InformationRegister_") else name
    if name in base.published and name in base.types:
        return Target(name, base.types[name])
    for etype in base.types.values():
        prefix = etype.name + "_"
        if etype.name in base.published and name.startswith(prefix):
            table = etype.table(name[len(prefix) :])
            if table is not None:
                return Target(name, etype, table.name)
    raise unknown_set(name)


def split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and parentheses."""
    parts, depth, quoted, current = [], 0, False, ""
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def split_path(rest: str) -> list[str]:
    return [part for part in split_top(rest, "/") if part]


def split_key(segment: str) -> tuple[str, str | None]:
    match = re.fullmatch(r"([^()]+)(?:\((.*)\))?", segment, re.S)
    if match is None:
        raise unknown_set(segment)
    return match.group(1), match.group(2)


def parse_key(text: str) -> dict[str, Any]:
    """`guid'…'` or `Ref_Key=guid'…',LineNumber=1`; anything else is a 400 that repeats it."""
    text = text.strip()
    if "=" not in text.split("'")[0]:
        value = key_literal(text)
        if not isinstance(value, Guid):
            raise bad_guid(text)
        return {"Ref_Key": str(value)}
    key: dict[str, Any] = {}
    for part in split_top(text, ","):
        name, _, value = part.partition("=")
        literal = key_literal(value.strip())
        key[name.strip()] = str(literal) if isinstance(literal, Guid) else literal
    return key


def key_literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if "'" in text:
        try:
            return typed_literal(text)
        except ODataFault:
            raise bad_guid(text) from None
    try:
        return number_literal(text)
    except ValueError:
        raise bad_guid(text) from None


# -- request bodies -----------------------------------------------------------------------


async def body_of(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise ODataFault(500, "-1", "Непредвиденный символ при чтении JSON") from None


def load_mode(request: Request) -> bool:
    return request.headers.get("1c_odata-dataloadmode", "").lower() == "true"
