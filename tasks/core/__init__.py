"""The core every stage shares: errors, atomic storage, faults, the config schema, the artifacts layout."""
