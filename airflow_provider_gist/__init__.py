"""airflow-provider-gist: video gists (title, topics, hashtags) from the TwelveLabs API.

This module only declares the provider to Airflow. Every Airflow component calls
:func:`get_provider_info` at start-up, so it imports nothing heavy and touches no network.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """The provider's manifest: connection type, hooks, operators, sensors, triggers, links."""
    from airflow_provider_gist.client.settings import conn_fields  # light: no Airflow, no HTTP

    return {
        "package-name": "airflow-provider-gist",
        "name": "TwelveLabs Gist",
        "description": "Generate video gists (title, topics, hashtags) with TwelveLabs Pegasus models.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "TwelveLabs",
                "external-doc-url": "https://docs.twelvelabs.io/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "TwelveLabs",
                "python-modules": [
                    "airflow_provider_gist.hooks.gist",
                    "airflow_provider_gist.hooks.gist_async",
                ],
            },
        ],
        "operators": [
            {
                "integration-name": "TwelveLabs",
                "python-modules": [
                    "airflow_provider_gist.operators.gist",
                    "airflow_provider_gist.operators.ingest",
                    "airflow_provider_gist.operators.store",
                    "airflow_provider_gist.operators.refresh",
                ],
            },
        ],
        "sensors": [
            {"integration-name": "TwelveLabs", "python-modules": ["airflow_provider_gist.sensors.indexing"]},
        ],
        "triggers": [
            {
                "integration-name": "TwelveLabs",
                "python-modules": [
                    "airflow_provider_gist.triggers.indexing",
                    "airflow_provider_gist.triggers.analysis",
                ],
            },
        ],
        # Listed by class path: the manifest must not import Airflow's link machinery.
        "extra-links": [
            "airflow_provider_gist.links.TwelveLabsIndexLink",
            "airflow_provider_gist.links.TwelveLabsVideoLink",
            "airflow_provider_gist.links.TwelveLabsAnalysisTaskLink",
        ],
        "connection-types": [
            {
                "connection-type": "twelvelabs",
                "hook-class-name": "airflow_provider_gist.hooks.gist.GistHook",
                "hook-name": "TwelveLabs",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "port", "schema"],
                    "relabeling": {"password": "API key", "host": "API base URL"},
                    "placeholders": {
                        "host": "https://api.twelvelabs.io",
                        "password": "tlk_...",
                    },
                },
                "conn-fields": conn_fields(),
            }
        ],
    }
