"""Prints how Synapse prepares user directory texts and queries for PostgreSQL.

Reads {"names": [...], "queries": [...]} as JSON on standard input and writes
{"names": [...], "queries": [[full, exact, prefix], ...]}: each display name as Synapse
indexes it, and each search term as the three `to_tsquery` texts its PostgreSQL search
uses, from Synapse's own functions.
"""

import json
import sys

from synapse.storage.databases.main.user_directory import (
    _filter_text_for_index,
    _parse_query_postgres,
)

request = json.load(sys.stdin)
json.dump(
    {
        "names": [_filter_text_for_index(name) for name in request["names"]],
        "queries": [list(_parse_query_postgres(query)) for query in request["queries"]],
    },
    sys.stdout,
)
