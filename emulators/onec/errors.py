"""Errors the emulated 1C answers with: HTTP status + 1C's internal code + Russian text.

Codes follow the ITS table (shared/research/onec.md §4); messages are the live ones where
known. The code and text for an unknown entity set are a guess; the echoed name is a fact.
"""

from __future__ import annotations


class ODataFault(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unknown_segment(name: str, status: int = 400) -> ODataFault:
    # The live text has no quotes around the name (onec-real.md).
    return ODataFault(status, "6", f"Сегмент пути {name} не найден!")


def unknown_set(name: str) -> ODataFault:
    return unknown_segment(name, status=404)


def not_found(entity_set: str) -> ODataFault:
    message = f'Экземпляр сущности "{entity_set}" не найден по переданному ключу.'
    return ODataFault(404, "9", message)


def bad_guid(text: str) -> ODataFault:
    return ODataFault(400, "1", f"Не удалось разобрать строку '{text}' как значение типа Edm.Guid!")


def bad_option(option: str) -> ODataFault:
    return ODataFault(400, "14", f"Ошибка при разборе опции запроса {option}")


def business(handler: str, reason: str) -> ODataFault:
    """A handler refused the operation: 500 with code -1, like a live base."""
    return ODataFault(
        500, "-1", f"Ошибка при выполнении обработчика - '{handler}'\nПо причине:\n{reason}"
    )


def internal() -> ODataFault:
    return ODataFault(
        500,
        "-1",
        "Произошла внутренняя ошибка OData сервиса. "
        "Дополнительные сведения можно найти в технологическом журнале.",
    )
