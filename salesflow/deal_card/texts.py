"""The deal card's texts: the templates of salesflow/config/templates.py (`CARD_TEMPLATES`,
`REFUSAL_TEMPLATES`), replaced by name in `[templates]` — or, for files written before the
merge, in `[deal_card.templates]`, applied on top."""

from __future__ import annotations

from collections.abc import Mapping

from salesflow.config.templates import CARD_TEMPLATES, Templates

DEFAULT_CARD_TEXTS = CARD_TEMPLATES


class Texts(Templates):
    """`texts("name", **values)`: a text filled in; a missing placeholder stays visible."""

    def __init__(
        self, overrides: Mapping[str, str] | None = None, templates: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(templates, overrides)
