"""The ground floor every other package may import: the shared vocabulary (`core.schema`:
conditions, skin-tone groups, the disclaimer), the one atomic file writer (`core.atomic`), the
thresholds.json format with loading and applying (`core.thresholds`) and the acne-severity grade
(`core.severity`). It imports nothing from the project but itself and needs only numpy and the
standard library (numpy 1.26 too: the Triton python models import it)."""
