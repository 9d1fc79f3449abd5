"""The ground floor every other package may import: the shared vocabulary (`core.schema`:
conditions, skin-tone groups, the disclaimer), the one atomic file writer (`core.atomic`), the
thresholds.json format with loading and applying (`core.thresholds`), the acne-severity grade
(`core.severity`) and the checked reader of by-eye tone label files (`core.tone_labels`). It
imports nothing from the project but itself and needs only numpy and the standard library
(numpy 1.26 too: the Triton python models import it)."""
