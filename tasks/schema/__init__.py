"""The schema_init flow's tasks: `script` (the SQL file, checked and split) and `stages` (the dry
run inside BEGIN ... ROLLBACK, then the apply inside BEGIN ... COMMIT, and their Prefect tasks).
The splitter itself is the service's: `papyrus.sqlsplit`."""
