"""Helpers shared by the test suites.

* ``tests.helpers.dags``: the one way a test runs a DAG (``run_dag``) and loads one (``load_dag``).
* ``tests.helpers.postgres``: the ``postgres_uri`` session fixture (a throwaway PostgreSQL database).
* ``tests.helpers.storage_samples``: gist dicts and nasty strings for the storage tests.

Nothing here imports ``tests.conftest`` (which resets AIRFLOW_HOME and the metadata DB when first
imported), so these modules also work in a child interpreter with an environment of its own.
"""
