"""The DFI inference service (FastAPI + ONNX Runtime): /invert, /edit, /outpaint, metric jobs on a Redis queue.

`python -m service` runs the API (service/app.py), `python -m service.worker` a metric-job worker. It imports
`dfi_core` (bundle format, preprocessing, data readers, metrics, refinement) and never `training`.
"""
