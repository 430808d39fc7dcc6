"""List methods: 50-row pages and their edges, start=-1, the filter grammar incl. logic OR."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest


async def _deals(rest: Rest, count: int) -> list[int]:
    cmd = {
        f"d{i}": f"crm.deal.add?fields[TITLE]=D{i}&fields[OPPORTUNITY]={i * 100}"
        for i in range(count)
    }
    _, body = await rest("batch", {"cmd": cmd})
    return [body["result"]["result"][f"d{i}"] for i in range(count)]


async def test_pagination_edges(rest: Rest) -> None:
    ids = await _deals(rest, 50)
    _, exactly = await rest("crm.deal.list", {"select": ["ID"]})
    assert len(exactly["result"]) == 50 and exactly["total"] == 50 and "next" not in exactly
    ids += await _deals(rest, 1)
    _, first = await rest("crm.deal.list", {"select": ["ID"]})
    assert (first["total"], first["next"]) == (51, 50)
    _, last = await rest("crm.deal.list", {"select": ["ID"], "start": 50})
    assert [int(r["ID"]) for r in last["result"]] == ids[50:] and "next" not in last
    _, beyond = await rest("crm.deal.list", {"select": ["ID"], "start": 500})
    assert beyond["result"] == [] and beyond["total"] == 51
    _, odd = await rest("crm.deal.list", {"select": ["ID"], "start": 7})
    assert int(odd["result"][0]["ID"]) == ids[0] and odd["next"] == 50  # page 1, not offset 7
    _, no_count = await rest("crm.deal.list", {"select": ["ID"], "start": -1})
    assert len(no_count["result"]) == 50 and no_count["total"] == 0 and "next" not in no_count
    _, cursor = await rest(
        "crm.deal.list",
        {"select": ["ID"], "order": {"ID": "ASC"}, "filter": {">ID": ids[49]}, "start": -1},
    )
    assert [int(r["ID"]) for r in cursor["result"]] == [ids[50]]


async def test_classic_filter_operators(rest: Rest) -> None:
    ids = await _deals(rest, 6)
    cases = {
        ">=OPPORTUNITY": (300, ids[3:]),
        "<OPPORTUNITY": (200, ids[:2]),
        "@ID": ([ids[1], ids[4]], [ids[1], ids[4]]),
        "!@ID": ([ids[0]], ids[1:]),
        "%TITLE": ("D3", [ids[3]]),
        "=%TITLE": ("D%", ids),
        "!=%TITLE": ("D1%", [i for i in ids if i != ids[1]]),
        "!ID": (ids[0], ids[1:]),
        "!=ID": (ids[0], ids[1:]),
    }
    for key, (value, expected) in cases.items():
        _, body = await rest("crm.deal.list", {"filter": {key: value}, "select": ["ID"]})
        assert [int(r["ID"]) for r in body["result"]] == expected, key


async def test_item_list_logic_or_sub_filters(rest: Rest, emu: Emulator) -> None:
    ids = []
    for stage, assigned, amount in (("NEW", 2, 10), ("PREPARATION", 3, 20), ("SUCCESS", 4, 30)):
        _, body = await rest(
            "crm.item.add",
            {
                "entityTypeId": 1032,
                "fields": {"stageId": stage, "assignedById": assigned, "opportunity": amount},
            },
        )
        ids.append(body["result"]["item"]["id"])
    either = {
        "0": {"logic": "OR", "0": {"=stageId": "DT1032_3:NEW"}, "1": {"=assignedById": 4}},
        ">opportunity": 5,
    }
    _, body = await rest("crm.item.list", {"entityTypeId": 1032, "filter": either})
    assert [i["id"] for i in body["result"]["items"]] == [ids[0], ids[2]]
    # the same through batch: PHP brackets, operators URL-encoded as parse_str needs
    command = (
        "crm.item.list?entityTypeId=1032&filter[0][logic]=OR"
        "&filter[0][0][%3DstageId]=DT1032_3:NEW&filter[0][1][%40assignedById][0]=3"
        "&order[id]=DESC&select[0]=id&select[1]=stageId"
    )
    _, batch = await rest("batch", {"cmd": {"q": command}})
    items = batch["result"]["result"]["q"]["items"]
    assert [i["id"] for i in items] == [ids[1], ids[0]]
    assert set(items[0]) == {"id", "stageId"}
    _, both = await rest(
        "crm.item.list",
        {
            "entityTypeId": 1032,
            "filter": {"logic": "AND", "0": {"!=stageId": "DT1032_3:NEW"}, "<opportunity": 25},
        },
    )
    assert [i["id"] for i in both["result"]["items"]] == [ids[1]]
    status, body = await rest("crm.item.list", {"entityTypeId": 1032, "filter": {"STAGE_ID": "x"}})
    assert (status, body["error"]) == (400, 100)
    status, body = await rest("crm.item.list", {"entityTypeId": 1032, "order": {"id": "sideways"}})
    assert body["error_description"] == "Order direction should be one of {ASC|DESC}"
    _, no_count = await rest("crm.item.list", {"entityTypeId": 1032, "start": -1})
    assert no_count["total"] == 0 and len(no_count["result"]["items"]) == 3
