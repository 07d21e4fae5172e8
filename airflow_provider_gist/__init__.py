"""airflow-provider-gist: video gists (title, topics, hashtags) from the TwelveLabs API.

This module only declares the provider to Airflow. Every Airflow component calls
:func:`get_provider_info` at start-up, so it imports nothing heavy and touches no network.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """The provider's manifest: connection type, hooks, operators, sensors, triggers, links."""
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
            {"integration-name": "TwelveLabs", "python-modules": ["airflow_provider_gist.hooks.gist"]},
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
            {"integration-name": "TwelveLabs", "python-modules": ["airflow_provider_gist.triggers.indexing"]},
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
                "conn-fields": {
                    "api_version": {
                        "label": "API version",
                        "description": "Path prefix of every call (v1.3 is the supported version).",
                        "schema": {"type": ["string", "null"], "enum": ["v1.3", None], "default": "v1.3"},
                    },
                    "default_model": {
                        "label": "Default model",
                        "description": "Pegasus model used when a task does not name one.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["pegasus1.2", "pegasus1.5", None],
                            "default": "pegasus1.2",
                        },
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "description": "Seconds to wait for a TCP connection.",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (s)",
                        "description": "Seconds to wait for an answer; /analyze can take a minute or more.",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 120},
                    },
                    "max_attempts": {
                        "label": "Max attempts per call",
                        "description": "Tries per call, the first included, on 429, 5xx and network errors.",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 20, "default": 6},
                    },
                    "retry_deadline": {
                        "label": "Retry deadline (s)",
                        "description": "Upper bound on one call including all its retries and waits.",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 300},
                    },
                },
            }
        ],
    }
