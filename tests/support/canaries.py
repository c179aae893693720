"""The recognisable DB password and /dbcheck token of the session sandbox (tests/conftest.py).

Every test may search what it captured for them. Import them from here, not from conftest
(importing conftest as a module would run it a second time).
"""

CANARY_PASSWORD = "CANARY-pw-7f3a9c-PAPYRUS"
CANARY_TOKEN = "CANARY-token-41d2e8-PAPYRUS"
