"""The ground floor every other package may import: the shared vocabulary (`core.schema`:
conditions, skin-tone groups, the disclaimer) and the one atomic file writer (`core.atomic`).
It imports nothing from the project and needs only numpy and the standard library."""
