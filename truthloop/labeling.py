"""`truthloop review export|import --monitor NS/NAME`: a monitor's review queue to and from
Label Studio (docs/review.md has the labeling config to paste into the project).

`truthloop review export --monitor NS/NAME -o tasks.json` leases up to `--limit` items (100 by
default, at most 1,000) to `--reviewer` (`label-studio`) and writes them as Label Studio tasks:
import the file into the project (Import, JSON). The items stay leased for the spec's
`review.lease`, then go back to the queue unless labeled; a label imported later is taken all
the same.

`truthloop review import --monitor NS/NAME -f export.json` sends the project's JSON export
(Export, JSON) back: each annotated task becomes a review label by its annotator, a skipped one
a skip, tasks not annotated yet are left out; all or nothing. A refused task is one line naming
the file, the task's index in it and the field: `export.json: task 12: data.prediction_id: ...`.

Both need a token of the monitor's namespace (or the admin's) where the service has tokens.
Exit status: 0 done, 1 the service refused or could not be reached, 2 a bad flag or file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from truthloop import flags, remote
from truthloop.flags import UsageError

TIMEOUT = 300.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "review", text, __doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="lease items as a Label Studio task file")
    remote.service_flags(export)
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="the task file")
    export.add_argument("--limit", type=int, default=100, help="items to lease (default 100)")
    export.add_argument(
        "--reviewer", default="label-studio", help="who they are leased to (default label-studio)"
    )
    export.set_defaults(run=run_export)
    back = actions.add_parser("import", help="send a Label Studio export's labels back")
    remote.service_flags(back)
    back.add_argument(
        "-f", "--filename", dest="file", required=True, metavar="FILE", help="the JSON export"
    )
    back.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    params = {"limit": str(args.limit), "reviewer": args.reviewer}
    try:
        status, answer = _ask(args, "GET", "/review/export", params=params)
        if status >= 300 or not isinstance(answer, list):
            raise remote.Failed(f"{args.monitor}: {remote.refused(status, answer)}", 1)
        try:
            Path(args.output).write_text(json.dumps(answer, ensure_ascii=False) + "\n")
        except OSError as e:
            raise remote.Failed(f"{args.output}: {e.strerror or e}", 2) from None
    except remote.Failed as e:
        return remote.fail("review", e.message, e.status)
    print(f"{args.output}: {len(answer)} tasks of {args.monitor} leased to {args.reviewer}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    try:
        try:
            body = Path(args.file).read_bytes()
        except OSError as e:
            raise remote.Failed(f"{args.file}: {e.strerror or e}", 2) from None
        status, answer = _ask(args, "POST", "/review/import", body=body)
        if status >= 300 or not isinstance(answer, dict):
            raise remote.Failed(f"{args.file}: {remote.refused(status, answer, 'task')}", 1)
    except remote.Failed as e:
        return remote.fail("review", e.message, e.status)
    print(
        f"{args.file}: {answer.get('labels')} labels and {answer.get('skips')} skips of"
        f" {args.monitor}; {answer.get('unannotated')} tasks not annotated yet left out"
    )
    return 0


def _ask(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, Any]:
    """(status, answer) of a request to the monitor's `path`; `remote.Failed` for a bad flag
    or a service that cannot be reached."""
    try:
        url = remote.monitor_url(args) + path
        token = flags.write_token(args.token_file)
    except UsageError as e:
        raise remote.Failed(str(e), 2) from None
    try:
        return asyncio.run(remote.call(method, url, token, TIMEOUT, params=params, body=body))
    except remote.Unreachable as e:
        raise remote.Failed(e.said(), 1) from None
