"""What the service tests share (conftest.py holds the fixtures). Self-contained on purpose: the
service's tests run from service/ alone, with PostgreSQL 15's binaries and `pip install -e
'.[test]'`, so nothing here imports the ops repository (its own tests use tests/support).

* canaries - the secrets planted in the service's configuration, searched for in what it prints
* postgres - a real SSL-only PostgreSQL (hostssl + scram), certificates from trustme
* gunicorn - a real gunicorn process running the service, its output kept
"""
