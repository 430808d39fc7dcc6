"""File fields on a deal (Подписанный счет/договор, Акт, УПД on a real portal): crm.deal.get
returns `{id, showUrl, downloadUrl}` per file; the snapshot keeps the file's ID, so a filled
file field counts as filled (R-X3, issue 12 item 3)."""

from __future__ import annotations

from salesflow.activities.bitrix24 import deal_snapshot

FILE = {
    "id": 661474,
    "showUrl": "/bitrix/components/bitrix/crm.deal.show/show_file.php?fileId=661474",
    "downloadUrl": "/bitrix/components/bitrix/crm.deal.show/show_file.php?auth=&fileId=661474",
}


def test_a_file_field_is_kept_as_its_file_id() -> None:
    deal = deal_snapshot(
        {"ID": "7", "UF_CRM_ACT": FILE, "UF_CRM_UPD": [FILE, {**FILE, "id": 5}], "UF_CRM_X": {}}
    )
    assert deal.fields["UF_CRM_ACT"] == "661474"
    assert deal.fields["UF_CRM_UPD"] == ["661474", "5"]
    assert deal.fields["UF_CRM_X"] is None
