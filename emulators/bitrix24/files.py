"""Files in CRM `file` user fields, as the portal stores and serves them.

Facts (bitrix24/b24restdocs): a file is written as `["name", "<base64>"]` or
`{"fileData": ["name", "<base64>"]}` (api-reference/files/how-to-upload-files.md); crm.deal.get
answers a file field as `{id, showUrl, downloadUrl}` with portal-relative show_file.php links
(tutorials/crm/how-to-add-crm-objects/how-to-add-lead-with-files.md); crm.item.get answers
`{id, url, urlMachine}`, `urlMachine` a signed link to `crm.controller.item.getFile` that a
server downloads with a plain GET (api-reference/files/index.md, how-to-upload-files.md
"Response Content"; for a webhook the link carries `/rest/{user_id}/{token}/`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from emulators.bitrix24.registry import RestError

if TYPE_CHECKING:
    from emulators.bitrix24.registry import CallContext
    from emulators.bitrix24.state import Portal

GET_FILE = "crm.controller.item.getFile"


def _bad_file(field_name: str) -> RestError:
    return RestError("CRM_FIELD_ERROR_VALUE_NOT_VALID", f"Invalid value for field {field_name}")


def store_file(portal: Portal, deal_id: int, field_name: str, value: Any, old: Any) -> Any:
    """The stored value of a file field written with `value` (crm.deal.get's shape)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, dict) and "fileData" in value:
        value = value["fileData"]
    if isinstance(value, dict) and "id" in value:  # the file already there, kept
        return old if isinstance(old, dict) and old.get("id") == value["id"] else None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise _bad_file(field_name)
    name, data = value
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_file(field_name) from exc
    file_id = 30000 + len(portal.files) + 1
    portal.files[file_id] = (name, content)
    query = f"ownerId={deal_id}&fieldName={field_name}&dynamic=Y&fileId={file_id}"
    return {
        "id": file_id,
        "showUrl": f"/bitrix/components/bitrix/crm.deal.show/show_file.php?{query}",
        "downloadUrl": f"/bitrix/components/bitrix/crm.deal.show/show_file.php?auth=&{query}",
    }


def _sign(portal: Portal, file_id: int) -> str:
    mac = hmac.new(portal.secret.encode(), f"file:{file_id}".encode(), hashlib.sha256)
    return f"{file_id}.{mac.hexdigest()}"


def item_file(ctx: CallContext | None, value: Any) -> Any:
    """crm.item.get's shape of a stored file value."""
    if not isinstance(value, dict) or "id" not in value:
        return None
    file_id = int(value["id"])
    base = f"{ctx.scheme}://{ctx.host}" if ctx is not None else ""
    portal = ctx.portal if ctx is not None else None
    token = _sign(portal, file_id) if portal is not None else ""
    user = ctx.user_id if ctx is not None else 0
    secret = portal.secret if portal is not None else ""
    return {
        "id": file_id,
        "url": f"{base}/bitrix/services/main/ajax.php?action={GET_FILE}&fileId={file_id}",
        "urlMachine": f"{base}/rest/{user}/{secret}/{GET_FILE}.json?token={token}",
    }


def file_by_token(portal: Portal, token: str) -> tuple[str, bytes] | None:
    """The file a signed `urlMachine` token names; None for a bad or unknown token."""
    file_id_text, _, _ = token.partition(".")
    if not file_id_text.isdigit():
        return None
    file_id = int(file_id_text)
    if not hmac.compare_digest(token, _sign(portal, file_id)):
        return None
    return portal.files.get(file_id)
