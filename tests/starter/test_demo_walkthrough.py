"""The README's walk-through: the demo deal's invoice is in the 1C emulator, 1C is polled often."""

from __future__ import annotations

from pathlib import Path

from emulators.local_stack import DEMO_DEAL, DevPorts, dev_settings
from emulators.onec.seed import INVOICE_NUMBER, KP_NUMBER, ROMASHKA_INN, seed_demo_invoice
from emulators.onec.state import OneCBase
from salesflow.config.settings import Settings


def test_the_demo_invoice_matches_the_demo_deal() -> None:
    base = OneCBase()
    invoice = seed_demo_invoice(base)
    kp = base.resolve("Document_КоммерческоеПредложениеКлиенту", DEMO_DEAL["UF_CRM_KP"])
    party = base.get("Catalog_Контрагенты", invoice["Контрагент_Key"])
    assert DEMO_DEAL["UF_CRM_KP"] == KP_NUMBER
    assert (
        base.resolve("Document_СчетНаОплатуКлиенту", INVOICE_NUMBER)["Ref_Key"]
        == invoice["Ref_Key"]
    )
    assert invoice["ДокументОснование"] == kp["Ref_Key"]
    assert party["ИНН"] == DEMO_DEAL["UF_CRM_INN"] == ROMASHKA_INN
    assert invoice["СуммаДокумента"] == DEMO_DEAL["OPPORTUNITY"]


def test_the_local_stack_polls_1c_often(tmp_path: Path) -> None:
    settings = dev_settings(Settings(), DevPorts(), tmp_path)
    assert settings.rules.onec_poll_seconds <= 60 < Settings().rules.onec_poll_seconds


def test_the_readme_walks_the_demo_invoice() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert INVOICE_NUMBER in readme
