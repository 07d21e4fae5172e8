"""The TwelveLabs client core: everything about talking to the API that is not Airflow.

* :mod:`.settings`: the connection's settings and their defaults, defined once;
* :mod:`.failures`: HTTP answers and transport failures as typed errors;
* :mod:`.retry`: the retry policy and the one retry loop every call goes through;
* :mod:`.pacing`: client-side rate-limit pacing from ``X-Ratelimit-*``;
* :mod:`.shared_pacing`: the same windows in a SQL table shared by every worker (``pacing_conn_id``);
* :mod:`.api`: the API's calls (paths, bodies, listings), written against ``request()``.

Nothing here imports Airflow, ``requests`` or ``aiohttp`` at module level: the hooks
(:mod:`airflow_provider_gist.hooks`) bring the transport and the connection.
"""
