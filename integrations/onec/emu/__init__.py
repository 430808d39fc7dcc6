"""The emulated 1C base behind `integrations.onec.emulator`: schema, state, OData, admin."""
