"""SQL text the store's statements share: a batch of rows as one JSON parameter, status tags.

A batch travels as one JSON text (`codec.to_json`), not as an array per column: asyncpg encodes
an array element by element in Python, an ABC `isinstance` each. It is cast to `jsonb`, so the
server parses each row once, not once per column.
"""

from __future__ import annotations


def rows(param: int, *types: str) -> str:
    """A `SELECT` of the rows in parameter `param`, a JSON array of arrays (`to_json`), column
    `i` cast to `types[i]`."""
    columns = ", ".join(f"(r->>{i})::{kind}" for i, kind in enumerate(types))
    return f"SELECT {columns} FROM jsonb_array_elements(${param}::jsonb) AS r"


def array(param: int, kind: str) -> str:
    """The array in parameter `param`, a JSON array (`to_json`) of `kind` values."""
    return f"ARRAY(SELECT json_array_elements_text(${param}::json)::{kind})"


def count(status: str) -> int:
    """Rows a command touched, from its status tag (`DELETE 42`)."""
    return int(status.rpartition(" ")[2] or 0)
