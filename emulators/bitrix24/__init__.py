"""Bitrix24 portal emulator: REST, events, placements, offline queue, OAuth (the test rig)."""
