"""The DFI inference service (FastAPI): /invert, /edit, /outpaint and metric jobs. Not built yet — see the
service issue. It will import `dfi_core` (bundle format, preprocessing) and never `training`."""
