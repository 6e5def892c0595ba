"""Applications on top of edgeclip's public API; installed as ``edgeclip.apps`` (the folder stays ``apps/``)."""
