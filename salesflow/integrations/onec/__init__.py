"""1C:Enterprise over its standard OData interface: the async client and its emulator.

Client side (what activities use): `OneCClient`, the `$filter` builder (`F`, `guid`),
`Ref` for composite fields and the typed `OneCError` family. The emulator is in
`emulators.onec.app` (`create_app`, `run`); it is not imported here.
"""

from salesflow.integrations.onec.client import Entity, OneCClient
from salesflow.integrations.onec.errors import (
    OneCAuthError,
    OneCBadRequest,
    OneCBusinessError,
    OneCConflict,
    OneCError,
    OneCNotFound,
    OneCProtocolError,
    OneCServerError,
    OneCTimeout,
    OneCUnavailable,
    OneCUrlRefused,
    configuration_problem,
)
from salesflow.integrations.onec.filters import F, Field, Raw, and_, guid, literal, or_
from salesflow.integrations.onec.parsing import ZERO_GUID, Ref

__all__ = [
    "ZERO_GUID",
    "Entity",
    "F",
    "Field",
    "OneCAuthError",
    "OneCBadRequest",
    "OneCBusinessError",
    "OneCClient",
    "OneCConflict",
    "OneCError",
    "OneCNotFound",
    "OneCProtocolError",
    "OneCServerError",
    "OneCTimeout",
    "OneCUnavailable",
    "OneCUrlRefused",
    "Raw",
    "Ref",
    "and_",
    "configuration_problem",
    "guid",
    "literal",
    "or_",
]
