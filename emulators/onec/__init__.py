"""The emulated 1C base behind `emulators.onec.app`: schema, state, OData, admin."""
