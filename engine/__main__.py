"""``python -m engine --bpmn DIR`` (also ``taskbell-engine``): run the BPMN engine beside
Taskbell. Settings from the environment: ``TASKBELL_URL`` (default
http://127.0.0.1:8000), ``TASKBELL_PRODUCER_KEY`` (required), ``ENGINE_PORT`` (8100),
``ENGINE_HOST`` (127.0.0.1), ``ENGINE_DB`` (engine.db), ``ENGINE_PUBLIC_URL`` (how
Taskbell and browsers reach the engine; default http://127.0.0.1:ENGINE_PORT),
``ENGINE_API_KEY`` (when set, the instance API needs it as a bearer token)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

import uvicorn

from engine.app import Config, ConfigError, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("--bpmn", metavar="DIR", help="folder of .bpmn files (default: samples)")
    parser.add_argument("--port", type=int, help="overrides ENGINE_PORT")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SpiffWorkflow logs every task state change, httpx every request: too chatty.
    for chatty in ("spiff", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        config = Config.from_env(args.bpmn)
    except ConfigError as exc:
        print(f"engine: {exc}", file=sys.stderr)
        return 2
    if args.port is not None:
        config = replace(config, port=args.port)
    logging.getLogger("engine").info(
        "engine on %s:%d (public %s), Taskbell %s, BPMN from %s, state in %s",
        config.host,
        config.port,
        config.public,
        config.taskbell_url,
        config.bpmn_dir,
        config.db,
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
