"""The flows: thin checklists over `tasks`, one module per flow.

Every process that runs one imports this package first (the CLI, its warm interpreter, a
worker's flow-run process, the tests), so the process-wide Prefect client setting lives here.
"""

from ground.prefect_tls import share_api_tls_context

share_api_tls_context()
