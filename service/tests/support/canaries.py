"""Searched for in every response, log and captured output: they must never show up."""

CANARY = "CANARY-pw-7f3a9c"  # the application role's database password
TOKEN = "dbcheck-token-5b1e0c9a"  # the /dbcheck bearer token


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}
