"""Admin endpoints under `/_emulator/` (no auth): inspect the base, act as a 1C user,
set faults. Objects are shown in 1C's JSON shape without navigation links."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from emulators.onec import actions
from emulators.onec.codec import Encoder
from emulators.onec.errors import ODataFault
from emulators.onec.state import OneCBase

router = APIRouter(prefix="/_emulator", tags=["emulator"])


class TaskNote(BaseModel):
    text: str
    author: str = actions.LOGIST


class TaskDone(BaseModel):
    comment: str = ""
    author: str = actions.LOGIST


class Payment(BaseModel):
    invoice: str  # Ref_Key or Number
    amount: float | None = None  # the invoice total by default
    date: datetime | date | None = None
    incoming_number: str = ""


class Upd(BaseModel):
    basis: str  # an invoice or a КП: Ref_Key or Number
    post: bool = True


class Sign(BaseModel):
    signed: bool = True


class FaultsPatch(BaseModel):
    down: Literal["503", "502", "reset"] | None = None
    latency: float | None = None
    slow_first_call: float | None = None
    error_burst: int | None = None
    error_status: int | None = None
    post_errors: dict[str, str] | None = None
    if_match: Literal["ignore", "enforce"] | None = None
    license_limit: int | None = None
    iis: bool | None = None


def _base(request: Request) -> OneCBase:
    return request.app.state.base


def _show(base: OneCBase, entity_set: str, obj: dict[str, Any]) -> dict[str, Any]:
    etype = base.entity_type(entity_set)
    return Encoder(base.lookup, links=False).object(etype, obj)


def _fault(fault: ODataFault) -> JSONResponse:
    return JSONResponse({"error": fault.message, "code": fault.code}, fault.status)


@router.get("")
@router.get("/")
def summary(request: Request) -> dict[str, Any]:
    base = _base(request)
    return {
        "published": sorted(base.published),
        "counts": {name: len(base.all(name)) for name in sorted(base.types)},
        "requests": base.requests,
        "sessions_opened": base.sessions_opened,
        "sessions_active": len(base.sessions),
        "faults": base.faults.to_dict(),
    }


@router.get("/objects/{entity_set}")
def list_objects(request: Request, entity_set: str) -> Any:
    base = _base(request)
    try:
        return [_show(base, entity_set, obj) for obj in base.all(entity_set)]
    except ODataFault as fault:
        return _fault(fault)


@router.get("/objects/{entity_set}/{ref}")
def get_object(request: Request, entity_set: str, ref: str) -> Any:
    base = _base(request)
    try:
        return _show(base, entity_set, base.resolve(entity_set, ref))
    except ODataFault as fault:
        return _fault(fault)


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    return _base(request).faults.to_dict()


@router.post("/faults")
def set_faults(request: Request, patch: FaultsPatch) -> dict[str, Any]:
    faults = _base(request).faults
    changes = patch.model_dump(exclude_unset=True)
    nullable = ("down", "license_limit")
    faults.update({k: v for k, v in changes.items() if v is not None or k in nullable})
    return faults.to_dict()


@router.delete("/faults")
def clear_faults(request: Request) -> dict[str, Any]:
    faults = _base(request).faults
    faults.reset()
    return faults.to_dict()


@router.post("/reset")
def reset(request: Request) -> dict[str, Any]:
    """A fresh seeded base (same published sets and zone)."""
    old = _base(request)
    request.app.state.base = OneCBase(
        types=old.types.values(),
        published=old.published,
        timezone=old.tz.key,
        profile=old.profile,
        extension=old.extension,
    )
    return summary(request)


@router.get("/sessions")
def sessions(request: Request) -> dict[str, Any]:
    base = _base(request)
    return {
        "opened": base.sessions_opened,
        "active": [{"id": s.id, "user": s.user, "calls": s.calls} for s in base.sessions.values()],
    }


def _act(request: Request, entity_set: str, call: Any) -> Any:
    base = _base(request)
    try:
        return _show(base, entity_set, call(base))
    except ODataFault as fault:
        return _fault(fault)


@router.post("/tasks/{ref}/accept")
def accept_task(request: Request, ref: str) -> Any:
    return _act(request, actions.TASKS, lambda base: actions.accept_task(base, ref))


@router.post("/tasks/{ref}/comment")
def comment_task(request: Request, ref: str, note: TaskNote) -> Any:
    return _act(
        request, actions.TASKS, lambda base: actions.comment_task(base, ref, note.text, note.author)
    )


@router.post("/tasks/{ref}/complete")
def complete_task(request: Request, ref: str, done: TaskDone) -> Any:
    return _act(
        request,
        actions.TASKS,
        lambda base: actions.complete_task(base, ref, done.comment, done.author),
    )


@router.post("/payments")
def receive_payment(request: Request, payment: Payment) -> Any:
    moment = payment.date
    if isinstance(moment, datetime):
        moment = moment.replace(tzinfo=None)
    elif isinstance(moment, date):
        moment = datetime(moment.year, moment.month, moment.day)
    return _act(
        request,
        actions.sets_of(_base(request))[1],
        lambda base: actions.receive_payment(
            base, payment.invoice, payment.amount, moment, payment.incoming_number
        ),
    )


@router.post("/upd")
def create_upd(request: Request, upd: Upd) -> Any:
    return _act(
        request, actions.SALES, lambda base: actions.create_upd(base, upd.basis, post=upd.post)
    )


@router.post("/upd/{ref}/sign")
def sign_upd(request: Request, ref: str, sign: Sign | None = None) -> Any:
    signed = True if sign is None else sign.signed
    return _act(request, actions.SALES, lambda base: actions.sign_upd(base, ref, signed))


@router.post("/documents/{entity_set}/{ref}/post")
def post_document(request: Request, entity_set: str, ref: str) -> Any:
    return _act(request, entity_set, lambda base: actions.post_document(base, entity_set, ref))
