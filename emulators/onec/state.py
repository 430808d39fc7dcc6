"""The in-memory 1C base: objects, numbering, DataVersion, posting, sessions and faults.

`OneCBase` is what `create_app(state=…)` serves and what tests inspect
(`app.state.base`). Writes go through the same rules as OData writes; the seed and the
admin actions use `insert` / the public methods directly.
"""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from emulators.onec import handlers
from emulators.onec.codec import (
    EMPTY_DATE,
    WRITABLE_STANDARD,
    ZERO_GUID,
    data_version,
    decode_fields,
    decode_rows,
    empty_row,
    is_guid,
    new_object,
)
from emulators.onec.errors import ODataFault, internal, not_found, unknown_set
from emulators.onec.query import Model
from emulators.onec.schema import EntityType, configuration, default_published

NO_LICENCE = "Не обнаружено свободной лицензии!"


@dataclass
class Faults:
    """Trouble to inject into OData calls (admin endpoints are never affected).

    down: None, "503" / "502" (the web server answers with an HTML error page) or "reset"
    (the connection is dropped mid-answer). slow_first_call: seconds the next call takes
    (a cold base), then cleared. error_burst: the next N calls fail with error_status
    (a 500 carries a lock-conflict odata.error). post_errors: Ref_Key, Number or set name →
    the reason a posting fails (500, code -1). if_match: "ignore" (live 1C) or "enforce"
    (412 on a stale DataVersion, as ITS describes). license_limit: at most this many open
    sessions, further ones get «Не обнаружено свободной лицензии!». iis: the publication is
    behind IIS, which answers an HTML 404 to a query string over 2 048 bytes.
    """

    down: Literal["503", "502", "reset"] | None = None
    latency: float = 0.0
    slow_first_call: float = 0.0
    error_burst: int = 0
    error_status: int = 503
    post_errors: dict[str, str] = field(default_factory=dict)
    if_match: Literal["ignore", "enforce"] = "ignore"
    license_limit: int | None = None
    iis: bool = False  # behave like a publication behind IIS (HTML 404 past 2 048 bytes)

    def update(self, changes: Mapping[str, Any]) -> None:
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            setattr(self, name, value)

    def reset(self) -> None:
        self.update(asdict(Faults()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Session:
    id: str
    user: str
    opened: float
    last_used: float
    calls: int = 0


class OneCBase:
    def __init__(
        self,
        *,
        types: Iterable[EntityType] | None = None,
        published: Iterable[str] | None = None,
        timezone: str = "Europe/Moscow",
        seed: bool = True,
        session_max_age: float = 1200.0,
        profile: str = "ut11",
        extension: bool = False,
    ) -> None:
        """A standard base of `profile` (ut11, erp2, bp3); `extension`: the optional salesflow
        extension is installed (its attributes exist)."""
        self.profile = profile
        self.extension = extension
        chosen = tuple(types) if types is not None else configuration(profile, extension=extension)
        self.types: dict[str, EntityType] = {t.name: t for t in chosen}
        self.published: set[str] = set(
            published if published is not None else default_published(chosen)
        )
        self.tz = ZoneInfo(timezone)
        self.faults = Faults()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name, t in self.types.items() if t.has_ref
        }
        self.records: dict[str, list[dict[str, Any]]] = {
            name: [] for name, t in self.types.items() if not t.has_ref
        }
        self.sessions: dict[str, Session] = {}
        self.sessions_opened = 0
        self.session_max_age = session_max_age
        self.requests = 0
        self._in_flight = 0
        self._version = 0
        self._numbers: dict[str, int] = {}
        self.model = Model(self.types, self.lookup)
        if seed:
            from emulators.onec.seed import load_seed

            load_seed(self)

    # -- reading ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The base's wall clock (1C stores dates without a zone)."""
        return datetime.now(self.tz).replace(tzinfo=None, microsecond=0)

    def entity_type(self, name: str) -> EntityType:
        etype = self.types.get(name)
        if etype is None:
            raise unknown_set(name)
        return etype

    def lookup(self, entity_set: str, key: str) -> tuple[EntityType, dict[str, Any]] | None:
        obj = self.objects.get(entity_set, {}).get(key)
        return None if obj is None else (self.types[entity_set], obj)

    def get(self, entity_set: str, key: str) -> dict[str, Any]:
        self.entity_type(entity_set)
        obj = self.objects.get(entity_set, {}).get(key.lower())
        if obj is None:
            raise not_found(entity_set)
        return obj

    def all(self, entity_set: str) -> list[dict[str, Any]]:
        if entity_set in self.records:
            return list(self.records[entity_set])
        return list(self.objects[self.entity_type(entity_set).name].values())

    def find(self, entity_set: str, **equals: Any) -> list[dict[str, Any]]:
        return [o for o in self.all(entity_set) if all(o.get(k) == v for k, v in equals.items())]

    def resolve(self, entity_set: str, ref_or_number: str) -> dict[str, Any]:
        """An object by Ref_Key, Number, Code or Description (for admin endpoints)."""
        if is_guid(ref_or_number):
            return self.get(entity_set, ref_or_number)
        for name in ("Number", "Code", "Description"):
            found = [o for o in self.all(entity_set) if o.get(name) == ref_or_number]
            if found:
                return found[0]
        raise not_found(entity_set)

    def rows(self, entity_set: str, table: str) -> list[tuple[str, dict[str, Any]]]:
        return [(o["Ref_Key"], row) for o in self.all(entity_set) for row in o[table]]

    def slice_last(self, register: str, period: datetime | None = None) -> list[dict[str, Any]]:
        """Latest record per dimension set at `period` (now by default)."""
        etype = self.entity_type(register)
        moment = period or self.now()
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in sorted(self.records[register], key=lambda r: r["Period"]):
            if record["Period"] <= moment:
                latest[tuple(record[d] for d in etype.dimensions)] = record
        return list(latest.values())

    # -- writing ---------------------------------------------------------------------------

    def next_version(self) -> int:
        self._version += 1
        return self._version

    def insert(self, entity_set: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object from already-typed values (seed, admin); fills the rest."""
        etype = self.entity_type(entity_set)
        if not etype.has_ref:
            record = new_object(etype)
            record.update(values)
            self.records[entity_set].append(record)
            return record
        obj = new_object(etype)
        obj.update(copy.deepcopy(dict(values)))
        for table in etype.tables:
            for number, row in enumerate(obj[table.name], start=1):
                filled = empty_row(table)
                filled.update(row)
                filled["LineNumber"] = number
                obj[table.name][number - 1] = filled
        if not is_guid(obj["Ref_Key"]) or obj["Ref_Key"] == ZERO_GUID:
            obj["Ref_Key"] = new_guid()
        self._fill_defaults(etype, obj)
        handlers.totals(etype, obj)
        obj["DataVersion"] = self.next_version()
        self.objects[entity_set][obj["Ref_Key"]] = obj
        return obj

    def create(
        self, entity_set: str, body: Mapping[str, Any], *, load_mode: bool = False
    ) -> dict[str, Any]:
        etype = self.entity_type(entity_set)
        if not etype.has_ref:
            raise ODataFault(400, "19", "Метод не разрешен для данного ресурса")
        obj = new_object(etype)
        ref = body.get("Ref_Key")
        if isinstance(ref, str) and is_guid(ref) and ref != ZERO_GUID:
            if ref.lower() in self.objects[entity_set]:
                raise ODataFault(400, "15", "Объект с таким ключом уже существует")
            obj["Ref_Key"] = ref.lower()
        else:
            obj["Ref_Key"] = new_guid()
        self._apply(etype, obj, body)
        self._fill_defaults(etype, obj)
        handlers.before_write(self, etype, obj, is_new=True, load_mode=load_mode)
        obj["DataVersion"] = self.next_version()
        self.objects[entity_set][obj["Ref_Key"]] = obj
        return obj

    def update(
        self,
        entity_set: str,
        key: str,
        body: Mapping[str, Any],
        *,
        load_mode: bool = False,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        etype = self.entity_type(entity_set)
        current = self.get(entity_set, key)
        stale = if_match and if_match.strip('W/"') != data_version(current["DataVersion"])
        if self.faults.if_match == "enforce" and stale:
            raise ODataFault(412, "4", "Объект изменен или удален другим пользователем")
        obj = copy.deepcopy(current)
        self._apply(etype, obj, body)
        handlers.before_write(self, etype, obj, is_new=False, load_mode=load_mode)
        obj["DataVersion"] = self.next_version()
        current.clear()
        current.update(obj)
        return current

    def delete(self, entity_set: str, key: str) -> None:
        self.get(entity_set, key)
        del self.objects[entity_set][key.lower()]

    def post(self, entity_set: str, key: str, *, operational: bool = False) -> dict[str, Any]:
        etype, obj = self._document(entity_set, key, "Post")
        handlers.posting(self, etype, obj, operational=operational)
        obj["Posted"] = True
        obj["DataVersion"] = self.next_version()
        return obj

    def unpost(self, entity_set: str, key: str) -> dict[str, Any]:
        _, obj = self._document(entity_set, key, "Unpost")
        obj["Posted"] = False
        obj["DataVersion"] = self.next_version()
        return obj

    def execute_task(self, entity_set: str, key: str, result: str | None = None) -> dict[str, Any]:
        etype = self.entity_type(entity_set)
        if etype.kind != "Task":
            raise ODataFault(400, "11", "Метод ExecuteTask не найден")
        obj = self.get(entity_set, key)
        obj["Executed"] = True
        obj["ДатаИсполнения"] = self.now()
        if result is not None:
            obj["РезультатВыполнения"] = result
        obj["DataVersion"] = self.next_version()
        return obj

    def touch(self, obj: dict[str, Any]) -> None:
        """Record a change made outside OData (an admin action)."""
        obj["DataVersion"] = self.next_version()

    def _document(self, entity_set: str, key: str, method: str) -> tuple[EntityType, dict]:
        etype = self.entity_type(entity_set)
        if not etype.postable:
            raise ODataFault(400, "11", f"Метод {method} не найден")
        return etype, self.get(entity_set, key)

    def _apply(self, etype: EntityType, obj: dict[str, Any], body: Mapping[str, Any]) -> None:
        if not isinstance(body, Mapping):
            raise internal()
        writable = tuple(
            p for p in etype.all_props() if p in etype.props or p.name in WRITABLE_STANDARD
        )
        obj.update(decode_fields(writable, body))
        for table in etype.tables:
            if table.name in body:
                obj[table.name] = decode_rows(table, body[table.name])

    def _fill_defaults(self, etype: EntityType, obj: dict[str, Any]) -> None:
        if etype.kind in ("Document", "Task"):
            if obj["Date"] == EMPTY_DATE:
                obj["Date"] = self.now()
            if not obj["Number"]:
                obj["Number"] = self._next_number(
                    etype, "Number", etype.number_length, etype.number_prefix
                )
        if etype.kind == "Catalog" and etype.code_length and not obj["Code"]:
            obj["Code"] = self._next_number(etype, "Code", etype.code_length, "")
        for prop in etype.props:
            default = handlers.DEFAULTS.get((etype.name, prop.name))
            if default is not None and obj[prop.name] in ("", None):
                obj[prop.name] = default

    def _next_number(self, etype: EntityType, field_name: str, length: int, prefix: str) -> str:
        used = [
            int(o[field_name][len(prefix) :])
            for o in self.objects[etype.name].values()
            if o[field_name].startswith(prefix) and o[field_name][len(prefix) :].isdigit()
        ]
        number = max([*used, self._numbers.get(etype.name, 0)]) + 1
        self._numbers[etype.name] = number
        return prefix + str(number).zfill(length - len(prefix))

    # -- sessions --------------------------------------------------------------------------

    def open_session(self, user: str) -> Session:
        self._expire_sessions()
        self._check_licence()
        now = time.monotonic()
        session = Session(secrets.token_hex(16), user, now, now)
        self.sessions[session.id] = session
        self.sessions_opened += 1
        return session

    def use_session(self, session_id: str) -> Session | None:
        self._expire_sessions()
        session = self.sessions.get(session_id)
        if session is not None:
            session.last_used = time.monotonic()
            session.calls += 1
        return session

    def close_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def begin_call_session(self) -> None:
        """A call without session reuse opens (and later closes) a session of its own."""
        self._check_licence()
        self.sessions_opened += 1
        self._in_flight += 1

    def end_call_session(self) -> None:
        self._in_flight -= 1

    def _check_licence(self) -> None:
        limit = self.faults.license_limit
        if limit is not None and len(self.sessions) + self._in_flight >= limit:
            raise ODataFault(500, "-1", NO_LICENCE)

    def _expire_sessions(self) -> None:
        deadline = time.monotonic() - self.session_max_age
        for session_id in [s.id for s in self.sessions.values() if s.last_used < deadline]:
            del self.sessions[session_id]


def new_guid() -> str:
    return str(uuid.uuid4())
