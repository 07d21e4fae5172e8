"""Airflow UI integration of the provider: the gist view plugin and the run summary it shows.

Nothing is imported here: Airflow loads :mod:`airflow_provider_gist.plugins.gist_view` through
the ``airflow.plugins`` entry point in every component (API server, scheduler, workers), so the
package stays import-free and the web app is only built when the API server first serves it.
"""
