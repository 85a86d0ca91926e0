"""The malformed-request suite of tests/serve/test_malformed.py, run once for the docs: each
case's status, the server's resident memory before, between and after two rounds.

    python tools/serve_malformed.py --checkpoint RUN/checkpoints/best.pt \
        --output docs/bench/serve-malformed.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "serve")]

from test_malformed import CASES, rss_mib  # noqa: E402

from alexnet.serve.traffic import Server  # noqa: E402

from wire import json_of, raw, status_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    photo = next((ROOT / "docs" / "serving" / "photos").glob("*.png")).read_bytes()
    good = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode() + photo  # fmt: skip
    rows, memory = [], {}
    with Server(args.checkpoint) as server:
        for _ in range(3):
            status_of(raw(server.port, good))
        memory["start_mib"] = round(rss_mib(server.process.pid), 1)
        for round_ in (1, 2):
            for name, (request, expected, app) in CASES.items():
                answer = raw(server.port, request)
                body = json_of(answer)
                if round_ == 1:
                    rows.append({"case": name, "status": status_of(answer),
                                 "expected": expected,
                                 "json_error": bool(body and body.get("error")),
                                 "answered_by": "application" if app else "uvicorn"})  # fmt: skip
            memory[f"after_round_{round_}_mib"] = round(rss_mib(server.process.pid), 1)
        healthy = server.healthy()
        alive = server.process.poll() is None
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[str(row["status"])] = statuses.get(str(row["status"]), 0) + 1
    result = {
        "command": "python " + " ".join(sys.argv),
        "cases": len(rows),
        "statuses": statuses,
        "server_errors_5xx": sum(r["status"] >= 500 for r in rows),
        "not_as_expected": sum(r["status"] != r["expected"] for r in rows),
        "no_answer": sum(r["status"] == 0 for r in rows),
        "application_refusals_without_json": sum(
            r["status"] >= 400 and r["answered_by"] == "application" and not r["json_error"]
            for r in rows
        ),
        "memory": memory,
        "healthy_after": healthy,
        "alive_after": alive,
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
