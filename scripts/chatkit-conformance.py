#!/usr/bin/env python3
"""Validates what Switchyard's ChatKit endpoint sent against the official ChatKit types.

Reads JSON lines `{"what": KIND, "json": DOCUMENT}` (written by the server's test suite)
and checks each document with the `openai-chatkit` package's pydantic models, then
re-serializes it the way the reference server does and compares the keys: an extra key
means we invent a field, a missing key means we rely on a default the reference always
writes. Exits 1 with one line per problem.

    pip install openai-chatkit==1.6.5
    python3 scripts/chatkit-conformance.py records.jsonl
"""

import json
import sys

from pydantic import TypeAdapter, ValidationError
from chatkit.types import (
    Attachment,
    ChatKitReq,
    Page,
    SyncCustomActionResponse,
    Thread,
    ThreadItem,
    ThreadStreamEvent,
    TranscriptionResult,
)

ADAPTERS = {
    "request": TypeAdapter(ChatKitReq),
    "event": TypeAdapter(ThreadStreamEvent),
    "thread": TypeAdapter(Thread),
    "threads": TypeAdapter(Page[Thread]),
    "items": TypeAdapter(Page[ThreadItem]),
    "transcription": TypeAdapter(TranscriptionResult),
    "attachment": TypeAdapter(Attachment),
    "sync_action": TypeAdapter(SyncCustomActionResponse),
}


def key_diff(sent, reference, path, problems):
    """Compares the keys of two JSON values, recursively."""
    if isinstance(sent, dict) and isinstance(reference, dict):
        for key in sorted(set(sent) - set(reference)):
            problems.append(f"{path}.{key}: sent, but the reference server would not send it")
        for key in sorted(set(reference) - set(sent)):
            problems.append(f"{path}.{key}: missing (the reference server always sends it)")
        for key in sorted(set(sent) & set(reference)):
            key_diff(sent[key], reference[key], f"{path}.{key}", problems)
    elif isinstance(sent, list) and isinstance(reference, list):
        for index, (a, b) in enumerate(zip(sent, reference)):
            key_diff(a, b, f"{path}[{index}]", problems)


def check(what, document):
    problems = []
    if what == "empty":
        if document != {}:
            problems.append(f"expected {{}}, got {json.dumps(document)[:200]}")
        return problems
    adapter = ADAPTERS.get(what)
    if adapter is None:
        return [f"unknown record kind {what!r}"]
    try:
        value = adapter.validate_python(document)
    except ValidationError as err:
        return [f"invalid {what}: {err}".replace("\n", " | ")]
    if what == "request":
        # Clients may leave out what has a default; only the shape is checked.
        return problems
    reference = adapter.dump_python(
        value, mode="json", exclude_none=True, context={"exclude_metadata": True}
    )
    key_diff(document, reference, what, problems)
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    failures = 0
    count = 0
    with open(sys.argv[1], encoding="utf-8") as records:
        for line_number, line in enumerate(records, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            count += 1
            for problem in check(record["what"], record["json"]):
                failures += 1
                print(f"line {line_number} ({record['what']}): {problem}")
    print(f"{count} documents checked, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
