"""Serve the API through a PgBouncer in transaction mode in front of $DATABASE_URL.

A target for ../shared/perf/bench/compare.sh, beside the service connected directly:

    compare.sh "direct=cd $WT && ACCESS_LOG=false exec .venv/bin/python -m service" \\
               "pgbouncer=cd $WT && ACCESS_LOG=false exec .venv/bin/python bench/via_pgbouncer.py" ...

The PgBouncer is the one the tests start (tests/components.py), so what is measured is
what is tested. The session settings PgBouncer drops are set on the database first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from components import pgbouncer  # noqa: E402
from conftest import set_session_settings_on  # noqa: E402


def main() -> int:
    database_url = os.environ["DATABASE_URL"]
    asyncio.run(set_session_settings_on(database_url))
    pool_size = int(os.environ.get("PGBOUNCER_POOL_SIZE", "16"))  # server connections: the pool's size
    with pgbouncer(database_url, pool_size=pool_size) as bouncer:
        env = {**os.environ, "DATABASE_URL": bouncer.url(database_url), "DB_STATEMENT_CACHE_SIZE": "0"}
        service = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
        # The harness signals the whole process group: let the service drain, then stop PgBouncer.
        signal.signal(signal.SIGTERM, lambda *_: None)
        return service.wait()


if __name__ == "__main__":
    sys.exit(main())
