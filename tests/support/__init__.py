"""Everything the test suites share, one module per concern; test files and conftests import it
as `from tests.support.<module> import ...` (tests/ is a package; pyproject's pytest
`pythonpath = ["."]` puts the repository root on sys.path).

* canaries     - every recognisable secret the tests plant (and then look for)
* cli          - the papyrus-ops CLI: a real subprocess (`run_cli`) or in-process (`invoke`)
* waiting      - polling until something holds (`wait_until`, `wait_for`)
* faults       - fault hooks around what a flow calls next (`After`, `Before`, `Watcher`) and
                 restarting the sandbox's AWS endpoint
* evidence     - evidence bundles on disk and in the bucket, S3 clients for the evidence tests
* sandbox_state - what the session sandbox holds now (revisions, service, SKU rows, ...)
* cleanup      - putting the shared sandbox back the way the seed left it
* drift        - preflight drift injected with boto3, with undo
* cloudtrail   - the CloudTrail archive tests' fake client and readers
* sweep        - the end-of-session canary sweep (tests/reliability/conftest.py arms it)
* ordering     - an opt-in plugin to run the suite in another order (`-p tests.support.ordering`)

The service's own tests (service/tests) run without this repository, so they have their own
`service/tests/support/`.
"""
