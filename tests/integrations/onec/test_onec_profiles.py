"""Configuration profiles name every 1C object and attribute; overrides replace single names."""

from __future__ import annotations

import pytest

from salesflow.config.settings import ConfigError, Settings, load_settings
from salesflow.integrations.onec.profiles import BP3, PROFILES, UT11, is_plain_link, names_for


def test_profiles_name_the_standard_objects() -> None:
    assert set(PROFILES) == {"ut11", "erp2", "bp3"}
    assert UT11.kp == "Document_КоммерческоеПредложениеКлиенту" and UT11.unit_code == "Code"
    assert (UT11.sale_link, UT11.sale_link_to) == ("ЗаказКлиента", "order")
    assert BP3.kp == BP3.invoice == "Document_СчетНаОплатуПокупателю"
    assert (BP3.sale_link, BP3.sale_link_to) == ("СчетНаОплатуПокупателю_Key", "invoice")
    assert BP3.payment == "Document_ПоступлениеНаРасчетныйСчет"
    assert PROFILES["erp2"] == UT11
    assert "КодОКЕИ" not in {value for _, value in UT11.items()}
    assert is_plain_link("СчетНаОплату_Key") and not is_plain_link("ОснованиеПлатежа")


def test_overrides_replace_single_names_and_unknown_terms_are_refused() -> None:
    names = names_for("ut11", {"kp": "Document_КП", "unit_code": "Код"})
    assert (names.kp, names.unit_code, names.invoice) == ("Document_КП", "Код", UT11.invoice)
    with pytest.raises(ValueError, match=r"unknown onec\.names: kpp"):
        names_for("ut11", {"kpp": "x"})
    with pytest.raises(ValueError, match=r"unknown onec\.profile"):
        names_for("ut12")


def test_settings_carry_the_profile_overrides_and_act_document(tmp_path) -> None:
    settings = Settings.model_validate(
        {"onec": {"profile": "bp3", "act_document": "Document_ОказаниеУслуг", "names": {}}}
    )
    assert settings.onec.one_c_names().act == "Document_ОказаниеУслуг"
    assert settings.onec.one_c_names().kp == BP3.kp
    config = tmp_path / "salesflow.toml"
    config.write_text('[onec]\nprofile = "ut11"\n[onec.names]\nkpp = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="kpp"):
        load_settings(config)
