"""The ground: what every layer above may use, and which imports nothing above it.

settings (one loader for an environment folder), AWS clients, redaction (the pure redactor and
the process-wide patching), the result contract, the run logger, the env-file parser and the
template rendering. Nothing here imports `flows`, `tasks`, `artifacts`, `sandbox` or the CLI
(`tests/test_layers.py` keeps it so).
"""
