"""Emulated batch: per-command parsing, references, the 50-command cap, halt, sections."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest


async def test_batch_with_references(rest: Rest, emu: Emulator) -> None:
    cmd = {
        "deal": "crm.deal.add?fields[TITLE]=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0"
        "&fields[CATEGORY_ID]=1",
        "get": "crm.deal.get?id=$result[deal]",
        "task": "tasks.task.add?fields[TITLE]=Task+for+$result[get][TITLE]"
        "&fields[RESPONSIBLE_ID]=3&fields[UF_CRM_TASK][]=D_$result[deal]",
        "list": "crm.deal.list?filter[%3E%3DID]=$result[deal]&select[]=ID&select[]=STAGE_ID",
        "missing": "crm.deal.get?id=987654",
    }
    status, body = await rest("batch", {"halt": 0, "cmd": cmd})
    assert status == 200
    sections = body["result"]
    deal_id = sections["result"]["deal"]
    assert sections["result"]["get"]["ID"] == str(deal_id)
    task = emu.portal.tasks[int(sections["result"]["task"]["task"]["id"])]
    assert task["TITLE"] == "Task for Сделка" and task["UF_CRM_TASK"] == [f"D_{deal_id}"]
    assert sections["result"]["list"] == [{"ID": str(deal_id), "STAGE_ID": "C1:NEW"}]
    assert sections["result_total"] == {"list": 1}
    assert sections["result_next"] == []
    assert sections["result_error"] == {"missing": {"error": "", "error_description": "Not found"}}
    assert set(sections["result_time"]) == {"deal", "get", "task", "list"}
    assert {"start", "finish", "duration", "date_start"} <= set(sections["result_time"]["get"])


async def test_batch_over_fifty_commands(rest: Rest) -> None:
    cmd = {f"u{i}": f"user.get?ID={i % 12 + 1}" for i in range(53)}
    status, body = await rest("batch", {"cmd": cmd})
    assert status == 200
    sections = body["result"]
    assert len(sections["result"]) == 50
    assert sections["result_error"] == {
        f"u{i}": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        }
        for i in (50, 51, 52)
    }


async def test_batch_halt_and_list_cmd(rest: Rest) -> None:
    cmd = ["user.current", "crm.deal.get?id=0", "user.current"]
    _, body = await rest("batch", {"halt": 1, "cmd": cmd})
    sections = body["result"]
    assert isinstance(sections["result"], list) and len(sections["result"]) == 1
    assert sections["result_error"] == {
        "1": {"error": "", "error_description": "ID is not defined or invalid."}
    }
    _, body = await rest("batch", {"halt": 0, "cmd": cmd})
    assert set(body["result"]["result"]) == {"0", "2"}


async def test_batch_rejects_nested_batch_and_unknown(rest: Rest) -> None:
    _, body = await rest("batch", {"cmd": {"a": "batch?cmd[x]=user.current", "b": "no.such"}})
    errors = body["result"]["result_error"]
    assert errors["a"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert errors["b"]["error"] == "ERROR_METHOD_NOT_FOUND"


async def test_batch_as_form_post_double_encoded(emu: Emulator, http: httpx.AsyncClient) -> None:
    form = (
        "halt=0&cmd[a]=crm.deal.add%3Ffields%5BTITLE%5D%3DA%2526B"
        "&cmd[b]=crm.deal.get%3Fid%3D%24result%5Ba%5D"
    )
    response = await http.post(
        f"{emu.webhook}batch",
        content=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    sections = response.json()["result"]
    assert sections["result"]["b"]["TITLE"] == "A&B"
